"""Bad settings are refused before any heavy work, with messages that say what to change."""

from __future__ import annotations

import logging

import pytest
import torch

import dmt
from dmt.models.text import count_prompt_tokens
from dmt.transfer.noise_init import max_downsample_factor

from helpers import STEPS


@pytest.mark.parametrize("settings, match", [
    (dmt.GuidanceSettings(guidance_scale=float("nan")), r"guidance scale \(cfg\) is nan: it must be a number from 0 to 50"),
    (dmt.GuidanceSettings(guidance_scale=-3), r"guidance scale \(cfg\) is -3: it must be a number from 0 to 50 \(default 10\)"),
    (dmt.GuidanceSettings(guidance_scale=51.0), r"guidance scale \(cfg\) is 51: it must be a number from 0 to 50"),
    (dmt.GuidanceSettings(optimization_steps=1001), r"optimisation steps is 1001: it must be a whole number from 0 to 1000"),
    (dmt.GuidanceSettings(lr_range=(float("nan"), 0.004)), r"first learning rate .* is nan.*0\.007"),
    (dmt.GuidanceSettings(lr_range=(0.007, float("inf"))), r"last learning rate .* is inf"),
    (dmt.GuidanceSettings(lr_range=(-0.1, 0.004)), r"is -0.1: it must be a number from 0 to 1 \(default 0.007\)"),
    (dmt.GuidanceSettings(lr_decay=False, lr=float("nan")), r"constant learning rate \(lr\) is nan"),
])
def test_non_finite_settings_refused(tiny_model, inversion, targets, settings, match):
    init = dmt.low_frequency_init(inversion, seed=0)
    calls = []
    with pytest.raises(dmt.InputError, match=match):
        dmt.guided_sample(tiny_model, targets, init, "a fox", settings=settings, on_step=lambda *a: calls.append(a))
    assert calls == []  # refused before the first step


def test_nan_guidance_window_refused(tiny_model, inversion):
    with pytest.raises(dmt.InputError, match="finite numbers in"):
        dmt.extract_targets(tiny_model, inversion, guidance_window=(float("nan"), 1.0))


def test_downsample_factor_range(inversion):
    shape = tuple(inversion.x0.shape)  # (1, 4, 6, 8, 8) for 64x64 frames
    top = max_downsample_factor(shape)
    assert top == min(shape[-2:]) == 8
    assert dmt.low_frequency_init(inversion, downsample_factor=top).shape == shape
    for bad in (0, top + 1, 64):
        with pytest.raises(dmt.InputError, match=rf"whole number from 1 to {top}"):
            dmt.low_frequency_init(inversion, downsample_factor=bad)


def test_latent_of_another_size_refused_naming_both(tiny_model, targets):
    assert targets.latent_shape == (1, 4, 6, 8, 8)
    wrong = torch.zeros(1, 4, 6, 8, 12)
    with pytest.raises(dmt.InputError, match=r"\(1, 4, 6, 8, 12\).*96x64 px.*6 frames of latent size 8x8 \(64x64 px\)"):
        dmt.guided_sample(tiny_model, targets, wrong, "a fox")


def test_targets_keep_latent_shape_through_files(tiny_model, inversion, targets, tmp_path):
    dmt.save_inversion(tmp_path / "inv.safetensors", inversion, targets)
    _, loaded = dmt.load_inversion(tmp_path / "inv.safetensors")
    assert loaded.latent_shape == targets.latent_shape


def test_steps_mismatch_message_says_what_to_change(tiny_model, inversion):
    # 25 steps: the 50-step inversion visits their timesteps but kept latents only for 10 steps
    with pytest.raises(dmt.InversionMismatchError, match=rf"made for {STEPS} sampling steps.*ask for 25.*Use {STEPS}"):
        dmt.extract_targets(tiny_model, inversion, num_steps=25)


def test_long_prompt_reports_tokens(tiny_model, caplog):
    short = count_prompt_tokens(tiny_model.tokenizer, "a fox")
    assert not short.truncated and short.message() == ""
    long = "a fox jumping " * 20  # one token per character in the tiny tokenizer
    report = count_prompt_tokens(tiny_model.tokenizer, long)
    assert report.truncated and report.used == report.limit == 75 and report.total > 150
    with caplog.at_level(logging.WARNING, logger="dmt"):
        dmt.encode_prompt(tiny_model, long)
    assert f"reads only the first {report.used}" in caplog.text and "dropped" in caplog.text


def test_library_defaults_and_ranges_come_from_the_settings_tables():
    """dmt.settings is the one place of every default and range: the library's own defaults are
    the tables' (the CLI, the batch job keys and the node widgets read the same tables)."""
    from dmt.customize import GenerateSettings, TrainSettings
    from dmt.customize.train import DEFAULT_CHECKPOINT_EVERY
    from dmt.settings import GENERATE, TRAIN, TRANSFER

    g = dmt.GuidanceSettings()
    assert (g.guidance_scale, g.optimization_steps, g.lr_range, g.loss, g.restart_sampling) == (
        TRANSFER["guidance_scale"].default, TRANSFER["optimization_steps"].default, TRANSFER["lr_range"].default,
        TRANSFER["loss"].default, not TRANSFER["no_restart"].default)
    assert (dmt.DEFAULT_INVERSION_STEPS, dmt.DEFAULT_SAMPLING_STEPS) == (999, 50) == (
        TRANSFER["inversion_steps"].default, TRANSFER["steps"].default)
    t = TrainSettings()
    for name in ("mode", "rank", "steps", "lr", "timesteps", "reg_weight", "seed", "checkpoint_every",
                 "validation_every", "validation_steps", "validation_guidance", "gradient_accumulation"):
        assert getattr(t, name) == TRAIN[name].default, name
    assert DEFAULT_CHECKPOINT_EVERY == 100
    s = GenerateSettings()
    assert (s.num_frames, s.height, s.width, s.steps, s.guidance_scale, s.seed) == tuple(
        GENERATE[k].default for k in ("frames", "height", "width", "steps", "guidance", "seed"))
    assert set(dmt.PRESETS) == set(TRANSFER["preset"].choices)
    with pytest.raises(dmt.InputError, match=r"guidance scale is -1: it must be a number from 0 to 50 \(default 9\)"):
        GenerateSettings(guidance_scale=-1).validate()
    with pytest.raises(dmt.InputError, match="multiples of 8 from 8 to 2048"):
        GenerateSettings(width=4096).validate()


def test_setting_checks():
    from dmt.settings import TRANSFER, Setting

    frames = TRANSFER["num_frames"]
    assert frames.problem(None) is None and frames.problem(0) is None and frames.problem(4096) is None
    assert frames.problem(-1) == frames.problem(4097) == "must be 0 (all frames) or a whole number from 1 to 4096"
    assert frames.problem(2.0) and frames.problem(True)  # whole numbers only, booleans are no numbers
    window = TRANSFER["guidance_window"]
    assert window.problem((0.6, 1.0)) is None and window.problem([0.5]) and window.problem((0.5, float("nan")))
    fps = Setting("fps", float, None, "", min=0, above_min=True, max=10, optional=True)
    assert fps.problem(0) and fps.problem(0.01) is None and fps.problem(float("inf"))
    with pytest.raises(dmt.InputError) as err:
        TRANSFER["loss"].check("l3", "'loss' in 'SMM-Guided Sampler (DMT)'")
    assert str(err.value) == "'loss' in 'SMM-Guided Sampler (DMT)' is 'l3': it must be one of cosine, l2 (default 'cosine')."


def test_score_settings_come_from_the_table(tmp_path, capsys):
    from dmt.cli import main
    from dmt.metrics.motion_fidelity import DEFAULT_STATIC_THRESHOLD
    from dmt.settings import SCORE

    frames = torch.zeros(2, 16, 16, 3)
    with pytest.raises(dmt.InputError, match=r"tracking grid is 1: it must be a whole number from 2 to 200 \(default 55\)"):
        dmt.motion_fidelity(frames, frames, grid=1)
    assert DEFAULT_STATIC_THRESHOLD == SCORE["static_threshold"].default
    assert main(["score", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "--grid", "500"]) == 2
    assert "--grid is 500: it must be a whole number from 2 to 200 (default 55)." in capsys.readouterr().err


def test_a_t5_prompt_limit_counts_its_one_special_token(wan):
    """Wan's T5 tokenizer adds only an end token: 512 − 1 prompt tokens are read, not 510."""
    report = count_prompt_tokens(wan.tokenizer, "a fox")
    assert report.limit == 511 and report.used == report.total and not report.dropped_text
