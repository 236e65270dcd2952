"""Temporal context windows: the schedule, one-window bit-identity with today's path, a
3-window run, per-window gradient accumulation, schedule mismatch refusal, bad input."""

from __future__ import annotations

import contextlib

import pytest
import torch

import dmt
from dmt.transfer import pipeline
from dmt.transfer.context import (MAX_CONTEXT_LENGTH, ContextOptions, context_windows, effective_windows,
                                  fuse_weights, fused_prediction)
from dmt.transfer.features import spatial_marginal_mean, truncated_forward
from dmt.transfer.loss import total_loss
from dmt.transfer.sampler import optimize_latent

from helpers import assert_same_state, model_state

LONG = 40  # frames of the long clip: 3 windows of 16 with overlap 4 (starts 0, 12, 24)
CTX3 = ContextOptions(length=16, overlap=4)
FAST = dmt.GuidanceSettings(optimization_steps=2, restart_sampling=False)
QUICK = 5  # sampling and inversion steps of the long runs (guided: t = 801, 601)


def long_clip(num_frames: int = LONG, size: int = 64, seed: int = 0) -> torch.Tensor:
    """A textured square moving right over a textured background, bouncing: (F, size, size, 3)."""
    g = torch.Generator().manual_seed(seed)
    bg = torch.rand(size, size, 3, generator=g) * 0.3
    side = size // 4
    tex = torch.rand(side, side, 3, generator=g) * 0.5 + 0.5
    span = size - side
    out = []
    for i in range(num_frames):
        x = (2 * i) % (2 * span)
        x = x if x < span else 2 * span - x
        f = bg.clone()
        f[size // 3: size // 3 + side, x: x + side] = tex
        out.append(f)
    return torch.stack(out)


@contextlib.contextmanager
def unet_frame_counts(model):
    """Record the frame count of every UNet call (a forward pre-hook, removed on exit)."""
    seen: list[int] = []
    handle = model.unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[2]))
    try:
        yield seen
    finally:
        handle.remove()


# --- the schedule --------------------------------------------------------------------------

CASES = [(F, L, O) for F in (1, 2, 5, 16, 17, 24, 25, 40, 41, 96, 100) for L, O in ((2, 0), (2, 1), (16, 4), (24, 8), (24, 0), (24, 23))]


@pytest.mark.parametrize("fuse", ["pyramid", "flat"])
@pytest.mark.parametrize("F,L,O", CASES)
def test_schedule_properties(F, L, O, fuse):
    opts = ContextOptions(length=L, overlap=O, fuse=fuse)
    wins = opts.windows(F)
    covered = torch.zeros(F, dtype=torch.int64)
    for w in wins:
        assert w.step == 1 and len(w) == min(L, F)  # every window is full length (or the whole video)
        covered[w.start:w.stop] += 1
    assert (covered >= 1).all()  # every frame is covered
    assert wins[0].start == 0 and wins[-1].stop == F  # first at the start, last aligned to the end
    for a, b in zip(wins, wins[1:]):
        assert a.start < b.start  # windows advance
        assert a.stop - b.start >= O  # overlap respected (the end-aligned last one may overlap more)
    if F > L:
        assert all(b.start - a.start == L - O for a, b in zip(wins[:-2], wins[1:-1]))
    weights = fuse_weights(F, opts)
    total = torch.zeros(F)
    for w, wt in zip(wins, weights):
        assert wt.shape == (len(w),) and (wt > 0).all()
        total[w.start:w.stop] += wt
    torch.testing.assert_close(total, torch.ones(F), rtol=0, atol=1e-6)  # weights per frame sum to 1


def test_docstring_example_and_pyramid_shape():
    assert [(w.start, w.stop) for w in CTX3.windows(40)] == [(0, 16), (12, 28), (24, 40)]
    w = fuse_weights(40, CTX3)
    # Frames only window 0 covers take it whole; in the overlap 12-15 the pyramid favours the window
    # where the frame sits more centrally (window 0's edge vs window 1's edge: equal ramps 4..1 vs 1..4).
    assert torch.equal(w[0][:12], torch.ones(12))
    torch.testing.assert_close(w[0][12:] + w[1][:4], torch.ones(4))
    assert (w[0][12:].diff() < 0).all() and (w[1][:4].diff() > 0).all()
    flat = fuse_weights(40, ContextOptions(16, 4, fuse="flat"))
    torch.testing.assert_close(flat[1][:4], torch.full((4,), 0.5))


def test_short_video_is_one_window_no_error():
    opts = ContextOptions()  # 24 frames
    for F in (1, 6, 24):
        assert opts.windows(F) == [range(F)]
        assert effective_windows(opts, F) is None  # the plain path runs
    assert len(opts.windows(25)) == 2


def test_fused_prediction_of_a_per_frame_function_is_that_function():
    """A predictor that treats frames independently gives the same result fused over windows."""
    x = torch.randn(2, 4, 40, 3, 3)
    for fuse in ("pyramid", "flat"):
        out = fused_prediction(lambda xw: xw * 3 + 1, x, ContextOptions(16, 4, fuse=fuse))
        torch.testing.assert_close(out, x * 3 + 1)
    same = fused_prediction(lambda xw: xw * 3 + 1, x, ContextOptions(40, 4))
    assert torch.equal(same, x * 3 + 1)


def test_options_round_trip_and_hashable():
    a = ContextOptions(16, 4, fuse="flat")
    assert ContextOptions.from_dict(a.to_dict()) == a
    assert a.to_dict() == {"length": 16, "overlap": 4, "stride": 1, "closed_loop": False, "fuse": "flat"}
    assert len({a, ContextOptions(16, 4, fuse="flat"), ContextOptions(16, 4)}) == 2
    assert {a: 1}[ContextOptions(16, 4, fuse="flat")] == 1


@pytest.mark.parametrize("kwargs,message", [
    ({"length": 8, "overlap": 8}, "overlap 8 must be smaller than the context length 8"),
    ({"length": 8, "overlap": 12}, "must be smaller than the context length"),
    ({"length": 1, "overlap": 0}, r"too short.*valid: 2-81"),
    ({"length": 0, "overlap": 0}, r"too short"),
    ({"length": MAX_CONTEXT_LENGTH + 1}, r"24-frame clips, Wan 2.1 on 81. Use 2-81"),
    ({"overlap": -1}, ">= 0"),
    ({"stride": 2}, "stride 2 is not supported"),
    ({"closed_loop": True}, "Closed-loop"),
    ({"fuse": "gauss"}, "pyramid"),
    ({"length": 24.0}, "whole number"),
])
def test_bad_options_are_clear_input_errors(kwargs, message):
    with pytest.raises(dmt.InputError, match=message):
        ContextOptions(**kwargs)
    with pytest.raises(dmt.InputError):
        ContextOptions.from_dict({**ContextOptions().to_dict(), **kwargs})


def test_unknown_option_key_refused():
    with pytest.raises(dmt.InputError, match="Unknown context option"):
        ContextOptions.from_dict({"length": 24, "window": 3})


def test_context_windows_rejects_empty_video():
    with pytest.raises(dmt.InputError, match="at least 1 frame"):
        context_windows(0, 24, 8)


# --- one window = today's path, bit for bit ------------------------------------------------

def test_one_window_is_bit_identical_to_no_context(tiny_model, clip):
    """Context windows that cover the video (longer, or exactly as long) run today's path: every
    stage's result is bit-identical to a run without context (restart sampling on: all stages)."""
    settings = dmt.GuidanceSettings(optimization_steps=1)
    kw = dict(num_steps=QUICK, num_inversion_steps=QUICK, settings=settings, seed=3)
    plain = pipeline.transfer(tiny_model, clip, "a square", "a fox", **kw)
    assert plain.inversion.context is None
    for ctx in (ContextOptions(), ContextOptions(length=clip.shape[0], overlap=5, fuse="flat")):
        assert ctx.windows(clip.shape[0]) == [range(clip.shape[0])]
        windowed = pipeline.transfer(tiny_model, clip, "a square", "a fox", context=ctx, **kw)
        assert windowed.inversion.context == ctx
        assert torch.equal(plain.inversion.noisiest, windowed.inversion.noisiest)
        assert all(torch.equal(plain.inversion.latents[t], windowed.inversion.latents[t]) for t in plain.inversion.latents)
        for t in plain.targets.smms:
            for p in plain.targets.smms[t]:
                assert torch.equal(plain.targets.smms[t][p], windowed.targets.smms[t][p])
        assert plain.sample.losses == windowed.sample.losses
        assert torch.equal(plain.sample.latents, windowed.sample.latents)
        assert torch.equal(plain.frames, windowed.frames)


# --- several windows -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_inversion(tiny_model):
    frames = long_clip()
    return dmt.invert_video(tiny_model, frames, "a square", num_inversion_steps=QUICK, num_sampling_steps=QUICK,
                            context=CTX3)


def test_three_window_transfer_on_40_frames(tiny_model):
    before = model_state(tiny_model)
    frames = long_clip()
    with unet_frame_counts(tiny_model) as seen:
        result = pipeline.transfer(tiny_model, frames, "a square", "a fox", num_steps=QUICK, num_inversion_steps=QUICK,
                                   settings=FAST, context=CTX3)
    assert_same_state(before, model_state(tiny_model))
    assert seen and max(seen) == 16  # no UNet call ever saw more than one window of frames
    assert result.frames.shape == (LONG, 64, 64, 3) and torch.isfinite(result.frames).all()
    assert result.targets.context == CTX3 and len(result.targets.windows()) == 3
    for t, smms in result.targets.smms.items():
        assert all(v.shape[0] == 3 * 16 for v in smms.values())  # SMMs kept per window
        assert [next(iter(w.values())).shape[0] for w in result.targets.window_smms(t)] == [16, 16, 16]
    assert len(result.sample.losses) == 2 and all(len(v) == 2 for v in result.sample.losses.values())


def test_windowed_inversion_uses_windows_and_reconstructs(tiny_model, long_inversion):
    from dmt.transfer.inversion import ddim_reconstruct

    with unet_frame_counts(tiny_model) as seen:
        rec = ddim_reconstruct(tiny_model, long_inversion)
    assert set(seen) == {16}
    err = ((rec - long_inversion.x0).norm() / long_inversion.x0.norm()).item()
    print(f"windowed round-trip relative error ({QUICK} steps): {err:.3f}")
    assert err < 0.5, err


def test_per_window_backward_equals_summed_loss_gradient(tiny_model, long_inversion):
    """Backward window by window accumulates exactly the gradient of the summed loss, and
    optimize_latent's Adam step with windows equals Adam on the summed loss."""
    targets = dmt.extract_targets(tiny_model, long_inversion)
    t = targets.schedule.guided[0]
    wins = targets.windows()
    per_window = targets.window_smms(t)
    text = dmt.encode_prompt(tiny_model, "a fox")
    x = long_inversion.latents[t].clone()

    def window_losses(x_var):
        out = []
        for w, target in zip(wins, per_window):
            feats = truncated_forward(tiny_model, x_var[:, :, w.start:w.stop], t, text, targets.feature_paths)
            out.append(total_loss({p: spatial_marginal_mean(f, len(w))[0] for p, f in feats.items()}, target))
        return out

    with dmt.models.unet.frozen(tiny_model.unet):
        a = x.clone().requires_grad_(True)
        for w, target in zip(wins, per_window):  # one window's graph at a time
            feats = truncated_forward(tiny_model, a[:, :, w.start:w.stop], t, text, targets.feature_paths)
            total_loss({p: spatial_marginal_mean(f, len(w))[0] for p, f in feats.items()}, target).backward()
        b = x.clone().requires_grad_(True)
        summed = sum(window_losses(b))
        summed.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)
        assert a.grad.abs().sum() > 0

        lr = 0.01
        got, losses = optimize_latent(tiny_model, x, t, text, per_window, 1, lr, windows=wins)
        c = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([c], lr=lr)
        ref_loss = sum(window_losses(c))
        ref_loss.backward()
        opt.step()
        torch.testing.assert_close(got, c.detach(), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(losses[0], ref_loss.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.equal(got, x)


# --- schedule mismatches are refused ---------------------------------------------------------

def test_save_load_keeps_context_and_refuses_another(tiny_model, long_inversion, tmp_path):
    targets = dmt.extract_targets(tiny_model, long_inversion)
    path = dmt.save_inversion(tmp_path / "long.safetensors", long_inversion, targets)
    inv, tg = dmt.load_inversion(path, model_fingerprint=tiny_model.fingerprint, context=CTX3)
    assert inv.context == CTX3 and tg.context == CTX3
    assert all(torch.equal(tg.smms[t][p], targets.smms[t][p]) for t in targets.smms for p in targets.smms[t])
    inv_any, _ = dmt.load_inversion(path)  # not checked unless asked
    assert inv_any.context == CTX3
    for other in (ContextOptions(16, 6), ContextOptions(16, 4, fuse="flat"), ContextOptions(24, 8), None):
        with pytest.raises(dmt.InversionMismatchError, match="context"):
            dmt.load_inversion(path, context=other)
    # the same windows written differently (length >= frames both mean one pass) are accepted
    short = dmt.Inversion(x0=long_inversion.x0[:, :, :10], latents={k: v[:, :, :10] for k, v in
                          long_inversion.latents.items()}, noisiest_t=long_inversion.noisiest_t,
                          source_prompt="", num_inversion_steps=QUICK, num_sampling_steps=QUICK,
                          scheduler_config=long_inversion.scheduler_config,
                          model_fingerprint=long_inversion.model_fingerprint, context=ContextOptions(24, 8))
    p2 = dmt.save_inversion(tmp_path / "short.safetensors", short)
    assert dmt.load_inversion(p2, context=None)[0].context == ContextOptions(24, 8)


def test_targets_and_sampling_with_another_schedule_refused(tiny_model, long_inversion):
    before = model_state(tiny_model)
    with pytest.raises(dmt.InversionMismatchError, match=r"inversion was made with context windows of 16 frames"):
        dmt.extract_targets(tiny_model, long_inversion, context=ContextOptions(16, 6))
    with pytest.raises(dmt.InversionMismatchError, match="no context windows"):
        dmt.extract_targets(tiny_model, long_inversion, context=None)
    targets = dmt.extract_targets(tiny_model, long_inversion, context=CTX3)  # the same: fine
    init = dmt.low_frequency_init(long_inversion, seed=0)
    with pytest.raises(dmt.InversionMismatchError, match="SMM target set was made with context windows"):
        dmt.guided_sample(tiny_model, targets, init, "a fox", settings=FAST, context=ContextOptions(24, 8))
    with pytest.raises(dmt.InversionMismatchError, match="context"):
        pipeline.transfer(tiny_model, None, "", "a fox", num_steps=QUICK, num_inversion_steps=QUICK,
                          inversion=long_inversion, context=None)
    # a one-pass inversion of the long video cannot feed windowed targets either
    plain = dmt.Inversion(**{**long_inversion.__dict__, "context": None})
    with pytest.raises(dmt.InversionMismatchError, match="no context windows"):
        dmt.extract_targets(tiny_model, plain, context=CTX3)
    with pytest.raises(dmt.InputError, match="context must be"):
        dmt.extract_targets(tiny_model, long_inversion, context="windows please")
    assert_same_state(before, model_state(tiny_model))
