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


def _run(wan_dir, src, tmp_path, *extra):
    out = tmp_path / "out.mp4"
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
    (["--context-length", "0"], "--context-length"),
    (["--save-inversion", "x.safetensors"], "--save-inversion"),
])
def test_zeroscope_only_options_are_refused_by_name(wan_dir, src, tmp_path, capsys, extra, named):
    code, out = _run(wan_dir, src, tmp_path, *extra)
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert named in err and "ZeroScope only" in err


def test_bad_frames_and_sizes_name_the_valid_ones(wan_dir, src, tmp_path, capsys):
    code, _ = _run(wan_dir, src, tmp_path, "--num-frames", "8")
    assert code == 2 and "Use 5 or 9 frames" in capsys.readouterr().err
    out = tmp_path / "o.mp4"
    code = main(["transfer", "--model", str(wan_dir), "--video", str(src), "--target-prompt", "a blue square",
                 "--width", "72", "--height", "64", "--out", str(out)])
    assert code == 2 and "64x64, 80x64" in capsys.readouterr().err


def test_frame_count_and_source_detection(wan_dir, tiny_model_dir):
    assert wan_frame_count(12, None) == 9 and wan_frame_count(100, None) == 33 and wan_frame_count(5, None) == 5
    with pytest.raises(InputError, match="at least 5"):
        wan_frame_count(4, None)
    assert is_wan_source(str(wan_dir)) and not is_wan_source(tiny_model_dir)
    assert is_wan_source("Wan-AI/Wan2.1-T2V-1.3B-Diffusers") and not is_wan_source("cerspense/zeroscope_v2_576w")
