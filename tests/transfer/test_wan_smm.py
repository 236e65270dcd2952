"""SMM guidance on the tiny random Wan: the paper's space-time feature loss on transformer blocks
(dmt.transfer.block_features, dmt.transfer.wan_smm) through the shared Wan sampler
(dmt.transfer.amf_guidance.amf_guided_sample) and dmt.transfer; cancel, refusals, bad settings."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import dmt
from dmt.models.random_wan import save_random_wan
from dmt.models.unet import frozen
from dmt.models.wan_ops import encode_prompt, encode_video, predict_velocity
from dmt.transfer.amf_guidance import AMFSettings, WanSMMTargets, amf_guided_sample, extract_amf_targets
from dmt.transfer.block_features import (capture_blocks, default_smm_blocks, forward_blocks, latent_smm_loss,
                                         latent_smms, token_smm)
from dmt.transfer.flow_matching import flow_schedule
from dmt.transfer.wan_smm import extract_smm_targets
from dmt.transfer.wan_transfer import FlowInversion, invert_wan

from helpers import sliding_square_clip

STEPS = 5
SMM = AMFSettings(num_steps=STEPS, guidance="smm")  # 1 guided step of 5 Adam iterations, blocks (0, 1)
LATENT = (1, 16, 3, 4, 4)  # 9 frames of 32x32


def _clip(frames: int = 9, size: int = 32, seed: int = 0) -> torch.Tensor:
    """A bright square moving right by 3 px a frame over a dim random background: (F, H, W, 3) in [0, 1]."""
    return sliding_square_clip(frames, size, size, 3, seed)


def _run(wan, **kw) -> dmt.TransferResult:
    kw.setdefault("amf", SMM)
    return dmt.transfer(wan, kw.pop("frames", _clip()), "a square", "a red ball", **kw)


def _inversion(model, settings: AMFSettings = SMM) -> FlowInversion:
    x0 = encode_video(model, _clip())
    schedule = flow_schedule(model.scheduler, settings.num_steps)
    return invert_wan(model, x0, "a square", schedule, keep_steps=settings.num_guided())


def _block_hooks(wan) -> int:
    return sum(len(b._forward_hooks) + len(b._forward_pre_hooks) for b in wan.transformer.blocks)


# --- features -----------------------------------------------------------------------------------

def test_default_blocks_are_the_middle_and_the_next():
    assert default_smm_blocks(30) == (15, 16) and default_smm_blocks(2) == (0, 1) and default_smm_blocks(1) == (0,)
    assert default_smm_blocks(3) == (1, 2) and default_smm_blocks(4) == (2, 3)


def test_token_smm_is_the_per_frame_mean_over_patches():
    hidden = torch.randn(2, 3 * 2 * 2, 5)
    smm = token_smm(hidden, (3, 2, 2))
    assert smm.shape == (2, 3, 5) and smm.dtype == torch.float32
    assert torch.allclose(smm[1, 2], hidden[1, 8:12].mean(dim=0))
    with pytest.raises(dmt.InputError, match="N = 3x2x3 = 18 tokens"):
        token_smm(hidden, (3, 2, 3))


def test_the_forward_stops_after_the_last_block_with_the_full_forwards_gradients(wan):
    latent = torch.randn(LATENT, generator=torch.Generator().manual_seed(0))
    text = encode_prompt(wan, "a square")
    ran = []
    handle = wan.transformer.blocks[1].register_forward_hook(lambda *_: ran.append(1))
    try:
        with frozen(wan.transformer):  # only the latents get gradients
            _check_truncation(wan, latent, text, ran)
    finally:
        handle.remove()
    assert _block_hooks(wan) == 0 and all(p.grad is None for p in wan.transformer.parameters())


def _check_truncation(wan, latent: torch.Tensor, text: torch.Tensor, ran: list) -> None:
    """forward_blocks runs nothing after the last block asked for, and its gradients w.r.t. the
    latent equal those of a full forward's same block output."""
    truncated = latent.clone().requires_grad_(True)
    out = forward_blocks(wan, truncated, 500.0, text, (0,))
    assert set(out) == {0} and out[0].shape == (1, 12, 24) and ran == []  # block 1 never ran
    out[0].pow(2).sum().backward()
    full = latent.clone().requires_grad_(True)
    with capture_blocks(wan.transformer, (0,)) as store:
        predict_velocity(wan, full, 500.0, text)
    assert ran == [1]
    store[0].pow(2).sum().backward()
    assert torch.equal(truncated.grad, full.grad)


# --- the whole transfer -------------------------------------------------------------------------

def test_smm_transfer_end_to_end(wan):
    result = _run(wan)
    assert result.frames.shape == (9, 32, 32, 3) and torch.isfinite(result.frames).all()
    assert 0 <= result.frames.min() and result.frames.max() <= 1
    targets, inv, sample = result.targets, result.inversion, result.sample
    assert isinstance(targets, WanSMMTargets) and targets.blocks == (0, 1) and targets.grid == (3, 2, 2)
    assert set(targets.smms) == {0, 1} and all(s.shape == (1, 3, 24) and s.device.type == "cpu"
                                               for s in targets.smms.values())
    assert targets.model_fingerprint == wan.fingerprint and targets.num_steps == STEPS and targets.num_guided == 1
    assert inv.trajectory.shape == (1, *LATENT) and torch.equal(inv.trajectory[0], inv.noisiest.cpu())
    assert result.init_latent.shape == sample.latents.shape == LATENT
    assert list(sample.losses) == [0] and len(sample.losses[0]) == 5
    # the targets are the blocks' SMMs of the kept inverted latent at the first sigma, source prompt
    expected = latent_smms(wan, inv.trajectory[0], float(targets.schedule.timesteps[0]), encode_prompt(wan, "a square"),
                           (0, 1))
    assert all(torch.allclose(expected[b][0], targets.smms[b][0]) for b in (0, 1))


def test_smm_guidance_lowers_the_smm_loss(wan):
    """The output's block SMMs (clean latent, timestep 0, source prompt: as the reference's clean
    latent is read) are closer to the reference's with guidance than with the same seed and
    iterations 0; and Adam lowers the loss it is given at every guided step."""
    settings = dataclasses.replace(SMM, lr_range=(0.05, 0.03), guided_fraction=0.4, iterations=8)
    text = encode_prompt(wan, "a square")
    x0 = encode_video(wan, _clip())
    with torch.no_grad():
        reference = {b: s[0] for b, s in latent_smms(wan, x0, 0.0, text, (0, 1)).items()}
    losses = {}
    for iterations in (0, 8):
        result = _run(wan, amf=dataclasses.replace(settings, iterations=iterations), seed=0)
        with torch.no_grad():
            losses[iterations] = latent_smm_loss(wan, reference, result.sample.latents, 0.0, text).item()
        if iterations:
            assert list(result.sample.losses) == [0, 1]
            for step_losses in result.sample.losses.values():
                assert step_losses[-1] < step_losses[0]
        else:
            assert result.sample.losses == {}
    assert losses[8] < 0.8 * losses[0], losses


def test_the_l2_form_and_chosen_blocks(wan):
    result = _run(wan, amf=dataclasses.replace(SMM, smm_blocks=(1,), smm_loss="l2"))
    assert result.targets.blocks == (1,) and set(result.targets.smms) == {1}
    assert result.sample.losses[0][-1] < result.sample.losses[0][0]


def test_noise_init_still_inverts_for_the_targets_and_an_inversion_is_reused(wan):
    noise = _run(wan, wan_init="noise", seed=1)
    assert noise.inversion.trajectory is not None  # SMM targets need the inverted latents
    again = dmt.transfer(wan, None, "a square", "a red ball", amf=SMM, wan_init="noise", seed=1,
                         inversion=noise.inversion)
    assert again.inversion is noise.inversion and torch.equal(again.frames, noise.frames)
    amf_run = _run(wan, amf=dataclasses.replace(SMM, guidance="amf"), seed=1)
    assert amf_run.inversion.trajectory is None
    calls = []
    smm_again = dmt.transfer(wan, None, "a square", "a red ball", amf=SMM, seed=1, inversion=amf_run.inversion,
                             on_step=lambda stage, *_: calls.append(stage))
    assert calls.count("inversion") == STEPS and smm_again.inversion.trajectory.shape[0] == 1  # inverted again
    nothing_guided = _run(wan, amf=dataclasses.replace(SMM, iterations=0), wan_init="noise")
    assert nothing_guided.inversion.noisiest is None and nothing_guided.targets.smms[0].shape == (0, 3, 24)


def test_progress_counts_targets_guidance_and_steps(wan):
    calls = []
    _run(wan, amf=dataclasses.replace(SMM, guided_fraction=0.4, iterations=2),
         on_step=lambda stage, i, n, _lat: calls.append((stage, i, n)))
    assert [c for c in calls if c[0] == "targets"] == [("targets", 1, 2), ("targets", 2, 2)]
    sampling = [c[0] for c in calls if c[0] in ("guidance", "sampling")]
    assert sampling == ["guidance"] * 2 + ["sampling"] + ["guidance"] * 2 + ["sampling"] * 4


# --- cancel and restore -------------------------------------------------------------------------

def test_cancel_mid_guidance_leaves_the_transformer_as_it_was(wan):
    t = wan.transformer
    before = [p.detach().clone() for p in t.parameters()], [p.requires_grad for p in t.parameters()]
    calls = {"guidance": 0}

    def on_step(stage, *_):
        calls["guidance"] += stage == "guidance"

    with pytest.raises(dmt.Interrupted):
        _run(wan, on_step=on_step, check_interrupt=lambda: calls["guidance"] >= 2)
    assert calls["guidance"] == 2
    assert all(torch.equal(a, p) for a, p in zip(before[0], t.parameters()))
    assert [p.requires_grad for p in t.parameters()] == before[1]
    assert all(p.grad is None for p in t.parameters())
    assert _block_hooks(wan) == 0 and all(not m._forward_hooks and not m._forward_pre_hooks for m in t.modules())


# --- bad inputs and refusals --------------------------------------------------------------------

def test_targets_and_inversions_of_another_model_are_refused(wan, tmp_path):
    other = dmt.load_wan(save_random_wan(tmp_path / "other", "tiny", seed=1), "float32", "cpu")
    inversion = _inversion(other)
    targets = extract_smm_targets(other, inversion, SMM)
    with pytest.raises(dmt.InversionMismatchError) as err:
        amf_guided_sample(wan, targets, torch.zeros(LATENT), "a red ball", settings=SMM)
    assert other.fingerprint in str(err.value) and wan.fingerprint in str(err.value)
    with pytest.raises(dmt.InversionMismatchError, match="invert the video again"):
        extract_smm_targets(wan, inversion, SMM)


def test_targets_of_the_other_guidance_are_refused(wan):
    x0 = encode_video(wan, _clip())
    amf_targets = extract_amf_targets(wan, x0, "a square", AMFSettings(num_steps=STEPS))
    with pytest.raises(dmt.InputError, match="guidance 'amf', but the settings ask for guidance 'smm'"):
        amf_guided_sample(wan, amf_targets, torch.zeros(LATENT), "a red ball", settings=SMM)
    smm_targets = extract_smm_targets(wan, _inversion(wan), SMM)
    with pytest.raises(dmt.InputError, match="guidance 'smm', but the settings ask for guidance 'amf'"):
        amf_guided_sample(wan, smm_targets, torch.zeros(LATENT), "a red ball", settings=AMFSettings(num_steps=STEPS))


def test_targets_that_do_not_fit_the_settings_are_refused(wan):
    inversion = _inversion(wan)
    targets = extract_smm_targets(wan, inversion, SMM)
    with pytest.raises(dmt.InputError, match=r"smm_blocks \(0, 1\).*smm_blocks \(1,\)"):
        amf_guided_sample(wan, targets, torch.zeros(LATENT), "a red ball",
                          settings=dataclasses.replace(SMM, smm_blocks=(1,)))
    with pytest.raises(dmt.InputError, match="cover 1 guided steps, the settings guide 2"):
        amf_guided_sample(wan, targets, torch.zeros(LATENT), "a red ball",
                          settings=dataclasses.replace(SMM, guided_fraction=0.4))
    with pytest.raises(dmt.InputError, match="keep_steps=2"):
        extract_smm_targets(wan, inversion, dataclasses.replace(SMM, guided_fraction=0.4))
    with pytest.raises(dmt.InputError, match="keeps 0"):
        extract_smm_targets(wan, FlowInversion(x0=inversion.x0, model_fingerprint=wan.fingerprint), SMM)


@pytest.mark.parametrize("blocks", [(0, 2), (5,)])
def test_blocks_the_model_does_not_have_are_refused_naming_the_valid_ones(wan, blocks):
    calls = []
    with pytest.raises(dmt.InputError, match=r"2 blocks, so give distinct whole numbers from 0 to 1"):
        _run(wan, amf=dataclasses.replace(SMM, smm_blocks=blocks), on_step=lambda *a: calls.append(a))
    assert calls == []  # refused before any work


@pytest.mark.parametrize("name, value, valid", [
    ("guidance", "flow", "'amf', 'smm'"), ("guidance", None, "'amf', 'smm'"),
    ("smm_blocks", (-1,), "distinct whole numbers >= 0"), ("smm_blocks", (0, 0), "distinct whole numbers >= 0"),
    ("smm_blocks", (), "distinct whole numbers >= 0"), ("smm_blocks", 1, "distinct whole numbers >= 0"),
    ("smm_loss", "l1", "'cosine', 'l2'")])
def test_bad_settings_are_refused_naming_the_valid_values(name, value, valid):
    with pytest.raises(dmt.InputError, match=f"AMF setting {name} must be .*{valid}"):
        AMFSettings(**{name: value}).validate()


def test_the_default_guidance_is_attention_flow():
    s = AMFSettings()
    assert (s.guidance, s.smm_blocks, s.smm_loss) == ("amf", None, "cosine")
