"""Feature capture: no effect on the UNet, hooks always removed, early stop = full-pass gradients."""

from __future__ import annotations

import pytest
import torch

import dmt
from dmt.transfer.features import (FEATURE_PATHS, capture_features, spatial_marginal_mean, truncated_forward,
                                   truncated_unet)
from dmt.models.unet import frozen

from helpers import assert_same_state, model_state


def _inputs(model, frames=4):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, frames, 8, 8, generator=g)
    return x, dmt.encode_prompt(model, "a fox")


def _hook_count(module):
    return sum(len(m._forward_hooks) for m in module.modules())


def test_capture_leaves_output_identical_and_removes_hooks(tiny_model):
    x, text = _inputs(tiny_model)
    with torch.no_grad():
        ref = tiny_model.unet(x, 901, encoder_hidden_states=text).sample
        with capture_features(tiny_model.unet) as feats:
            out = tiny_model.unet(x, 901, encoder_hidden_states=text).sample
            assert _hook_count(tiny_model.unet) == len(FEATURE_PATHS)
    assert torch.equal(ref, out)
    assert set(feats) == set(FEATURE_PATHS)
    assert feats["up_blocks.1.upsamplers.0"].shape[-1] == 2 * feats["up_blocks.1.temp_convs.1"].shape[-1]
    assert _hook_count(tiny_model.unet) == 0


def test_resnet_feature_is_the_branch_before_the_residual(tiny_model):
    x, text = _inputs(tiny_model)
    resnet = tiny_model.unet.up_blocks[1].resnets[1]
    with torch.no_grad(), capture_features(tiny_model.unet, ["up_blocks.1.resnets.1.conv2", "up_blocks.1.resnets.1"]) as f:
        tiny_model.unet(x, 901, encoder_hidden_states=text)
    assert resnet.conv_shortcut is not None  # the residual is a projection of the block input
    assert not torch.allclose(f["up_blocks.1.resnets.1.conv2"], f["up_blocks.1.resnets.1"])


def test_hooks_removed_after_exception(tiny_model):
    x, text = _inputs(tiny_model)
    with pytest.raises(RuntimeError, match="boom"):
        with capture_features(tiny_model.unet):
            raise RuntimeError("boom")
    assert _hook_count(tiny_model.unet) == 0
    with pytest.raises(KeyboardInterrupt):
        with capture_features(tiny_model.unet):
            raise KeyboardInterrupt
    assert _hook_count(tiny_model.unet) == 0


def test_unknown_path_is_a_clear_error(tiny_model):
    with pytest.raises(KeyError, match="no submodule"):
        with capture_features(tiny_model.unet, ["up_blocks.9.nope"]):
            pass
    assert _hook_count(tiny_model.unet) == 0


def test_truncated_gradients_equal_full_pass_gradients(tiny_model):
    x, text = _inputs(tiny_model)
    target = {p: torch.randn(4, v) for p, v in zip(FEATURE_PATHS, (32, 32, 32))}

    def grad(truncate: bool):
        xg = x.clone().requires_grad_(True)
        with frozen(tiny_model.unet):
            if truncate:
                feats = truncated_forward(tiny_model, xg, 901, text)
            else:
                with capture_features(tiny_model.unet) as feats:
                    tiny_model.unet(xg, 901, encoder_hidden_states=text)
            smms = {p: spatial_marginal_mean(feats[p], 4)[0] for p in FEATURE_PATHS}
            dmt.total_loss(smms, target).backward()
        return xg.grad

    g_full, g_trunc = grad(False), grad(True)
    assert g_full.abs().sum() > 0
    assert torch.allclose(g_full, g_trunc, rtol=1e-5, atol=1e-7)
    assert _hook_count(tiny_model.unet) == 0


def test_reusable_truncated_forward_equals_one_shot_calls(tiny_model):
    """truncated_unet registers its hooks once: every call gives exactly truncated_forward's
    activations and gradients, records nothing outside its calls, and leaves no hook behind."""
    x, text = _inputs(tiny_model)
    with frozen(tiny_model.unet):
        with truncated_unet(tiny_model) as run:
            assert _hook_count(tiny_model.unet) == len(FEATURE_PATHS)
            for t in (901, 601, 901):
                xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
                a = run(xa, t, text)
                b = truncated_forward(tiny_model, xb, t, text)  # nested: its own hooks, then removed
                assert set(a) == set(FEATURE_PATHS)
                assert all(torch.equal(a[p], b[p]) for p in FEATURE_PATHS)
                sum(v.mean() for v in a.values()).backward()
                sum(v.mean() for v in b.values()).backward()
                assert torch.equal(xa.grad, xb.grad)
            with torch.no_grad():  # a plain full forward inside the block runs to the end, untouched
                ref = tiny_model.unet(x, 901, encoder_hidden_states=text).sample
            assert ref.shape == x.shape
        assert _hook_count(tiny_model.unet) == 0
        with pytest.raises(RuntimeError, match="boom"):
            with truncated_unet(tiny_model):
                raise RuntimeError("boom")
        assert _hook_count(tiny_model.unet) == 0


def test_guided_run_leaves_model_as_loaded(tiny_model, targets, inversion):
    before = model_state(tiny_model)
    init = dmt.low_frequency_init(inversion, seed=0)
    dmt.guided_sample(tiny_model, targets, init, "a fox", settings=dmt.GuidanceSettings(optimization_steps=2))
    assert_same_state(before, model_state(tiny_model))


@pytest.mark.parametrize("how", ["check_interrupt", "on_step_raises", "keyboard"])
def test_interrupted_run_leaves_model_as_loaded(tiny_model, targets, inversion, how):
    before = model_state(tiny_model)
    init = dmt.low_frequency_init(inversion, seed=0)
    calls = {"n": 0}

    def check():
        calls["n"] += 1
        return how == "check_interrupt" and calls["n"] > 3

    def on_step(stage, step, total, latent):
        if step == 2 and how != "check_interrupt":
            raise KeyboardInterrupt if how == "keyboard" else RuntimeError("cancelled by the UI")

    expected = {"check_interrupt": dmt.Interrupted, "on_step_raises": RuntimeError, "keyboard": KeyboardInterrupt}[how]
    with pytest.raises(expected):
        dmt.guided_sample(tiny_model, targets, init, "a fox", settings=dmt.GuidanceSettings(optimization_steps=3),
                          on_step=on_step, check_interrupt=check)
    assert_same_state(before, model_state(tiny_model))
