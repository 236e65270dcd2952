"""DDIM inversion: round trip, kept latents, step validation."""

from __future__ import annotations

import pytest
import torch

import dmt
from dmt.transfer.inversion import ddim_reconstruct

from helpers import INV_STEPS, STEPS


def test_keeps_guided_timesteps_and_noisiest(inversion, clip):
    assert inversion.noisiest_t == 981  # 50 steps: 1, 21, ..., 981
    # 10 sampling steps, authors' window (0.6, 1.0): guided 901 ... 601; nothing else but the noisiest
    assert set(inversion.latents) == {901, 801, 701, 601, 981}
    assert inversion.x0.shape == (1, 4, clip.shape[0], 8, 8) and inversion.x0.dtype == torch.float32
    assert inversion.source_prompt == dmt.AUTHORS_PROMPT_PREFIX + "a square"


def test_keep_all_keeps_every_sampling_timestep_with_the_same_numbers(tiny_model, clip, inversion):
    from helpers import INV_STEPS, STEPS

    full = dmt.invert_video(tiny_model, clip, "a square", num_inversion_steps=INV_STEPS, num_sampling_steps=STEPS,
                            keep_all=True)
    assert set(full.latents) == {981, 901, 801, 701, 601, 501, 401, 301, 201, 101, 1}
    assert torch.equal(full.x0, inversion.x0)
    assert all(torch.equal(full.latents[t], inversion.latents[t]) for t in inversion.latents)


def test_round_trip_error_shrinks_with_more_steps(tiny_model, clip):
    x0 = dmt.encode_frames(tiny_model, clip)
    errors = {}
    for n in (10, 25, 100):
        inv = dmt.invert_latents(tiny_model, x0, "a square", num_inversion_steps=n, num_sampling_steps=10)
        rec = ddim_reconstruct(tiny_model, inv)
        errors[n] = ((rec - x0).norm() / x0.norm()).item()
    print("relative round-trip error by inversion steps:", errors)
    assert errors[100] < errors[25] < errors[10]
    assert errors[100] < 0.6 * errors[25] and errors[100] < 0.05


def test_invalid_inversion_steps_list_valid_values(tiny_model, inversion):
    bad = dmt.invert_latents(tiny_model, inversion.x0, "", num_inversion_steps=7, num_sampling_steps=STEPS)
    with pytest.raises(dmt.InputError, match=r"Set the inversion steps to one of.*999"):
        dmt.extract_targets(tiny_model, bad)


def test_empty_source_prompt_is_allowed(tiny_model, inversion):
    inv = dmt.invert_latents(tiny_model, inversion.x0, "", num_inversion_steps=INV_STEPS, num_sampling_steps=STEPS)
    assert torch.isfinite(inv.noisiest).all()


def test_frame_and_size_errors(tiny_model, clip):
    with pytest.raises(dmt.InputError, match="at least 2"):
        dmt.prepare_frames(clip[:1], 64, 64)
    with pytest.raises(dmt.InputError, match="multiples of 8"):
        dmt.prepare_frames(clip, 60, 64)
    with pytest.raises(dmt.InputError, match=r"\(F, H, W, 3\)"):
        dmt.prepare_frames(clip[..., 0], 64, 64)
    with pytest.raises(dmt.InputError, match="at least 2"):
        dmt.prepare_frames(clip, 64, 64, start=5)


def test_prepare_frames_cuts_and_resizes(clip):
    out = dmt.prepare_frames(clip, width=48, height=32, num_frames=3, start=1, stride=2)
    assert out.shape == (3, 32, 48, 3) and 0 <= out.min() and out.max() <= 1
    same = dmt.prepare_frames(clip, 64, 64, num_frames=None)
    assert torch.equal(same, clip)
