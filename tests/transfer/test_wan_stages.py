"""The Wan transfer stage by stage (dmt.transfer.wan_stages, as the ComfyUI nodes run it) on the
tiny random Wan: the same video as the one-call dmt.transfer, both guidances from one targets
object, inversion files, and refusals of the other model's data."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import dmt
from dmt.transfer.amf_guidance import AMFSettings
from test_wan_transfer import _clip, _state

STEPS = 5
SETTINGS = AMFSettings(num_steps=STEPS, guided_fraction=0.4)  # 2 guided steps of 5 Adam iterations


def _stages(wan, guidance: str, seed: int = 0) -> tuple[torch.Tensor, dmt.WanTargets, dmt.FlowInversion]:
    inversion = dmt.invert_wan_video(wan, _clip(), "a square", STEPS)
    targets = dmt.extract_wan_targets(wan, inversion, SETTINGS)
    init = dmt.flow_init(inversion, "low_frequency", seed)
    settings = dataclasses.replace(SETTINGS, guidance=guidance)
    sample = dmt.wan_guided_sample(wan, targets, init, "a red ball", "", settings)
    return dmt.decode_wan_latents(wan, sample.latents), targets, inversion


@pytest.mark.parametrize("guidance", ["amf", "smm"])
def test_stages_give_the_one_call_transfer_video(wan, guidance):
    frames, targets, inversion = _stages(wan, guidance)
    settings = dataclasses.replace(SETTINGS, guidance=guidance)
    whole = dmt.transfer(wan, _clip(), "a square", "a red ball", amf=settings, negative_prompt="", seed=0)
    assert torch.equal(frames, whole.frames)
    assert inversion.trajectory.shape[0] == STEPS  # every step kept: any guided share can be chosen later
    assert targets.smm.num_guided == 2 and targets.amf.num_steps == STEPS


def test_the_two_guidances_give_different_videos_from_one_targets_object(wan):
    amf, _, _ = _stages(wan, "amf")
    smm, _, _ = _stages(wan, "smm")
    assert not torch.equal(amf, smm)


def test_stages_leave_the_transformer_as_loaded(wan):
    before = _state(wan)
    _stages(wan, "smm")
    after = _state(wan)
    assert all(torch.equal(a, b) for a, b in zip(before["weights"], after["weights"]))
    assert before["requires_grad"] == after["requires_grad"] and before["training"] == after["training"]


def test_a_wan_inversion_file_round_trips_and_is_refused_by_zeroscope(wan, tmp_path):
    inversion = dmt.invert_wan_video(wan, _clip(), "a square", STEPS)
    path = dmt.save_inversion(tmp_path / "wan.safetensors", inversion)
    loaded, targets = dmt.load_inversion(path, model_fingerprint=wan.fingerprint, model_kind="wan")
    assert targets is None and isinstance(loaded, dmt.FlowInversion)
    for name in ("x0", "noisiest", "sigmas", "trajectory"):
        assert torch.equal(getattr(loaded, name), getattr(inversion, name).cpu()), name
    assert (loaded.source_prompt, loaded.model_name) == ("a square", wan.name)
    a = dmt.extract_wan_targets(wan, loaded, SETTINGS)
    b = dmt.extract_wan_targets(wan, inversion, SETTINGS)
    assert torch.equal(a.amf.flow, b.amf.flow) and all(torch.equal(a.smm.smms[k], b.smm.smms[k]) for k in a.smm.smms)
    with pytest.raises(dmt.InversionMismatchError, match="made with Wan, but the model is ZeroScope"):
        dmt.load_inversion(path, model_kind="zeroscope")
    with pytest.raises(dmt.InversionMismatchError, match="not with this one"):
        dmt.load_inversion(path, model_fingerprint="0" * 16, model_kind="wan")
    with pytest.raises(dmt.InputError, match="Wan targets are not saved"):
        dmt.save_inversion(tmp_path / "both.safetensors", inversion, b)


def test_a_zeroscope_inversion_file_is_refused_by_wan(inversion, tmp_path):
    path = dmt.save_inversion(tmp_path / "zs.safetensors", inversion)
    with pytest.raises(dmt.InversionMismatchError, match="made with ZeroScope, but the model is Wan"):
        dmt.load_inversion(path, model_kind="wan")


def test_zeroscope_data_and_mismatched_steps_are_refused(wan, inversion, targets):
    with pytest.raises(dmt.InversionMismatchError, match="made with ZeroScope"):
        dmt.extract_wan_targets(wan, inversion, SETTINGS)
    wan_inversion = dmt.invert_wan_video(wan, _clip(), "a square", STEPS)
    with pytest.raises(dmt.InputError, match="made for 5 sampling steps, the targets ask for 6"):
        dmt.extract_wan_targets(wan, wan_inversion, dataclasses.replace(SETTINGS, num_steps=6))
    init = dmt.flow_init(wan_inversion, "noise", 0)
    with pytest.raises(dmt.InversionMismatchError, match="not the Wan targets"):
        dmt.wan_guided_sample(wan, targets, init, "a ball", "", SETTINGS)


def test_a_one_latent_frame_clip_is_refused(wan):
    with pytest.raises(dmt.InputError, match="at least 5 frames"):
        dmt.invert_wan_video(wan, _clip(frames=1), "a square", STEPS)


def test_low_memory_encodes_each_prompt_once_up_front_and_gives_the_same_video(wan):
    """low_memory on Wan: the prompts are encoded first (the text encoder runs once per distinct
    prompt and never during inversion or sampling), with the same result bit for bit."""
    settings = dataclasses.replace(SETTINGS, guidance="smm")
    plain = dmt.transfer(wan, _clip(), "a square", "a red ball", amf=settings, negative_prompt="", seed=0)
    calls = []
    handle = wan.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        low = dmt.transfer(wan, _clip(), "a square", "a red ball", amf=settings, negative_prompt="", seed=0,
                           low_memory=True)
    finally:
        handle.remove()
    assert torch.equal(plain.frames, low.frames)
    assert len(calls) == 3  # source, target, negative: once each, before the transformer runs
    from dmt.models.wan_ops import _INSTALLED

    assert id(wan) not in _INSTALLED  # the embeddings are uninstalled after the run


@pytest.mark.parametrize("guidance, optimise", [("amf", "latent"), ("smm", "latent"), ("amf", "positions")])
def test_gradient_checkpointing_gives_the_same_guided_sample(wan, guidance, optimise):
    """The checkpointed guided step (blocks recomputed in the backward; a truncated forward
    recomputes only up to its stop) gives the same latents, and the flag is off afterwards."""
    inversion = dmt.invert_wan_video(wan, _clip(), "a square", STEPS)
    targets = dmt.extract_wan_targets(wan, inversion, SETTINGS)
    init = dmt.flow_init(inversion, "low_frequency", 0)
    settings = dataclasses.replace(SETTINGS, guidance=guidance, optimise=optimise)
    runs = [dmt.wan_guided_sample(wan, targets, init, "a red ball", "", dataclasses.replace(
        settings, gradient_checkpointing=on)) for on in (False, True)]
    assert torch.equal(runs[0].latents, runs[1].latents)
    assert runs[0].losses == runs[1].losses
    assert not wan.transformer.is_gradient_checkpointing
