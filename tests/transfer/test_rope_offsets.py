"""DiTFlow's positional-embedding mode on Wan's rotary positions (dmt.transfer.rope_offsets):
the offset hook, optimising positions instead of the latent, the reusable file, and zero-shot
reuse with another prompt (tiny random Wan)."""

from __future__ import annotations

import math

import pytest
import torch

import dmt
from dmt.customize import GenerateSettings, generate_video
from dmt.models.wan_ops import encode_prompt, predict_velocity
from dmt.transfer.amf_guidance import AMFSettings
from dmt.transfer.rope_offsets import (load_positions, position_motion, rope_offset, rope_shape, save_positions)
from test_wan_transfer import _clip, _norm_hooks, _state

STEPS = 5
POSITIONS = AMFSettings(num_steps=STEPS, guided_fraction=0.4, iterations=5, optimise="positions",
                        lr_range=(0.05, 0.05))


def _velocity(wan, delta=None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 16, 3, 4, 6, generator=g)
    with torch.no_grad(), rope_offset(wan.transformer, delta):
        return predict_velocity(wan, x, 500.0, encode_prompt(wan, "a ball"))


def test_a_zero_offset_is_the_model_and_a_full_turn_too(wan):
    n, pairs = rope_shape(wan.transformer, (3, 2, 3))
    base = _velocity(wan)
    assert torch.equal(_velocity(wan, torch.zeros(n, pairs)), base)
    assert torch.allclose(_velocity(wan, torch.full((n, pairs), 2 * math.pi)), base, atol=1e-5)
    moved = _velocity(wan, torch.randn(n, pairs, generator=torch.Generator().manual_seed(1)))
    assert not torch.allclose(moved, base, atol=1e-4)
    assert len(wan.transformer.rope._forward_hooks) == 0  # the hook is gone after the block
    with pytest.raises(dmt.InputError, match="offsets are for 5 tokens"):
        _velocity(wan, torch.zeros(5, pairs))


def test_optimising_positions_lowers_the_loss_and_leaves_the_model_as_loaded(wan):
    before = _state(wan)
    result = dmt.transfer(wan, _clip(), "a square", "a red ball", amf=POSITIONS, seed=0)
    after = _state(wan)
    assert all(torch.equal(a, b) for a, b in zip(before["weights"], after["weights"]))
    assert before["requires_grad"] == after["requires_grad"] and _norm_hooks(wan) == 0
    assert len(wan.transformer.rope._forward_hooks) == 0
    n, pairs = rope_shape(wan.transformer, (3, 2, 3))
    assert result.sample.positions.shape == (n, pairs) and result.sample.positions.abs().max() > 0
    for losses in result.sample.losses.values():
        assert losses[-1] < losses[0], losses  # the Adam iterations on the offsets lower the AMF loss
    latent_mode = dmt.transfer(wan, _clip(), "a square", "a red ball", amf=AMFSettings(num_steps=STEPS), seed=0)
    assert latent_mode.sample.positions is None


def test_positions_file_round_trips_and_is_reused_zero_shot(wan, tmp_path, tiny_model):
    result = dmt.transfer(wan, _clip(), "a square", "a red ball", amf=POSITIONS, seed=0)
    motion = position_motion(wan, result.sample.positions, tuple(result.inversion.x0.shape), "a square",
                             {"optimise": "positions"})
    path = save_positions(tmp_path / "pos.safetensors", motion)
    loaded = load_positions(path)
    assert torch.equal(loaded.delta, motion.delta) and loaded.grid == (3, 2, 3)
    assert loaded.info["base_model_kind"] == "wan" and loaded.same_base(wan.fingerprint)
    settings = GenerateSettings(num_frames=9, height=32, width=48, steps=3, guidance_scale=5.0, seed=3)
    plain = generate_video(wan, "a green triangle", settings=settings)
    reused = generate_video(wan, "a green triangle", settings=settings, positions=loaded)
    assert not torch.equal(plain.frames, reused.frames)
    with pytest.raises(dmt.InputError, match="patch grid \\(3, 2, 3\\)"):
        generate_video(wan, "a green triangle", positions=loaded,
                       settings=GenerateSettings(num_frames=5, height=32, width=48, steps=2))
    with pytest.raises(dmt.InversionMismatchError, match="the model is ZeroScope"):
        generate_video(tiny_model, "a ball", positions=loaded,
                       settings=GenerateSettings(num_frames=4, height=64, width=64, steps=2))
    with pytest.raises(dmt.InversionMismatchError, match="not DMT positional offsets"):
        dmt.save_inversion(tmp_path / "inv.safetensors", result.inversion)
        load_positions(tmp_path / "inv.safetensors")


def test_a_bad_optimise_setting_is_refused():
    with pytest.raises(dmt.InputError, match="optimise"):
        AMFSettings(optimise="weights").validate()
