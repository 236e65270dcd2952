"""Memory options: gradient checkpointing of the guided step, offloading of the text encoder and
VAE, and transfer(low_memory=True) — same numbers as the default path, model left as loaded."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import dmt
from dmt.transfer.features import FEATURE_PATHS, spatial_marginal_mean, truncated_forward
from dmt.transfer.loss import total_loss
from dmt.models.memory import (checkpoint_targets, gradient_checkpointing, hook_counts, is_checkpointing, offloaded,
                        on_device)
from dmt.models.random_model import save_random_model
from dmt.models.text import encode_prompt
from dmt.models.unet import frozen

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = save_random_model(tmp_path_factory.mktemp("tiny_zeroscope"))
    return dmt.load_zeroscope(folder, "float32", "cpu")


def _snapshot(model) -> dict:
    """Everything a run must leave as it found: devices, dtypes, requires_grad, train flags,
    checkpointing flags, hooks and forward overrides, and the weights themselves."""
    mods = {"unet": model.unet, "vae": model.vae, "text_encoder": model.text_encoder}
    return {
        "params": {k: [(n, p.device, p.dtype, p.requires_grad) for n, p in m.named_parameters()] for k, m in mods.items()},
        "buffers": {k: [(n, b.device) for n, b in m.named_buffers()] for k, m in mods.items()},
        "training": {k: [x.training for x in m.modules()] for k, m in mods.items()},
        "diffusers_ckpt": bool(model.unet.is_gradient_checkpointing),
        "dmt_ckpt": is_checkpointing(model.unet),
        "ckpt_flags": [getattr(x, "gradient_checkpointing", None) for x in model.unet.modules()],
        "hooks": hook_counts(mods.values()),
        "weights_sum": {k: float(sum(p.detach().double().sum() for p in m.parameters())) for k, m in mods.items()},
    }


def _guided_grad(model, x, t, text, targets, checkpointing: bool):
    """Loss, d loss / d latent, and the bytes autograd kept for the backward of the forward."""
    saved = {}

    def pack(tensor):
        saved[id(tensor)] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.enable_grad(), frozen(model.unet), gradient_checkpointing(model.unet, checkpointing):
        assert is_checkpointing(model.unet) == checkpointing
        x = x.clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            feats = truncated_forward(model, x, t, text, FEATURE_PATHS)
        smms = {p: spatial_marginal_mean(feats[p], x.shape[2])[0] for p in FEATURE_PATHS}
        loss = total_loss(smms, targets, "cosine")
        (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad, sum(saved.values())


def test_checkpointing_same_gradient_and_restores(model):
    before = _snapshot(model)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 8, 8, generator=gen)
    text = encode_prompt(model, "a dog jumping")
    with torch.no_grad():
        src = truncated_forward(model, torch.randn(1, 4, 3, 8, 8, generator=gen), 500, text)
    targets = {p: spatial_marginal_mean(src[p], 3)[0] for p in FEATURE_PATHS}
    loss_plain, grad_plain, kept_plain = _guided_grad(model, x, 500, text, targets, False)
    loss_ckpt, grad_ckpt, kept_ckpt = _guided_grad(model, x, 500, text, targets, True)
    assert grad_plain.abs().sum() > 0
    assert kept_ckpt < 0.5 * kept_plain  # checkpointing really keeps fewer activations
    assert torch.allclose(loss_plain, loss_ckpt, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad_ckpt, grad_plain, rtol=1e-5, atol=1e-8)
    assert _snapshot(model) == before


def test_checkpointing_wraps_layers_only_under_grad(model):
    targets = checkpoint_targets(model.unet)
    assert model.unet.transformer_in in targets
    assert model.unet.up_blocks[1] not in targets  # the feature hooks stop the forward inside it
    assert model.unet.up_blocks[1].resnets[1] in targets
    with gradient_checkpointing(model.unet, True):
        assert all("forward" in m.__dict__ for m in targets)
        x = torch.randn(1, 4, 2, 8, 8)
        text = encode_prompt(model, "x")
        with torch.no_grad():
            a = model.unet(x, 10, encoder_hidden_states=text, return_dict=False)[0]
    with torch.no_grad():
        b = model.unet(x, 10, encoder_hidden_states=text, return_dict=False)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert hook_counts([model.unet])["forward_overrides"] == 0


def test_checkpointing_restores_after_exception(model):
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        with gradient_checkpointing(model.unet, True):
            assert is_checkpointing(model.unet)
            raise RuntimeError("boom")
    assert _snapshot(model) == before


def _tiny_video(frames=3, size=64):
    gen = torch.Generator().manual_seed(1)
    return torch.rand(frames, size, size, 3, generator=gen)


def _inversion_and_targets(model):
    inv = dmt.invert_video(model, _tiny_video(), "a dog", num_inversion_steps=10, num_sampling_steps=10)
    targets = dmt.extract_targets(model, inv, (0.6, 1.0), 10)
    init = dmt.low_frequency_init(inv, seed=3, start_timestep=targets.schedule.timesteps[0])
    return inv, targets, init


def test_guided_sample_same_with_checkpointing(model):
    _, targets, init = _inversion_and_targets(model)
    before = _snapshot(model)
    settings = dmt.GuidanceSettings(optimization_steps=2, restart_sampling=False)
    plain = dmt.guided_sample(model, targets, init, "a cat", settings=settings, seed=5)
    ckpt = dmt.guided_sample(model, targets, init, "a cat",
                             settings=dataclasses.replace(settings, gradient_checkpointing=True), seed=5)
    for t in plain.losses:
        assert plain.losses[t] == pytest.approx(ckpt.losses[t], rel=1e-5, abs=1e-7)
    torch.testing.assert_close(ckpt.latents, plain.latents, rtol=1e-4, atol=1e-5)
    assert _snapshot(model) == before


def test_offloaded_moves_only_while_used_and_restores(model, monkeypatch):
    from dmt.models import memory

    moves = []
    real_move = memory._move
    monkeypatch.setattr(memory, "_move", lambda m, d: (moves.append(str(torch.device(d))), real_move(m, "cpu")))
    monkeypatch.setattr(memory, "_to_device", lambda obj, device: obj)
    with offloaded(model.text_encoder, "cuda:0", idle_device="cpu"):  # no GPU needed: moves are spied
        assert moves == ["cpu"]
        ids = torch.zeros(1, 77, dtype=torch.long)
        model.text_encoder(ids)
        assert moves == ["cpu", "cuda:0", "cpu"]  # to the compute device for the forward, back after
    assert moves == ["cpu", "cuda:0", "cpu", "cpu"]  # back where it was
    assert hook_counts([model.text_encoder])["_forward_pre_hooks"] == 0


def test_offloaded_runs_on_compute_device_and_restores_on_error(model):
    before = _snapshot(model)
    ref = encode_prompt(model, "a dog")
    with offloaded(model.text_encoder, "cpu", idle_device="cpu"):
        assert hook_counts([model.text_encoder])["_forward_pre_hooks"] == 1
        torch.testing.assert_close(encode_prompt(model, "a dog"), ref, rtol=0, atol=0)
    with pytest.raises(KeyError):
        with offloaded(model.text_encoder, "cpu"), on_device(model.vae, "cpu"):
            raise KeyError("cancelled")
    assert _snapshot(model) == before


def test_low_memory_transfer_same_frames_and_model_as_loaded(model):
    frames = _tiny_video()
    kwargs = dict(num_steps=10, num_inversion_steps=10, seed=2,
                  settings=dmt.GuidanceSettings(optimization_steps=2))
    before = _snapshot(model)
    ref = dmt.transfer(model, frames, "a dog", "a cat", **kwargs)
    assert _snapshot(model) == before
    low = dmt.transfer(model, frames, "a dog", "a cat", low_memory=True, **kwargs)
    assert _snapshot(model) == before
    assert low.frames.shape == ref.frames.shape == (3, 64, 64, 3)
    torch.testing.assert_close(low.frames, ref.frames, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(low.sample.latents, ref.sample.latents, rtol=1e-4, atol=1e-5)


def test_low_memory_transfer_restores_model_on_failure(model):
    before = _snapshot(model)

    def cancel(stage, step, total, latent):
        if stage == "guidance":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dmt.transfer(model, _tiny_video(), "a dog", "a cat", num_steps=10, num_inversion_steps=10,
                     settings=dmt.GuidanceSettings(optimization_steps=2), low_memory=True, on_step=cancel)
    assert _snapshot(model) == before


def test_presets_are_valid_and_apply():
    from diffusers import DDIMScheduler

    from dmt.transfer.presets import PRESETS, apply_preset, get_preset, preset_kwargs, preset_work
    from dmt.models.random_model import SCHEDULER_CONFIG
    from dmt.transfer.schedule import make_schedule, valid_inversion_steps

    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)  # ZeroScope's scheduler config
    for preset in PRESETS.values():
        guided = make_schedule(scheduler, preset.num_steps, preset.guidance_window).guided
        assert preset.num_inversion_steps in valid_inversion_steps(scheduler, guided)
    authors, n_inv = apply_preset("authors")
    assert authors == dmt.GuidanceSettings() and n_inv == dmt.DEFAULT_INVERSION_STEPS == 999
    fast, n_fast = apply_preset("FAST", dmt.GuidanceSettings(guidance_scale=7.0))
    assert (n_fast, fast.restart_sampling, fast.guidance_scale) == (100, False, 7.0)
    assert preset_kwargs("fast")["num_inversion_steps"] == 100
    assert preset_work("authors") == dict(inversion=999, targets=20, guided_iterations=200, denoise=50, restart=49)
    assert preset_work("fast")["restart"] == 0
    with pytest.raises(dmt.InputError, match="authors, fast"):
        get_preset("turbo")
