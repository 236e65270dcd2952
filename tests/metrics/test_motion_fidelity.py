"""Motion-Fidelity score on synthetic videos with known motion (CPU, offline LK tracker)."""

from __future__ import annotations

import argparse
import json
import math

import cv2
import numpy as np
import pytest
import torch

from dmt.metrics.motion_fidelity import (
    draw_comparison,
    draw_tracks,
    motion_fidelity,
    similarity_matrix,
)
from dmt.cli.score import add_score_command
from dmt.metrics.tracking import mask_box, track_points
from dmt.io.video import write_video

torch.set_num_threads(1)
cv2.setNumThreads(1)

FRAMES, HEIGHT, WIDTH, GRID = 16, 96, 160, 30


# --------------------------------------------------------------------------- synthetic clips
def _texture(seed: int, height: int, width: int, tint) -> np.ndarray:
    """Smooth random-noise texture (height, width, 3) float32 in [0, 1], tinted."""
    noise = np.random.default_rng(seed).random((height, width)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 1.2)
    noise = (noise - noise.mean()) / (noise.std() + 1e-6) * 0.22 + 0.5
    return np.clip(noise[..., None] * np.asarray(tint, np.float32), 0.0, 1.0)


def jump_path(t: float) -> tuple[float, float]:
    """Object centre (x, y) in pixels at frame t: left to right along an arc (a 'jump')."""
    s = t / (FRAMES - 1)
    return WIDTH * (0.25 + 0.5 * s), HEIGHT * (0.7 - 0.4 * math.sin(math.pi * s))


def make_clip(pan=(0.0, 0.0), path=None, shape="disc", radius=14, bg_seed=0, obj_seed=1,
              bg_tint=(0.9, 0.9, 0.8), obj_tint=(1.0, 0.4, 0.3), frames=FRAMES) -> torch.Tensor:
    """(F, H, W, 3) float clip: a textured background panning by `pan` px/frame and a textured
    disc or square whose centre follows `path(t)`."""
    pad = int(math.ceil(max(abs(pan[0]), abs(pan[1])) * frames)) + 2
    bg = _texture(bg_seed, HEIGHT + 2 * pad, WIDTH + 2 * pad, bg_tint)
    size = 2 * radius + 3
    obj = _texture(obj_seed, size, size, obj_tint)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    dist = np.hypot(xx, yy) if shape == "disc" else np.maximum(abs(xx), abs(yy)) / 0.9
    alpha = np.clip(radius + 0.5 - dist, 0, 1).astype(np.float32)
    out = []
    for t in range(frames):
        shift = np.float32([[1, 0, pan[0] * t - pad], [0, 1, pan[1] * t - pad]])
        img = cv2.warpAffine(bg, shift, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
        if path is not None:
            cx, cy = path(t)
            place = np.float32([[1, 0, cx - (size - 1) / 2], [0, 1, cy - (size - 1) / 2]])
            o = cv2.warpAffine(obj, place, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
            a = cv2.warpAffine(alpha, place, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)[..., None]
            img = a * o + (1 - a) * img
        out.append(img)
    return torch.from_numpy(np.stack(out)).float()


PAN = (-1.5, 0.0)  # camera pans right: background content moves 1.5 px/frame to the left


@pytest.fixture(scope="module")
def base() -> torch.Tensor:
    return make_clip(pan=PAN, path=jump_path)


@pytest.fixture(scope="module")
def reshaped() -> torch.Tensor:
    """Same motion, other shape, colours and textures (what a good motion transfer produces)."""
    return make_clip(pan=PAN, path=jump_path, shape="square", bg_seed=5, obj_seed=7,
                     bg_tint=(0.7, 0.9, 0.7), obj_tint=(0.3, 0.5, 1.0))


@pytest.fixture(scope="module")
def object_mask() -> np.ndarray:
    """First-frame mask of the disc (uint8, 255 = object)."""
    m = np.zeros((HEIGHT, WIDTH), np.uint8)
    cx, cy = jump_path(0)
    cv2.circle(m, (round(cx), round(cy)), 14, 255, -1)
    return m


def _score(a, b, **kw):
    r = motion_fidelity(a, b, grid=kw.pop("grid", GRID), **kw)
    for v in (r.edited_to_original, r.original_to_edited, r.combined, r.paper_sum):
        assert math.isfinite(v)
    assert r.paper_sum == pytest.approx(r.edited_to_original + r.original_to_edited)
    assert r.combined == pytest.approx(r.paper_sum / 2)
    print(f"e2o {r.edited_to_original:.3f} o2e {r.original_to_edited:.3f} combined {r.combined:.3f} "
          f"tracklets {r.num_original}/{r.num_edited}")
    return r


# --------------------------------------------------------------------------- scores
def test_identical_videos_score_max(base):  # measured 1.000
    r = _score(base, base)
    assert r.combined == pytest.approx(1.0, abs=1e-5)
    assert r.num_original == r.num_edited > 0.5 * GRID * GRID


def test_shape_change_same_motion_close_to_max(base, reshaped):  # measured 0.997
    r = _score(base, reshaped)
    assert r.edited_to_original > 0.95 and r.original_to_edited > 0.95


def test_time_reversed_is_clearly_lower(base, reshaped):  # measured -0.73
    r = _score(base, base.flip(0))
    assert r.combined < 0.0
    assert r.combined < _score(base, reshaped).combined - 0.8


def test_perpendicular_motion_is_clearly_lower(base):  # measured 0.18
    rotated = torch.rot90(base, 1, dims=(1, 2)).contiguous()  # every motion turned by 90°, (W, H) swapped
    r = _score(base, rotated)
    assert r.combined < 0.45


def test_camera_pan_vs_static_is_low():  # measured 0.000
    r = _score(make_clip(pan=PAN), make_clip())
    assert abs(r.combined) < 0.05


def test_static_video_has_a_defined_score():  # static vs static 1.000, vs moving 0.000
    static = make_clip()
    other_static = make_clip(bg_seed=3, bg_tint=(0.5, 0.8, 1.0))
    assert _score(static, static).combined == pytest.approx(1.0)
    assert _score(static, other_static).combined == pytest.approx(1.0)
    assert abs(_score(static, make_clip(pan=(0.0, 2.0))).combined) < 0.05


def test_different_resolution_compares_in_normalised_units(base):  # measured 0.998
    bigger = torch.from_numpy(np.stack([cv2.resize(f, (240, 144)) for f in base.numpy()]))
    r = _score(base, bigger)
    assert r.edited_tracks.width == 240
    assert r.combined > 0.95


def test_mask_box_limits_points_and_keeps_ranking(base, reshaped, object_mask):
    # measured: shape 0.992, reversed -0.78 with 45 of 900 grid points inside the box
    good = _score(base, reshaped, mask=object_mask)
    bad = _score(base, base.flip(0), mask=object_mask)
    assert good.original_tracks.num_points < 0.1 * GRID * GRID
    x0, y0, x1, y1 = mask_box(object_mask)
    start = good.original_tracks.positions[:, 0]
    assert ((start[:, 0] + 0.5) / WIDTH >= x0).all() and ((start[:, 1] + 0.5) / HEIGHT < y1).all()
    assert good.combined > 0.9
    assert bad.combined < 0.3


def test_uint8_numpy_input_is_accepted(base):
    as_uint8 = (base.numpy() * 255).round().astype(np.uint8)
    assert _score(as_uint8, base).combined > 0.95


# --------------------------------------------------------------------------- definition
def test_similarity_rules_for_static_and_moving_steps():
    still = torch.zeros(1, 3, 2)
    right = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [0.2, 0.0]]])
    left = right.flip(1)
    up = torch.tensor([[[0.0, 0.0], [0.0, -0.1], [0.0, -0.2]]])
    half = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.1, 0.0]]])  # static, then right
    b = torch.cat([still, right, left, up, half])
    sim = similarity_matrix(b, b)
    assert torch.isfinite(sim).all()
    assert sim[0, 0] == 1 and sim[0, 1] == 0  # static/static 1, static/moving 0
    assert sim[1, 1] == pytest.approx(1) and sim[1, 2] == pytest.approx(-1) and sim[1, 3] == pytest.approx(0)
    assert sim[4, 0] == pytest.approx(0.5) and sim[4, 1] == pytest.approx(0.5)


def test_lost_points_are_flagged_never_nan(base):
    tracks = track_points(base, grid=GRID)
    assert tracks.positions.shape == (GRID * GRID, FRAMES, 2)
    assert torch.isfinite(tracks.positions).all()
    assert 0 < tracks.num_complete < tracks.num_points  # occluded / left the frame → dropped
    v = tracks.valid.int()
    assert (v[:, 1:] <= v[:, :-1]).all()  # once lost, lost for good


def test_visualisation_shapes(base, reshaped):
    r = motion_fidelity(base, reshaped, grid=GRID)
    vis = draw_tracks(base, r.original_tracks)
    assert vis.shape == base.shape and vis.dtype == torch.float32
    assert 0 <= float(vis.min()) and float(vis.max()) <= 1 and not torch.equal(vis, base)
    side = draw_comparison(base, reshaped, r)
    assert side.shape[:2] == (FRAMES, HEIGHT) and side.shape[2] > 2 * WIDTH


# --------------------------------------------------------------------------- errors
def test_frame_count_mismatch_message(base):
    with pytest.raises(ValueError, match=r"16 frames but the edited one has 10.*same frame count"):
        motion_fidelity(base, base[:10], grid=GRID)


def test_fewer_than_two_frames_message(base):
    with pytest.raises(ValueError, match="at least 2"):
        motion_fidelity(base[:1], base[:1], grid=GRID)
    with pytest.raises(ValueError, match="at least 2"):
        track_points(base[:1])


def test_no_trackable_point_message():
    flat = torch.full((4, HEIGHT, WIDTH, 3), 0.5)
    with pytest.raises(ValueError, match="No point of the original video could be tracked"):
        motion_fidelity(flat, flat, grid=GRID)


def test_empty_mask_message(base):
    with pytest.raises(ValueError, match="mask is empty"):
        motion_fidelity(base, base, grid=GRID, mask=np.zeros((HEIGHT, WIDTH), np.uint8))


def test_cotracker_backend_without_package_says_what_to_install(base):
    try:
        import cotracker  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"pip install.*--cotracker-checkpoint"):
            track_points(base, grid=GRID, backend="cotracker")
    else:
        with pytest.raises(ValueError, match="checkpoint not found"):
            track_points(base, grid=GRID, backend="cotracker", cotracker_checkpoint="/nonexistent.pth")


# --------------------------------------------------------------------------- CLI
def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dmt")
    add_score_command(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_end_to_end(tmp_path, base, reshaped, object_mask, capsys):
    original = write_video(tmp_path / "original.mp4", base)
    edited = write_video(tmp_path / "edited_frames", reshaped)  # folder of PNGs
    cv2.imwrite(str(tmp_path / "mask.png"), object_mask)
    out = tmp_path / "score.json"
    rc = _run_cli(["score", str(original), str(edited), "--grid", str(GRID), "--json", str(out),
                   "--vis", str(tmp_path / "vis")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "combined" in text and "edited -> original" in text
    data = json.loads(out.read_text())
    print(data)
    assert data["combined"] > 0.9  # measured 0.99 (mp4 compression on one side)
    assert data["num_frames"] == FRAMES and data["grid"] == GRID
    assert data["paper_sum"] == pytest.approx(data["edited_to_original"] + data["original_to_edited"])
    assert len(list((tmp_path / "vis").glob("*.png"))) == FRAMES

    rc = _run_cli(["score", str(original), str(original), "--grid", str(GRID), "--mask",
                   str(tmp_path / "mask.png"), "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["combined"] == pytest.approx(1.0) and data["num_original_points"] < GRID * GRID


def test_cli_unreadable_inputs(tmp_path, base, capsys):
    good = write_video(tmp_path / "good", base[:4])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    assert _run_cli(["score", str(broken), str(good)]) == 2
    assert "error:" in capsys.readouterr().err
    assert _run_cli(["score", str(tmp_path / "missing.mp4"), str(good)]) == 2
    assert "not found" in capsys.readouterr().err
    assert _run_cli(["score", str(good), str(good), "--mask", str(broken)]) == 2
    assert "Cannot read mask image" in capsys.readouterr().err
    short = write_video(tmp_path / "short", base[:3])
    assert _run_cli(["score", str(good), str(short), "--grid", str(GRID)]) == 2
    assert "same frame count" in capsys.readouterr().err


def test_cotracker_backend_wiring_with_a_stand_in_predictor(base, object_mask, tmp_path, monkeypatch):
    """No weights: a stand-in `cotracker.predictor.CoTrackerPredictor` checks what the wrapper
    passes (video (1, F, 3, H, W) in 0..255, grid size, box mask) and how it reads the result."""
    import sys
    import types

    seen = {}

    class Predictor:
        def __init__(self, checkpoint):
            seen["checkpoint"] = checkpoint

        def to(self, device):
            return self

        def __call__(self, video, grid_size, segm_mask=None):
            seen.update(video=video, grid=grid_size, segm=segm_mask)
            frames = video.shape[1]
            start = torch.tensor([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]])
            step = torch.arange(frames, dtype=torch.float32)[:, None, None] * torch.tensor([2.0, 0.0])
            tracks = (start[None] + step)[None]  # (1, F, N, 2)
            return tracks, torch.ones(1, frames, 3, dtype=torch.bool)

    package = types.ModuleType("cotracker")
    predictor = types.ModuleType("cotracker.predictor")
    predictor.CoTrackerPredictor = Predictor
    monkeypatch.setitem(sys.modules, "cotracker", package)
    monkeypatch.setitem(sys.modules, "cotracker.predictor", predictor)

    with pytest.raises(ValueError, match="checkpoint not found"):
        track_points(base, grid=GRID, backend="cotracker", cotracker_checkpoint=tmp_path / "none.pth")
    ckpt = tmp_path / "cotracker.pth"
    ckpt.write_bytes(b"stand-in")
    tracks = track_points(base, grid=7, mask=object_mask, backend="cotracker", cotracker_checkpoint=ckpt)
    assert seen["checkpoint"] == str(ckpt) and seen["grid"] == 7
    assert seen["video"].shape == (1, FRAMES, 3, HEIGHT, WIDTH) and float(seen["video"].max()) > 1
    ys, xs = np.nonzero(seen["segm"][0, 0].numpy())
    x0, y0, x1, y1 = mask_box(object_mask)
    assert xs.min() == round(x0 * WIDTH) and ys.max() + 1 == round(y1 * HEIGHT)
    assert tracks.positions.shape == (3, FRAMES, 2) and bool(tracks.valid.all())
    assert tracks.positions[1, 5].tolist() == [40.0, 40.0]
    assert motion_fidelity(base, base, grid=7, backend="cotracker",
                           cotracker_checkpoint=ckpt).combined == pytest.approx(1.0)
