"""The CLI writes h264 mp4 (PyAV) at the source's fps, and refuses bad --codec/--num-frames/--fps
before any heavy work. Checked with PyAV's stream info (what ffprobe reports)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

import dmt
from dmt.cli import main

from helpers import INV_STEPS, STEPS, moving_square_clip

SMALL = ["--width", "64", "--height", "64", "--num-frames", "6", "--steps", str(STEPS), "--inversion-steps",
         str(INV_STEPS), "--optimization-steps", "1", "--no-restart", "--device", "cpu", "--dtype", "float32"]


@pytest.fixture(scope="module")
def video12(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips12") / "square12.mp4"
    dmt.write_video(path, moving_square_clip(num_frames=8, size=96), fps=12)
    return path


def test_cli_output_is_h264_at_source_fps(tiny_model_dir, video12, tmp_path):
    out = tmp_path / "out.mp4"
    assert main(["transfer", "--video", str(video12), "--target-prompt", "a circle", "--out", str(out),
                 "--model", tiny_model_dir, *SMALL]) == 0
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 12  # the source's fps, not a fixed default
        assert (stream.width, stream.height) == (64, 64)
        assert sum(1 for _ in c.decode(video=0)) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left


@pytest.mark.parametrize("extra, out_name, msg", [
    (["--codec", "mpeg4"], "out.webm", "does not go into '.webm'"),
    (["--fps", "nan"], "out.mp4", "--fps is nan: it must be a number above 0 and at most 1000"),
    (["--num-frames", "9"], "out.mp4", "Frame count 9 is more than the video gives: it has 8 frames"),
])
def test_cli_refuses_before_work(tiny_model_dir, video12, tmp_path, capsys, extra, out_name, msg):
    args = ["transfer", "--video", str(video12), "--target-prompt", "a circle", "--out", str(tmp_path / out_name),
            "--model", tiny_model_dir, *SMALL, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err and "loading" not in err  # refused before the model loads
