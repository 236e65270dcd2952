"""Temporal context windows on Wan (dmt.transfer.context through the Wan stages): the conversion
to latent frames, one window = the plain path bit for bit, the transformer never seeing more than
a window, per-window targets and the summed guidance loss, refusals, files, cancel."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import dmt
from dmt.models.wan_ops import encode_prompt
from dmt.transfer.amf_guidance import AMFSettings, extract_amf_targets, latent_amf_loss
from dmt.transfer.context import ContextOptions, latent_context
from dmt.transfer.inversion_files import load_inversion, save_inversion
from dmt.transfer.wan_stages import extract_wan_targets, invert_wan_video, wan_guided_sample
from dmt.transfer.wan_transfer import flow_init

from helpers import sliding_square_clip

QUICK = AMFSettings(num_steps=5)  # 1 guided step of 5 Adam iterations
#: 9 video frames = 3 latent frames per window, neighbours sharing 2 (5 frames)
WINDOWS = ContextOptions(length=9, overlap=5)


def _clip(frames: int = 25, height: int = 32, width: int = 48, seed: int = 0) -> torch.Tensor:
    """A bright square moving right by 2 px a frame over a random background: (F, H, W, 3) in [0, 1]."""
    return sliding_square_clip(frames, height, width, 2, seed)


def _run(wan, **kw) -> dmt.TransferResult:
    kw.setdefault("amf", QUICK)
    return dmt.transfer(wan, kw.pop("frames", _clip()), "a square", "a red ball", **kw)


@pytest.mark.parametrize("length,overlap,latent", [(16, 8, (4, 2)), (17, 9, (5, 3)), (24, 8, (6, 2)),
                                                   (81, 32, (21, 8)), (9, 5, (3, 2)), (5, 0, (2, 0))])
def test_windows_in_video_frames_become_latent_frames(length, overlap, latent):
    converted = latent_context(ContextOptions(length=length, overlap=overlap, fuse="flat"), 4)
    assert (converted.length, converted.overlap, converted.fuse) == (*latent, "flat")
    assert latent_context(None, 4) is None


def test_windows_too_short_for_wan_are_refused_before_any_work(wan):
    with pytest.raises(dmt.InputError, match="at least 5 frames"):
        latent_context(ContextOptions(length=4, overlap=0), 4)
    with pytest.raises(dmt.InputError, match=r"never advance.*at most 4 frames"):
        latent_context(ContextOptions(length=8, overlap=7), 4)
    calls = []
    with pytest.raises(dmt.InputError, match="at least 5 frames"):
        _run(wan, context=ContextOptions(length=4, overlap=0), on_step=lambda *a: calls.append(a))
    with pytest.raises(dmt.InputError, match="at least 5 frames"):
        invert_wan_video(wan, _clip(), "a square", 5, context=ContextOptions(length=3, overlap=1),
                         on_step=lambda *a: calls.append(a))
    assert calls == []


@pytest.mark.parametrize("guidance", ["amf", "smm"])
def test_one_window_covering_the_video_is_the_plain_path_bit_for_bit(wan, guidance):
    amf = dataclasses.replace(QUICK, guidance=guidance)
    plain = _run(wan, amf=amf, frames=_clip(17))
    one = _run(wan, amf=amf, frames=_clip(17), context=ContextOptions(length=24, overlap=8))
    assert torch.equal(plain.sample.latents, one.sample.latents) and torch.equal(plain.frames, one.frames)
    assert plain.sample.losses == one.sample.losses


@pytest.mark.parametrize("guidance", ["amf", "smm"])
def test_the_transformer_never_sees_more_than_a_window(wan, guidance):
    seen = []
    hook = wan.transformer.patch_embedding.register_forward_pre_hook(lambda _m, args: seen.append(int(args[0].shape[2])))
    try:
        result = _run(wan, amf=dataclasses.replace(QUICK, guidance=guidance), context=WINDOWS)
    finally:
        hook.remove()
    # 25 frames = 7 latent frames; windows of 3 advancing by 1: [0-3) [1-4) [2-5) [3-6) [4-7)
    assert result.frames.shape == (25, 32, 48, 3) and torch.isfinite(result.frames).all()
    assert max(seen) == 3 and len(seen) > 5
    assert result.inversion.context == WINDOWS and result.targets.context == WINDOWS
    if guidance == "amf":
        assert result.targets.flow.shape[0] == 5 * 6 and len(result.targets.pairs) == 30  # 6 ordered pairs each
        assert result.targets.pairs[6:12] == [(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)]
    else:
        assert all(s.shape[1] == 5 * 3 for s in result.targets.smms.values())
    # the unguided reference: same windows, guidance off
    off = _run(wan, amf=dataclasses.replace(QUICK, guidance=guidance, iterations=0), context=WINDOWS)
    assert not torch.equal(off.sample.latents, result.sample.latents)


def test_window_targets_are_each_windows_own_and_the_loss_is_their_sum(wan):
    result = _run(wan, context=WINDOWS)
    x0, targets = result.inversion.x0, result.targets
    cond = encode_prompt(wan, "a red ball")
    t0 = float(targets.schedule.timesteps[0])
    total = 0.0
    for i, start in enumerate(range(5)):  # 7 latent frames: windows of 3 starting at 0 … 4
        alone = extract_amf_targets(wan, x0[:, :, start:start + 3], "a square", QUICK)
        assert torch.equal(alone.flow, targets.flow[6 * i:6 * i + 6])
        with torch.no_grad():
            total += float(latent_amf_loss(wan, alone, result.init_latent[:, :, start:start + 3], t0, cond))
    assert result.sample.losses[0][0] == pytest.approx(total, rel=1e-5)


def test_other_windows_than_the_inversions_are_refused(wan):
    inversion = _run(wan, context=WINDOWS).inversion
    with pytest.raises(dmt.InversionMismatchError, match="same context options"):
        _run(wan, inversion=inversion, context=ContextOptions(length=13, overlap=5))
    with pytest.raises(dmt.InversionMismatchError, match="no context windows"):
        _run(wan, inversion=inversion)
    # the stages: the sampler follows the targets' windows and refuses others
    inv = invert_wan_video(wan, _clip(), "a square", 5, context=WINDOWS)
    targets = extract_wan_targets(wan, inv, QUICK)
    assert targets.amf.context == targets.smm.context == WINDOWS
    init = flow_init(inv, seed=0)
    with pytest.raises(dmt.InversionMismatchError, match="target set"):
        wan_guided_sample(wan, targets, init, "a red ball", "", QUICK, context=None)
    same = wan_guided_sample(wan, targets, init, "a red ball", "", QUICK, context=ContextOptions(length=9, overlap=5))
    assert torch.equal(same.latents, wan_guided_sample(wan, targets, init, "a red ball", "", QUICK).latents)


def test_positions_mode_runs_without_windows(wan):
    with pytest.raises(dmt.InputError, match="positions.*without context windows"):
        _run(wan, amf=dataclasses.replace(QUICK, optimise="positions"), context=WINDOWS)


def test_an_inversion_file_keeps_its_windows(wan, tmp_path):
    inversion = invert_wan_video(wan, _clip(), "a square", 5, context=WINDOWS)
    path = save_inversion(tmp_path / "inv.safetensors", inversion)
    loaded, _ = load_inversion(path, model_kind="wan")
    assert loaded.context == WINDOWS
    with pytest.raises(dmt.InversionMismatchError, match="same context options"):
        load_inversion(path, model_kind="wan", context=None)
    assert torch.equal(_run(wan, inversion=loaded, context=WINDOWS).frames,
                       _run(wan, inversion=inversion, context=WINDOWS).frames)


class _Stop(Exception):
    pass


def test_cancel_between_windows_leaves_the_transformer_as_it_was(wan):
    t = wan.transformer
    before = ([p.detach().clone() for p in t.parameters()], [p.requires_grad for p in t.parameters()])
    calls = {"forward": 0}

    def count(_m, _args):
        calls["forward"] += 1
        if calls["forward"] == 40:  # inside the windows of the first guided step
            raise _Stop

    hook = t.register_forward_pre_hook(count)
    try:
        with pytest.raises(_Stop):
            _run(wan, context=WINDOWS)
    finally:
        hook.remove()
    assert all(torch.equal(a, b) for a, b in zip(before[0], t.parameters()))
    assert before[1] == [p.requires_grad for p in t.parameters()]
    assert all(not b.attn1.norm_q._forward_hooks and not b.attn1.norm_k._forward_hooks for b in t.blocks)
