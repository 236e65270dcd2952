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
