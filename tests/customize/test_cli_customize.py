"""`python -m dmt customize` and `python -m dmt generate` on the tiny model (in-process)."""

from __future__ import annotations

import pytest

from dmt.cli import main
from dmt.cli.generate import parse_motion_arg
from dmt.customize import load_motion
from dmt.errors import InputError
from dmt.io.video import read_video, write_video

from cz_helpers import blob_clip

SMALL = ["--frames", "4", "--height", "64", "--width", "64"]


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    for i in range(2):
        write_video(root / f"clip{i}", blob_clip(num_frames=5, seed=i))  # frame folders
    return root


def test_customize_then_generate(tmp_path, tiny_model_dir, examples_dir, capsys):
    out = tmp_path / "motion.safetensors"
    args = ["customize", "--examples", str(examples_dir), "--caption", "a sks blob", "--model", tiny_model_dir,
            "--out", str(out), "--rank", "2", "--steps", "2", "--checkpoint-every", "1", "--validation-every", "0",
            *SMALL]
    assert main(args) == 0
    motion = load_motion(out)
    assert motion.info["steps"] == 2 and motion.mode == "lora" and motion.rank == 2
    assert (tmp_path / "motion.training" / "loss.png").is_file()
    capsys.readouterr()
    assert main(args[:-6] + ["--steps", "3", "--resume", *SMALL]) == 0
    assert "resuming from step 2 of 3" in capsys.readouterr().err
    assert load_motion(out).info["steps"] == 3
    video = tmp_path / "v.mp4"
    assert main(["generate", "--model", tiny_model_dir, "--prompt", "a sks blob", "--motion", f"{out}:0.5",
                 "--steps", "2", "--out", str(video), *SMALL]) == 0
    assert read_video(video).frames.shape == (4, 64, 64, 3)


@pytest.mark.parametrize("extra, match", [
    (["--steps", "0"], "--steps is 0: it must be a whole number from 1 to 100000 (default 400)."),
    (["--lr", "nan"], "--lr is nan: it must be a number above 0 and at most 1 (default 5e-4 for lora, 1e-5 for full)."),
    (["--lr", "-1"], "--lr is -1: it must be a number above 0"),
    (["--height", "60"], "--height is 60: it must be a multiple of 8 from 8 to 2048 (default 256)."),
    (["--rank", "0"], "--rank is 0: it must be a whole number from 1 to 512 (default 32)."),
    (["--reg-weight", "-1"], "--reg-weight is -1: it must be a number from 0 to 10 (default 1)."),
    (["--reg-generate", "0"], "--reg-generate is 0: it must be a whole number from 1 to 1000."),
    (["--threads", "0"], "--threads is 0: it must be a whole number from 1 to 1024."),
    (["--frames", "16"], "has 5 frame"), (["--token", "zzz"], "token 'zzz'"),
])
def test_customize_bad_input_exits_2(tmp_path, tiny_model_dir, examples_dir, capsys, extra, match):
    args = ["customize", "--examples", str(examples_dir), "--caption", "a sks blob", "--model", tiny_model_dir,
            "--out", str(tmp_path / "m.safetensors"), "--frames", "4", "--height", "64", "--width", "64", *extra]
    assert main(args) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_resume_with_nothing_to_resume_is_refused(tmp_path, tiny_model_dir, examples_dir, capsys):
    """--resume with no training state in the work folder: exit 2 with what to do, before the model
    loads; nothing is trained or written."""
    out = tmp_path / "m.safetensors"
    args = ["customize", "--examples", str(examples_dir), "--caption", "a sks blob", "--model", tiny_model_dir,
            "--out", str(out), "--rank", "2", "--steps", "2", "--validation-every", "0", *SMALL]
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    work = tmp_path / "m.training"
    assert (f"error: Nothing to resume in '{work}': no training state (state.safetensors) was found. Run without "
            f"--resume to start fresh.") in err, err
    assert "loading" not in err and not out.exists() and not work.exists()


def test_fresh_start_over_an_earlier_state_says_so_and_resume_past_steps_is_refused(tmp_path, tiny_model_dir,
                                                                                    examples_dir, capsys):
    out = tmp_path / "m.safetensors"
    args = ["customize", "--examples", str(examples_dir), "--caption", "a sks blob", "--model", tiny_model_dir,
            "--out", str(out), "--rank", "2", "--validation-every", "0", *SMALL]
    assert main(args + ["--steps", "2"]) == 0
    capsys.readouterr()
    assert main(args + ["--steps", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "is already at step 2, past --steps 1: give --steps 2 or more to continue it." in err, err
    assert main(args + ["--steps", "1"]) == 0
    err = capsys.readouterr().err
    assert "note: starting fresh; this replaces the training state of an earlier run" in err and "(step 2)" in err
    assert load_motion(out).info["steps"] == 1


def test_generate_bad_input_exits_2(tmp_path, tiny_model_dir, capsys):
    not_ours = tmp_path / "x.safetensors"
    not_ours.write_bytes(b"junk")
    base = ["generate", "--model", tiny_model_dir, "--prompt", "a sks blob", "--out", str(tmp_path / "v.mp4")]
    assert main(base + ["--motion", str(not_ours)]) == 2
    assert "not a readable motion file" in capsys.readouterr().err
    assert main(base + ["--motion", f"{not_ours}:3"]) == 2
    assert "strength" in capsys.readouterr().err
    assert main(base + ["--width", "100"]) == 2
    assert not (tmp_path / "v.mp4").exists()


def test_parse_motion_arg():
    assert parse_motion_arg("a/b.safetensors") == ("a/b.safetensors", 1.0)
    assert parse_motion_arg("a/b.safetensors:0.25") == ("a/b.safetensors", 0.25)
    assert parse_motion_arg("C:/m.safetensors") == ("C:/m.safetensors", 1.0)
    with pytest.raises(InputError):
        parse_motion_arg("m.safetensors:-1")


def test_customize_then_generate_on_wan(tmp_path, wan_dir, tiny_model_dir, examples_dir, capsys):
    """The same commands with a Wan --model: 5 frames (4k + 1), sides multiples of 16; the motion
    records its kind and a ZeroScope --model refuses it naming both."""
    small = ["--frames", "5", "--height", "32", "--width", "32"]
    out = tmp_path / "wan_motion.safetensors"
    assert main(["customize", "--examples", str(examples_dir), "--caption", "a sks blob", "--model", str(wan_dir),
                 "--out", str(out), "--rank", "2", "--steps", "2", "--validation-every", "0", *small]) == 0
    assert load_motion(out).base_kind == "wan"
    video = tmp_path / "w.mp4"
    assert main(["generate", "--model", str(wan_dir), "--prompt", "a sks blob", "--motion", str(out),
                 "--steps", "2", "--out", str(video), *small]) == 0
    assert read_video(video).frames.shape == (5, 32, 32, 3)
    capsys.readouterr()
    assert main(["generate", "--model", tiny_model_dir, "--prompt", "a sks blob", "--motion", str(out),
                 "--steps", "2", "--out", str(tmp_path / "z.mp4"), *SMALL]) == 2
    assert "trained on Wan" in capsys.readouterr().err
