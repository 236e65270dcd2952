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
    (dmt.GuidanceSettings(guidance_scale=float("nan")), r"guidance scale \(cfg\) must be a finite number"),
    (dmt.GuidanceSettings(lr_range=(float("nan"), 0.004)), r"first learning rate .* is nan.*0\.007"),
    (dmt.GuidanceSettings(lr_range=(0.007, float("inf"))), r"last learning rate .* is inf"),
    (dmt.GuidanceSettings(lr_range=(-0.1, 0.004)), r"finite numbers >= 0"),
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
