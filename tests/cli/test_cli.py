"""`python -m dmt transfer` end to end on a synthetic clip, inversion files, and bad inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dmt
from dmt.cli import main

from helpers import INV_STEPS, STEPS, moving_square_clip

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--width", "64", "--height", "64", "--num-frames", "6", "--steps", str(STEPS),
         "--inversion-steps", str(INV_STEPS), "--optimization-steps", "2", "--device", "cpu", "--dtype", "float32"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "square.mp4"
    dmt.write_video(path, moving_square_clip(num_frames=8, size=96), fps=10)
    return path


def test_transfer_end_to_end_and_inversion_reuse(tiny_model_dir, video, tmp_path):
    out, inv = tmp_path / "out.mp4", tmp_path / "inv.safetensors"
    code = main(["transfer", "--video", str(video), "--source-prompt", "a square", "--target-prompt", "a circle",
                 "--out", str(out), "--model", tiny_model_dir, "--save-inversion", str(inv),
                 "--frames-dir", str(tmp_path / "frames"), *SMALL])
    assert code == 0
    clip = dmt.read_video(out)
    assert clip.frames.shape == (6, 64, 64, 3) and clip.fps == pytest.approx(10, abs=0.1)
    assert len(list((tmp_path / "frames").glob("*.png"))) == 6
    with open(inv, "rb") as f:
        assert not f.read(2).startswith(b"\x80")  # safetensors, not a pickle
    # reuse: no video needed, same result as inverting again (same seed)
    out2 = tmp_path / "out2"
    assert main(["transfer", "--load-inversion", str(inv), "--target-prompt", "a circle", "--out", str(out2),
                 "--model", tiny_model_dir, *SMALL]) == 0
    a = dmt.read_video(tmp_path / "frames").frames
    b = dmt.read_video(out2).frames
    assert torch.equal(a, b)


def test_inversion_file_that_does_not_fit_is_refused(tiny_model_dir, video, tmp_path, capsys):
    inv = tmp_path / "inv.safetensors"
    assert main(["transfer", "--video", str(video), "--target-prompt", "a circle", "--out", str(tmp_path / "o"),
                 "--model", tiny_model_dir, "--save-inversion", str(inv), *SMALL]) == 0
    args = [a if a != str(INV_STEPS) else "100" for a in SMALL]
    assert main(["transfer", "--load-inversion", str(inv), "--target-prompt", "x", "--out", str(tmp_path / "p"),
                 "--model", tiny_model_dir, *args]) == 2
    assert "50 inversion steps, not 100" in capsys.readouterr().err
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a safetensors file")
    assert main(["transfer", "--load-inversion", str(bogus), "--target-prompt", "x", "--out", str(tmp_path / "q"),
                 "--model", tiny_model_dir, *SMALL]) == 2
    assert "not a readable safetensors" in capsys.readouterr().err


def _run_bad(tiny_model_dir, tmp_path, capsys, extra, video=None):
    args = ["transfer", "--target-prompt", "a circle", "--out", str(tmp_path / "o.mp4"), "--model", tiny_model_dir]
    if video is not None:
        args += ["--video", str(video)]
    code = main(args + SMALL + extra)
    return code, capsys.readouterr().err


def test_bad_inputs_give_messages(tiny_model_dir, video, tmp_path, capsys):
    one = tmp_path / "one"
    dmt.write_video(one, moving_square_clip(num_frames=2)[:1])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    cases = [
        ([], tmp_path / "missing.mp4", "not found"),
        ([], junk, "Cannot open video"),
        ([], one, "at least 2"),
        (["--width", "60"], video, "--width is 60: it must be a multiple of 8 from 8 to 2048 (default 576)."),
        (["--inversion-steps", "7"], video, "Set the inversion steps to one of"),
        (["--guidance-window", "0.5", "1.5"], video, "--guidance-window is (0.5, 1.5): it must be 2 numbers, each from 0 to 1"),
        (["--optimization-steps", "-1"], video, "--optimization-steps is -1: it must be a whole number from 0 to 1000"),
        (["--guidance-scale", "-3"], video, "--guidance-scale is -3: it must be a number from 0 to 50 (default 10)."),
        (["--width", "60", "--fps", "0"], video, "these options are out of range:\n  --width is 60: it must be a "
         "multiple of 8 from 8 to 2048 (default 576).\n  --fps is 0: it must be a number above 0 and at most 1000"),
        (["--model", str(tmp_path / "no-model")], video, "does not exist"),
        (["--target-prompt", " "], video, "empty"),
    ]
    for extra, vid, msg in cases:
        code, err = _run_bad(tiny_model_dir, tmp_path, capsys, extra, vid)
        assert code == 2, (extra, err)
        assert msg in err, (extra, err)
        assert "Traceback" not in err


def test_help_documents_defaults():
    out = subprocess.run([sys.executable, "-m", "dmt", "transfer", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    for text in ("default: 999", "default: 50", "default: 576", "default: 320", "default 24 on ZeroScope", "default: 10.0",
                 "0.007", "cerspense/zeroscope_v2_576w", "CC BY-NC 4.0"):
        assert text in out, text


def test_preset_sets_defaults_and_explicit_options_win(monkeypatch):
    from dmt import cli
    from dmt.cli import transfer as transfer_cli

    seen = {}
    monkeypatch.setattr(transfer_cli, "run_transfer", lambda args: seen.update(vars(args)) or 0)
    base = ["transfer", "--target-prompt", "x", "--out", "o.mp4"]
    assert cli.main(base + ["--preset", "fast"]) == 0
    assert seen["inversion_steps"] == 100 and seen["no_restart"] is True and seen["optimization_steps"] == 10
    assert cli.main(base + ["--preset", "fast", "--inversion-steps", "200"]) == 0
    assert seen["inversion_steps"] == 200 and seen["no_restart"] is True
    assert cli.main(base) == 0
    assert seen["inversion_steps"] == 999 and seen["no_restart"] is False and seen["low_memory"] is False
