"""`dmt-motion transfer --model <a Wan folder>`: the Wan branch of the CLI (tiny random Wan)."""

from __future__ import annotations

import pytest

from dmt.cli import main
from dmt.cli.transfer_wan import is_wan_source, wan_frame_count
from dmt.errors import InputError
from dmt.io.video import read_video, write_video
from dmt.toyworld.world import make_clip


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    path = tmp_path_factory.mktemp("wan_cli") / "src.mp4"
    write_video(path, make_clip("circle", "red", "ball", num_frames=12, height=64, width=64).frames, 8.0)
    return path


def _run(wan_dir, src, tmp_path, *extra, name: str = "out.mp4"):
    out = tmp_path / name
    code = main(["transfer", "--model", str(wan_dir), "--video", str(src), "--source-prompt", "a red ball",
                 "--target-prompt", "a blue square", "--width", "64", "--height", "64", "--steps", "4",
                 "--out", str(out), *extra])
    return code, out


def test_a_wan_folder_runs_the_attention_flow_transfer(wan_dir, src, tmp_path):
    code, out = _run(wan_dir, src, tmp_path)
    assert code == 0
    video = read_video(out)
    assert tuple(video.frames.shape) == (9, 64, 64, 3)  # 12 frames in: the largest 4k + 1 is 9


@pytest.mark.parametrize("extra, named", [
    (["--inversion-steps", "10"], "--inversion-steps"),
    (["--optimization-steps", "3"], "--optimization-steps"),
    (["--no-restart"], "--no-restart"),
    (["--loss", "l2"], "--loss"),
])
def test_zeroscope_only_options_are_refused_by_name(wan_dir, src, tmp_path, capsys, extra, named):
    code, out = _run(wan_dir, src, tmp_path, *extra)
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert named in err and "ZeroScope only" in err


def _frames(path):
    return read_video(path).frames


def test_the_guidance_choice_and_inversion_files(wan_dir, src, tmp_path):
    inv = tmp_path / "inv.safetensors"
    code, auto = _run(wan_dir, src, tmp_path, "--save-inversion", str(inv), name="auto.mp4")
    assert code == 0 and inv.is_file()
    code, flow = _run(wan_dir, src, tmp_path, "--guidance", "attention_flow", name="flow.mp4")
    code2, smm = _run(wan_dir, src, tmp_path, "--guidance", "smm", name="smm.mp4")
    assert code == code2 == 0
    assert (_frames(auto) == _frames(flow)).all()  # auto on Wan = attention flow
    assert not (_frames(smm) == _frames(flow)).all()
    out = tmp_path / "reused.mp4"  # the saved inversion instead of the video: the same result
    assert main(["transfer", "--model", str(wan_dir), "--load-inversion", str(inv), "--target-prompt", "a blue square",
                 "--width", "64", "--height", "64", "--steps", "4", "--fps", "8", "--out", str(out)]) == 0
    assert (_frames(out) == _frames(auto)).all()


def test_attention_flow_is_refused_on_zeroscope_and_wan_files_too(tiny_model_dir, wan_dir, src, tmp_path, capsys):
    out = tmp_path / "zs.mp4"
    base = ["transfer", "--model", str(tiny_model_dir), "--video", str(src), "--target-prompt", "a blue square",
            "--width", "64", "--height", "64", "--out", str(out)]
    assert main([*base, "--guidance", "attention_flow"]) == 2
    assert "ZeroScope runs the paper's SMM guidance" in capsys.readouterr().err
    inv = tmp_path / "wan_inv.safetensors"
    assert _run(wan_dir, src, tmp_path, "--save-inversion", str(inv))[0] == 0
    capsys.readouterr()
    assert main([*base, "--load-inversion", str(inv)]) == 2
    assert "made with Wan, but the model is ZeroScope" in capsys.readouterr().err and not out.exists()


def test_bad_frames_and_sizes_name_the_valid_ones(wan_dir, src, tmp_path, capsys):
    code, _ = _run(wan_dir, src, tmp_path, "--num-frames", "8")
    assert code == 2 and "Use 5 or 9 frames" in capsys.readouterr().err
    out = tmp_path / "o.mp4"
    code = main(["transfer", "--model", str(wan_dir), "--video", str(src), "--target-prompt", "a blue square",
                 "--width", "72", "--height", "64", "--out", str(out)])
    assert code == 2 and "64x64, 80x64" in capsys.readouterr().err


def test_frame_count_and_source_detection(wan_dir, tiny_model_dir):
    assert wan_frame_count(12, None) == 9 and wan_frame_count(100, None) == 33 and wan_frame_count(5, None) == 5
    assert wan_frame_count(100, 0) == 97  # 0: all frames (the largest 4k + 1)
    with pytest.raises(InputError, match="at least 5"):
        wan_frame_count(4, None)
    assert is_wan_source(str(wan_dir)) and not is_wan_source(tiny_model_dir)
    assert is_wan_source("Wan-AI/Wan2.1-T2V-1.3B-Diffusers") and not is_wan_source("cerspense/zeroscope_v2_576w")


def test_positions_are_optimised_saved_and_reused_by_generate(wan_dir, src, tmp_path, capsys, tiny_model_dir):
    pos = tmp_path / "pos.safetensors"
    code, _ = _run(wan_dir, src, tmp_path, "--optimise", "positions", "--save-positions", str(pos))
    assert code == 0 and pos.is_file()
    out = tmp_path / "zero_shot.mp4"
    base = ["generate", "--model", str(wan_dir), "--prompt", "a green triangle", "--frames", "9", "--width", "64",
            "--height", "64", "--steps", "2"]
    assert main([*base, "--positions", str(pos), "--out", str(out)]) == 0
    assert main([*base, "--out", str(tmp_path / "plain.mp4")]) == 0
    assert tuple(read_video(out).frames.shape) == (9, 64, 64, 3)
    assert not (_frames(out) == _frames(tmp_path / "plain.mp4")).all()
    capsys.readouterr()
    assert main([*base[:-6], "--frames", "5", "--width", "64", "--height", "64", "--steps", "2", "--positions", str(pos),
                 "--out", str(tmp_path / "x.mp4")]) == 2
    assert "patch grid (3, 4, 4)" in capsys.readouterr().err
    assert _run(wan_dir, src, tmp_path, "--save-positions", str(pos))[0] == 2
    assert "needs --optimise positions" in capsys.readouterr().err
    assert main(["transfer", "--model", tiny_model_dir, "--video", str(src), "--target-prompt", "a ball", "--width",
                 "64", "--height", "64", "--optimise", "positions", "--out", str(tmp_path / "z.mp4")]) == 2
    assert "ZeroScope has none" in capsys.readouterr().err


def test_context_windows_on_wan_are_given_in_video_frames(wan_dir, tmp_path, capsys):
    long_src = tmp_path / "long.mp4"
    write_video(long_src, make_clip("circle", "red", "ball", num_frames=25, height=64, width=64).frames, 8.0)
    code, out = _run(wan_dir, long_src, tmp_path, "--num-frames", "0", "--context-length", "9",
                     "--context-overlap", "5")
    assert code == 0 and _frames(out).shape[0] == 25
    assert "5 windows of 3 latent frames" in capsys.readouterr().err
    code, plain = _run(wan_dir, long_src, tmp_path, "--num-frames", "0", name="plain.mp4")  # off unless given
    assert code == 0 and "windows" not in capsys.readouterr().err
    code, _ = _run(wan_dir, long_src, tmp_path, "--context-overlap", "5", name="x.mp4")
    assert code == 2 and "on Wan are on only with --context-length" in capsys.readouterr().err
    code, _ = _run(wan_dir, long_src, tmp_path, "--num-frames", "0", "--context-length", "4",
                     "--context-overlap", "0", name="y.mp4")
    assert code == 2 and "at least 5 frames" in capsys.readouterr().err
