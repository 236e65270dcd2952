"""Motion transfer on the tiny random Wan through dmt.transfer: attention-motion-flow guidance
(dmt.transfer.amf_guidance), the Wan branch (dmt.transfer.wan_transfer), cancel and restore,
bad inputs and refusals."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import dmt
from dmt.models.random_wan import save_random_wan
from dmt.models.wan_ops import encode_prompt, encode_video
from dmt.transfer.amf_guidance import (AMFSampleResult, AMFSettings, AMFTargets, amf_guided_sample,
                                       extract_amf_targets, latent_amf_loss)
from dmt.transfer.wan_transfer import FlowInversion, flow_init

from helpers import sliding_square_clip

STEPS = 5
QUICK = AMFSettings(num_steps=STEPS)  # 1 guided step of 5 Adam iterations


def _clip(frames: int = 9, height: int = 32, width: int = 48, seed: int = 0) -> torch.Tensor:
    """A bright square moving right by 4 px a frame over a random background: (F, H, W, 3) in [0, 1]."""
    return sliding_square_clip(frames, height, width, 4, seed)


def _run(wan, **kw) -> dmt.TransferResult:
    kw.setdefault("amf", QUICK)
    return dmt.transfer(wan, kw.pop("frames", _clip()), "a square", "a red ball", **kw)


def _state(wan) -> dict:
    t = wan.transformer
    return {"weights": [p.detach().clone() for p in t.parameters()],
            "requires_grad": [p.requires_grad for p in t.parameters()],
            "training": [m.training for m in t.modules()]}


def _norm_hooks(wan) -> int:
    return sum(len(b.attn1.norm_q._forward_hooks) + len(b.attn1.norm_k._forward_hooks) for b in wan.transformer.blocks)


# --- the whole transfer -------------------------------------------------------------------------

def test_wan_transfer_shapes_range_and_intermediates(wan):
    result = _run(wan)
    assert result.frames.shape == (9, 32, 48, 3) and result.frames.dtype == torch.float32
    assert 0 <= result.frames.min() and result.frames.max() <= 1 and torch.isfinite(result.frames).all()
    inv, targets, sample = result.inversion, result.targets, result.sample
    assert isinstance(inv, FlowInversion) and inv.x0.shape == inv.noisiest.shape == (1, 16, 3, 4, 6)
    assert isinstance(targets, AMFTargets) and targets.grid == (3, 2, 3) and targets.block_index == 1  # middle of 2
    assert targets.flow.shape == (6, 6, 2) and targets.flow.device.type == "cpu" and len(targets.pairs) == 6
    assert targets.num_steps == STEPS and targets.model_fingerprint == wan.fingerprint
    assert result.init_latent.shape == sample.latents.shape == (1, 16, 3, 4, 6)
    assert isinstance(sample, AMFSampleResult) and list(sample.losses) == [0] and len(sample.losses[0]) == 5
    assert len(sample.timesteps) == STEPS


def test_a_seed_gives_the_same_video_and_another_seed_another(wan):
    a, b = _run(wan, seed=3), _run(wan, seed=3)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.sample.latents, b.sample.latents)
    assert not torch.equal(_run(wan, seed=4).sample.latents, a.sample.latents)  # low-frequency init: fresh details


def test_the_inits(wan):
    inverted = [_run(wan, wan_init="inversion", seed=s).sample.latents for s in (0, 1)]
    assert torch.equal(*inverted)  # no randomness at all
    noise = _run(wan, wan_init="noise", seed=0)
    assert noise.inversion.noisiest is None  # no inversion run
    assert torch.equal(noise.init_latent, torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(0)))
    low = _run(wan, seed=0)
    assert torch.equal(low.init_latent, flow_init(low.inversion, "low_frequency", 0, 4))
    assert torch.equal(flow_init(low.inversion, "low_frequency", 0, 1), low.inversion.noisiest)


def test_a_given_inversion_is_reused(wan):
    first = _run(wan, seed=2)
    again = dmt.transfer(wan, None, "a square", "a red ball", amf=QUICK, seed=2, inversion=first.inversion)
    assert torch.equal(again.frames, first.frames) and again.inversion is first.inversion
    with pytest.raises(dmt.InversionMismatchError, match="5 steps, sampling uses 6"):
        _run(wan, amf=dataclasses.replace(QUICK, num_steps=6), inversion=first.inversion)


def test_runs_inside_inference_mode(wan):
    with torch.inference_mode():
        result = _run(wan, seed=1)
    assert torch.equal(result.sample.latents, _run(wan, seed=1).sample.latents)


def test_progress_counts_guidance_iterations_and_steps(wan):
    calls = []
    _run(wan, amf=dataclasses.replace(QUICK, guided_fraction=0.4, iterations=3),
         on_step=lambda stage, i, n, _lat: calls.append((stage, i, n)))
    sampling = [c for c in calls if c[0] in ("guidance", "sampling")]
    assert [c[0] for c in sampling] == ["guidance"] * 3 + ["sampling"] + ["guidance"] * 3 + ["sampling"] * 4
    assert [c[1] for c in sampling] == list(range(1, 12)) and {c[2] for c in sampling} == {11}
    assert [c[0] for c in calls if c[0] not in ("guidance", "sampling")] == ["encode"] + ["inversion"] * 5 + [
        "targets", "decode"]


# --- guidance does what it says -----------------------------------------------------------------

def test_guidance_brings_the_output_motion_closer_to_the_reference(wan):
    """The AMF of the output (clean latent, timestep 0, source prompt: as the reference's is read)
    is closer to the reference's with guidance than with the same seed and iterations 0."""
    settings = dataclasses.replace(QUICK, lr_range=(0.02, 0.01), guided_fraction=0.4)
    text = encode_prompt(wan, "a square")
    losses = {}
    for iterations in (0, 5):
        result = _run(wan, amf=dataclasses.replace(settings, iterations=iterations), seed=0)
        with torch.no_grad():
            losses[iterations] = latent_amf_loss(wan, result.targets, result.sample.latents, 0.0, text).item()
        if iterations:
            assert list(result.sample.losses) == [0, 1]
            for step_losses in result.sample.losses.values():  # Adam lowers the loss it is given
                assert step_losses[-1] < step_losses[0]
        else:
            assert result.sample.losses == {}
    assert losses[5] < 0.7 * losses[0]


def test_the_guidance_only_moves_the_latent(wan):
    x0 = encode_video(wan, _clip())
    targets = extract_amf_targets(wan, x0, "a square", QUICK)
    init = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    off = amf_guided_sample(wan, targets, init, "a red ball", settings=dataclasses.replace(QUICK, iterations=0))
    on = amf_guided_sample(wan, targets, init, "a red ball", settings=QUICK)
    assert not torch.equal(on.latents, off.latents)
    assert all(p.grad is None for p in wan.transformer.parameters())


# --- cancel and restore -------------------------------------------------------------------------

class _Stop(Exception):
    pass


@pytest.mark.parametrize("how", ["check_interrupt", "on_step"])
def test_cancel_mid_guidance_leaves_the_transformer_as_it_was(wan, how):
    transformer = wan.transformer
    blocks0 = list(transformer.blocks[0].parameters())
    for p in blocks0:  # a mixed starting state, to see it restored exactly
        p.requires_grad_(False)
    transformer.blocks[1].train()
    try:
        before = _state(wan)
        calls = {"guidance": 0}

        def interrupt():
            return calls["guidance"] >= 2

        def on_step(stage, _i, _n, _lat):
            if stage == "guidance":
                calls["guidance"] += 1
                if how == "on_step" and calls["guidance"] == 2:
                    raise _Stop

        kw = {"check_interrupt": interrupt} if how == "check_interrupt" else {}
        with pytest.raises(dmt.Interrupted if how == "check_interrupt" else _Stop):
            _run(wan, on_step=on_step, **kw)
        assert calls["guidance"] == 2  # stopped inside the first guided step
        after = _state(wan)
        assert after["requires_grad"] == before["requires_grad"] and after["training"] == before["training"]
        assert all(torch.equal(a, b) for a, b in zip(before["weights"], after["weights"]))
        assert all(p.grad is None for p in transformer.parameters())
        assert _norm_hooks(wan) == 0
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in transformer.modules())
    finally:
        for p in blocks0:
            p.requires_grad_(True)
        transformer.blocks[1].eval()


def test_a_finished_run_leaves_the_transformer_as_it_was(wan):
    before = _state(wan)
    _run(wan)
    after = _state(wan)
    assert after["requires_grad"] == before["requires_grad"] and after["training"] == before["training"]
    assert all(torch.equal(a, b) for a, b in zip(before["weights"], after["weights"]))
    assert _norm_hooks(wan) == 0 and all(p.grad is None for p in wan.transformer.parameters())


# --- bad inputs and refusals --------------------------------------------------------------------

def test_frame_counts_wan_cannot_take_name_the_nearest(wan):
    with pytest.raises(dmt.InputError, match="Use 5 or 9 frames"):
        _run(wan, frames=_clip(8))


def test_sizes_wan_cannot_take_name_the_nearest(wan):
    with pytest.raises(dmt.InputError, match="32x32, 48x48"):
        _run(wan, frames=_clip(5, 40, 40))


def test_targets_and_inversions_of_another_model_are_refused(wan, tmp_path):
    other = dmt.load_wan(save_random_wan(tmp_path / "other", "tiny", seed=1), "float32", "cpu")
    assert other.fingerprint != wan.fingerprint
    x0 = encode_video(other, _clip())
    targets = extract_amf_targets(other, x0, "a square", QUICK)
    init = torch.zeros(1, 16, 3, 4, 6)
    with pytest.raises(dmt.InversionMismatchError) as err:
        amf_guided_sample(wan, targets, init, "a red ball", settings=QUICK)
    assert other.fingerprint in str(err.value) and wan.fingerprint in str(err.value)
    inversion = FlowInversion(x0=x0, model_fingerprint=other.fingerprint, model_name=other.name)
    with pytest.raises(dmt.InversionMismatchError, match="invert the video again"):
        _run(wan, inversion=inversion)


def test_zeroscope_targets_and_inversions_are_refused_on_wan(wan, targets, inversion):
    with pytest.raises(dmt.InversionMismatchError, match="zeroscope targets"):
        amf_guided_sample(wan, targets, torch.zeros(1, 16, 3, 4, 6), "a red ball", settings=QUICK)
    with pytest.raises(dmt.InversionMismatchError, match="made with ZeroScope"):
        _run(wan, inversion=inversion)


def test_zeroscope_options_are_refused_on_wan_and_wan_options_on_zeroscope(wan, tiny_model):
    with pytest.raises(dmt.InputError, match=r"settings=GuidanceSettings.*pass amf=AMFSettings") as err:
        _run(wan, settings=dmt.GuidanceSettings(guidance_scale=3.0), num_steps=10)
    assert "num_steps=10" in str(err.value)
    with pytest.raises(dmt.InputError, match="amf"):
        dmt.transfer(tiny_model, _clip(), "a square", "a red ball", amf=QUICK)
    with pytest.raises(dmt.InputError, match="wan_init"):
        dmt.transfer(tiny_model, _clip(), "a square", "a red ball", wan_init="noise")
    with pytest.raises(dmt.InputError, match="Unknown Wan init"):
        _run(wan, wan_init="zeros")
    with pytest.raises(dmt.InputError, match="only"):
        _run(wan, wan_init="noise", downsample_factor=2)


def test_an_empty_target_prompt_is_refused_before_any_work(wan):
    calls = []
    with pytest.raises(dmt.InputError, match="target prompt is empty"):
        dmt.transfer(wan, _clip(), "a square", "  ", amf=QUICK, on_step=lambda *a: calls.append(a))
    assert calls == []


def test_settings_that_differ_from_the_targets_are_refused(wan):
    targets = extract_amf_targets(wan, encode_video(wan, _clip()), "a square", QUICK)
    init = torch.zeros(1, 16, 3, 4, 6)
    with pytest.raises(dmt.InputError, match="temperature 1, window None.*temperature 0.5"):
        amf_guided_sample(wan, targets, init, "a red ball", settings=dataclasses.replace(QUICK, temperature=0.5))
    with pytest.raises(dmt.InputError, match="does not match the targets"):
        amf_guided_sample(wan, targets, torch.zeros(1, 16, 2, 4, 6), "a red ball", settings=QUICK)


# --- settings -----------------------------------------------------------------------------------

def test_default_settings_are_ditflows_schedule():
    s = AMFSettings()
    assert (s.num_steps, s.guidance_scale, s.block_index, s.temperature, s.window, s.chunk, s.iterations,
            s.guided_fraction) == (50, 5.0, None, 1.0, None, 1, 5, 0.2)
    assert s.num_guided() == 10
    lrs = s.learning_rates()
    assert len(lrs) == 10 and lrs[0] == pytest.approx(0.002) and lrs[-1] == pytest.approx(0.001)
    assert AMFSettings(num_steps=4).num_guided() == 1 and AMFSettings(iterations=0).num_guided() == 0
    assert AMFSettings(guided_fraction=0).num_guided() == 0 and AMFSettings(guided_fraction=1).num_guided() == 50


@pytest.mark.parametrize("name, value", [
    ("num_steps", 0), ("num_steps", 2.5), ("guidance_scale", 0.5), ("guidance_scale", float("nan")),
    ("block_index", -1), ("block_index", True), ("temperature", 0), ("window", 0), ("chunk", 0),
    ("iterations", -1), ("iterations", 101), ("lr_range", (0.01,)), ("lr_range", (0.0, 0.001)),
    ("guided_fraction", 1.5)])
def test_bad_settings_are_refused_by_name(name, value):
    with pytest.raises(dmt.InputError, match=f"AMF setting {name} must be"):
        AMFSettings(**{name: value}).validate()


def test_a_block_the_model_does_not_have_is_refused(wan):
    with pytest.raises(dmt.InputError, match="2 blocks, so use a whole number from 0 to 1"):
        _run(wan, amf=dataclasses.replace(QUICK, block_index=2))
