"""The shipped example clip is the one dmt.io.example_clip draws, small, and really moves."""

from __future__ import annotations

from pathlib import Path

import dmt
from dmt.io.example_clip import EXAMPLE_CLIP_NAME, FPS, HEIGHT, NUM_FRAMES, WIDTH, example_frames, write_example_clip

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "example_inputs" / EXAMPLE_CLIP_NAME


def _red_centroid_x(frames):
    red = (frames[..., 0] > 0.6) & (frames[..., 1] < 0.3) & (frames[..., 2] < 0.3)  # the car body
    xs = red.nonzero()
    return [xs[xs[:, 0] == i, 2].float().mean().item() for i in range(frames.shape[0])]


def test_shipped_clip_matches_the_code_and_is_small():
    assert SHIPPED.stat().st_size < 50_000
    clip = dmt.read_video(SHIPPED)
    assert tuple(clip.frames.shape) == (NUM_FRAMES, HEIGHT, WIDTH, 3) and abs(clip.fps - FPS) < 0.01
    drawn = example_frames()
    assert (clip.frames - drawn).abs().mean() < 0.02  # h264 rounding only


def test_car_moves_left_to_right(tmp_path):
    xs = _red_centroid_x(example_frames())
    assert all(b > a for a, b in zip(xs, xs[1:])), xs
    assert xs[-1] - xs[0] > WIDTH / 3
    out = write_example_clip(tmp_path / "clip.mp4", example_frames(4, 64, 48), fps=8)
    again = dmt.read_video(out)
    assert tuple(again.frames.shape) == (4, 48, 64, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left
