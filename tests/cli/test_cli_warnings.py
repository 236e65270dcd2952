"""The transfer command warns before a long CPU run (with the estimate and the faster options)
and when half precision is asked for on a CPU."""

from __future__ import annotations

import pytest
import torch

import dmt
from dmt.cli import build_parser, main
from dmt.cli import transfer as transfer_cli
from dmt.transfer.estimate import estimate_seconds, format_duration, unet_forward_flops
from dmt.transfer.presets import preset_work

from helpers import INV_STEPS, STEPS, moving_square_clip

RATE = 35e9  # a fixed effective FLOP rate, so the expected numbers are computed, not timed


def _args(*extra: str):
    parser = build_parser()
    argv = ["transfer", "--target-prompt", "x", "--out", "o.mp4", *extra]
    args = parser.parse_args(argv)
    if args.preset:
        parser.transfer_parser.set_defaults(**transfer_cli.preset_defaults(args.preset))
        args = parser.parse_args(argv)
    return args


def test_default_run_on_cpu_warns_with_estimate_and_hints():
    msg = transfer_cli.runtime_warning(_args(), "cpu", 24, flops_per_second=RATE)
    assert msg is not None
    authors = estimate_seconds(preset_work("authors"), 24, 320, 576, RATE)
    fast = estimate_seconds(preset_work("fast"), 24, 320, 576, RATE)
    small = estimate_seconds(preset_work("fast"), 8, 160, 288, RATE)
    assert small < fast < authors
    assert f"about {format_duration(authors)} of UNet work" in msg
    assert f"--preset fast (about {format_duration(fast)})" in msg
    assert f"--num-frames 8 --width 288 --height 160 (about {format_duration(small)})" in msg
    assert "24 frames at 576x320" in msg


def test_no_warning_on_gpu_or_for_short_runs():
    args = _args()
    assert transfer_cli.runtime_warning(args, "cuda", 24, flops_per_second=RATE) is None
    # the same settings on a model 10^6 times smaller than ZeroScope's UNet: seconds, no warning
    assert transfer_cli.runtime_warning(args, "cpu", 24, unet_parameters=1.41e3, flops_per_second=RATE) is None
    small = _args("--preset", "fast", "--num-frames", "2", "--width", "64", "--height", "64")
    assert transfer_cli.runtime_warning(small, "cpu", 2, flops_per_second=1e13) is None


def test_loaded_inversion_is_not_counted():
    a = transfer_cli.runtime_warning(_args(), "cpu", 24, flops_per_second=RATE)
    b = transfer_cli.runtime_warning(_args("--load-inversion", "inv.safetensors"), "cpu", 24, flops_per_second=RATE)
    no_inv = dict(preset_work("authors"), inversion=0)
    assert f"about {format_duration(estimate_seconds(no_inv, 24, 320, 576, RATE))} of UNet work" in b
    assert a != b


def test_flop_constant_matches_a_flop_count_of_the_full_unet():
    """FLOPS_PER_LATENT_POSITION must agree with torch's FLOP counter on ZeroScope's full UNet
    (built on the meta device: no weights, no compute)."""
    from diffusers import UNet3DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from dmt.models.random_model import CONFIGS

    with torch.device("meta"):
        unet = UNet3DConditionModel(**CONFIGS["full"]["unet"])
    for frames, h, w in [(8, 160, 288)]:
        x = torch.randn(1, 4, frames, h // 8, w // 8, device="meta")
        e = torch.randn(1, 77, 1024, device="meta")
        with FlopCounterMode(display=False) as counter:
            unet(x, torch.tensor([500], device="meta"), encoder_hidden_states=e)
        counted = counter.get_total_flops()
        assert abs(unet_forward_flops(frames, h, w) / counted - 1) < 0.1, (frames, h, w, counted)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "square.mp4"
    dmt.write_video(path, moving_square_clip(num_frames=8, size=96), fps=10)
    return path


def test_warning_is_printed_before_the_run(tiny_model_dir, video, tmp_path, capsys, monkeypatch):
    """In the real command: with the tiny model counted as if it were ZeroScope's full UNet the
    run is 'long', and the warning comes before the inversion starts; the run still completes."""
    monkeypatch.setattr(transfer_cli, "FULL_UNET_PARAMETERS", 1.0)  # tiny model x ~10^5
    order = []
    real = transfer_cli.runtime_warning
    monkeypatch.setattr(transfer_cli, "runtime_warning", lambda *a, **k: order.append("warn") or real(*a, **k))
    from dmt.transfer import pipeline

    real_invert = pipeline.invert_latents
    monkeypatch.setattr(pipeline, "invert_latents", lambda *a, **k: order.append("invert") or real_invert(*a, **k))
    code = main(["transfer", "--video", str(video), "--target-prompt", "a circle", "--out", str(tmp_path / "o.mp4"),
                 "--model", tiny_model_dir, "--width", "64", "--height", "64", "--num-frames", "6",
                 "--steps", str(STEPS), "--inversion-steps", str(INV_STEPS), "--optimization-steps", "2",
                 "--device", "cpu", "--dtype", "float32"])
    assert code == 0
    err = capsys.readouterr().err
    assert "warning: this run is long on a CPU" in err and "--preset fast" in err
    assert order == ["warn", "invert"]


def test_float16_on_cpu_warns(tmp_path, capsys):
    code = main(["transfer", "--video", str(tmp_path / "missing.mp4"), "--target-prompt", "x",
                 "--out", str(tmp_path / "o.mp4"), "--device", "cpu", "--dtype", "float16"])
    assert code == 2  # the missing video stops it; the warning came first
    err = capsys.readouterr().err
    assert "--dtype float16 on a CPU is much slower than float32" in err
    assert transfer_cli.dtype_warning("cpu", "float32") is None
    assert transfer_cli.dtype_warning("cuda", "float16") is None
