"""`dmt-motion demo`: a real transfer on the bundled toy model, offline."""

from __future__ import annotations

from dmt.cli import main
from dmt.io.video import read_video


def test_demo_writes_input_and_output_side_by_side(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Motion-Fidelity" in text and "a blue square" in text
    clip = read_video(out)
    assert clip.frames.shape == (8, 64, 132, 3)  # 64 | 4-pixel gap | 64


def test_shipped_demo_clip_is_the_demo_source():
    """example_inputs/<DEMO_CLIP_NAME> (the ComfyUI toy workflow's input) is the CLI demo's source,
    drawn as the bundled model's world is: same object, same track (h264 loses a little), and the
    grey tail present exactly when the bundled model was trained with one."""
    from pathlib import Path

    from dmt.toyworld.card import BUNDLED_MODEL, world_options
    from dmt.toyworld.demo import DEMO_CLIP_NAME, DEMO_CLIP_SEED, DEMO_MOTION, DEMO_SOURCE, demo_source
    from dmt.toyworld.measure import track_object, trajectory_error
    from dmt.toyworld.world import make_clip

    frames, _ = demo_source()
    shipped = read_video(Path(__file__).resolve().parents[2] / "example_inputs" / DEMO_CLIP_NAME).frames.float()
    assert shipped.shape == frames.shape
    a, b = track_object(frames), track_object(shipped)
    assert a.colour == b.colour and a.shape == b.shape
    assert trajectory_error(a.positions, b.positions) < 0.5
    other = make_clip(DEMO_MOTION, *DEMO_SOURCE, seed=DEMO_CLIP_SEED,
                      trail=not world_options(BUNDLED_MODEL)["trail"]).frames
    tail = (frames - other).abs().amax(-1) > 0.1  # where the tail is drawn in one of the two
    assert (shipped - frames).abs()[tail].mean() < 0.5 * (shipped - other).abs()[tail].mean()
