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
    assert main(args[:-6] + ["--steps", "3", "--resume", *SMALL]) == 0
    assert load_motion(out).info["steps"] == 3
    video = tmp_path / "v.mp4"
    assert main(["generate", "--model", tiny_model_dir, "--prompt", "a sks blob", "--motion", f"{out}:0.5",
                 "--steps", "2", "--out", str(video), *SMALL]) == 0
    assert read_video(video).frames.shape == (4, 64, 64, 3)


@pytest.mark.parametrize("extra, match", [
    (["--steps", "0"], "steps"), (["--lr", "nan"], "Learning rate"), (["--lr", "-1"], "Learning rate"),
    (["--height", "60"], "multiples of 8"), (["--frames", "16"], "has 5 frame"), (["--token", "zzz"], "token 'zzz'"),
])
def test_customize_bad_input_exits_2(tmp_path, tiny_model_dir, examples_dir, capsys, extra, match):
    args = ["customize", "--examples", str(examples_dir), "--caption", "a sks blob", "--model", tiny_model_dir,
            "--out", str(tmp_path / "m.safetensors"), "--frames", "4", "--height", "64", "--width", "64", *extra]
    assert main(args) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


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
