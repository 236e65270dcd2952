"""`python -m dmt transfer` on a video longer than one context window; --context-* errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dmt
from dmt.cli import main

from helpers import STEPS, moving_square_clip

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--width", "64", "--height", "64", "--steps", str(STEPS), "--inversion-steps", "10",
         "--optimization-steps", "1", "--no-restart", "--device", "cpu", "--dtype", "float32"]


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "long.mp4"
    frames = moving_square_clip(num_frames=14, size=96)
    dmt.write_video(path, frames, fps=12)
    return path


def test_long_video_in_windows_keeps_fps_and_refuses_other_schedule(tiny_model_dir, long_video, tmp_path, capsys):
    out, inv = tmp_path / "out.mp4", tmp_path / "inv.safetensors"
    args = ["transfer", "--video", str(long_video), "--target-prompt", "a circle", "--model", tiny_model_dir,
            "--num-frames", "0", "--context-length", "8", "--context-overlap", "2", *SMALL]
    assert main(args + ["--out", str(out), "--save-inversion", str(inv)]) == 0
    assert "2 window(s) for 14 frames" in capsys.readouterr().err
    clip = dmt.read_video(out)
    assert clip.frames.shape[0] == 14 and clip.fps == pytest.approx(12, abs=0.1)  # all frames, source fps
    inversion, _ = dmt.load_inversion(inv)
    assert inversion.context == dmt.ContextOptions(8, 2)
    code = main(["transfer", "--load-inversion", str(inv), "--target-prompt", "x", "--out", str(tmp_path / "p"),
                 "--model", tiny_model_dir, "--context-length", "8", "--context-overlap", "3", *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and "context windows of 8 frames, overlap 2" in err and "overlap 3" in err, err


@pytest.mark.parametrize("extra,message", [
    (["--context-length", "8", "--context-overlap", "8"], "must be smaller than the context length"),
    (["--context-length", "1"], "--context-length is 1: it must be 0 (no windows) or a whole number from 2 to 81"),
    (["--context-length", "200"], "--context-length is 200: it must be 0 (no windows) or a whole number from 2 to 81"),
    (["--context-overlap", "-2"], "--context-overlap is -2: it must be a whole number from 0 to 80 (default 8)"),
])
def test_bad_context_options_fail_before_loading(extra, message, tmp_path, capsys):
    code = main(["transfer", "--video", str(tmp_path / "missing.mp4"), "--target-prompt", "x",
                 "--out", str(tmp_path / "o.mp4"), "--model", str(tmp_path / "no-model"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err


def test_help_states_the_window_rule():
    out = subprocess.run([sys.executable, "-m", "dmt", "transfer", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    for text in ("--context-length", "--context-overlap", "--context-fuse", "at most --context-length frames is one",
                 "pyramid"):
        assert text in " ".join(out.split()), text
