"""Stage-by-stage agreement with the authors' algorithm, written here the way their code does it
(diffusers' DDIMScheduler.step / add_noise, per-anchor loss loop, scheduler.timesteps indexing),
on the tiny float32 model where both must agree to float rounding."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from einops import rearrange

import dmt
from dmt.transfer.ddim import add_noise, ddim_step, renoise
from dmt.transfer.features import capture_features
from dmt.models.random_model import SCHEDULER_CONFIG

from helpers import STEPS


def _sched(n):
    s = DDIMScheduler(**SCHEDULER_CONFIG)
    s.set_timesteps(n)
    return s


def _authors_get_timesteps(scheduler, n, max_g, min_g):
    init_timestep = min(int(n * max_g), n)
    t_start = max(n - init_timestep, 0)
    t_end = int(n * min_g)
    timesteps = scheduler.timesteps[t_start:]
    guided = scheduler.timesteps[t_start:-t_end] if t_end > 0 else scheduler.timesteps[t_start:]
    return [int(t) for t in timesteps], [int(t) for t in guided]


@pytest.mark.parametrize("window", [(0.6, 1.0), (0.2, 0.8), (0.0, 1.0), (0.5, 0.5), (0.3, 0.9)])
def test_schedule_equals_authors_get_timesteps(window):
    s = dmt.make_schedule(DDIMScheduler(**SCHEDULER_CONFIG), 50, window)
    ts, guided = _authors_get_timesteps(_sched(50), 50, window[1], window[0])
    assert list(s.timesteps) == ts and list(s.guided) == guided


@pytest.mark.parametrize("t", [981, 601, 21, 1])
def test_ddim_step_equals_diffusers_step(t):
    sched = _sched(50)
    g = torch.Generator().manual_seed(t)
    x, eps = torch.randn(1, 4, 3, 8, 8, generator=g), torch.randn(1, 4, 3, 8, 8, generator=g)
    ref = sched.step(eps, t, x).prev_sample
    ours = ddim_step(sched, x, eps, t, t - 20)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-6)
    assert torch.allclose(add_noise(sched, x, eps, t), sched.add_noise(x, eps, torch.tensor([t])), atol=1e-6)


def test_renoise_equals_authors_undo_step():
    sched = _sched(50)
    x = torch.randn(1, 4, 3, 8, 8)
    torch.manual_seed(11)
    ours = renoise(sched, x, 581, 50, generator=None)  # None: the global RNG, as their randn_like
    torch.manual_seed(11)
    ref = x
    for i in range(sched.config.num_train_timesteps // sched.num_inference_steps):
        beta = sched.betas[581 + i]
        ref = (1 - beta) ** 0.5 * ref + beta**0.5 * torch.randn_like(ref)
    assert torch.equal(ours, ref)


def test_loss_equals_authors_anchor_loop():
    g = torch.Generator().manual_seed(0)
    orig, target = torch.randn(6, 10, 4, 4, generator=g), torch.randn(6, 10, 4, 4, generator=g)
    o, t = orig.mean(dim=(2, 3), keepdim=True), target.mean(dim=(2, 3), keepdim=True)
    ref = 0
    for i in range(len(o)):
        ref = ref + 1 - F.cosine_similarity(t - t[i], (o - o[i]), dim=1).mean()
    ref = ref / len(o)
    ours = dmt.smm_loss(t[:, :, 0, 0], o[:, :, 0, 0])
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)


def test_inversion_equals_authors_loop(tiny_model, inversion):
    sched = copy.deepcopy(tiny_model.scheduler)
    sched.set_timesteps(inversion.num_inversion_steps)
    cond = dmt.encode_prompt(tiny_model, inversion.source_prompt)
    latent = inversion.x0.clone()
    timesteps = list(reversed(sched.timesteps))
    saved = {}
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            a_t = sched.alphas_cumprod[t]
            a_prev = sched.alphas_cumprod[timesteps[i - 1]] if i > 0 else sched.final_alpha_cumprod
            eps = tiny_model.unet(latent, t, encoder_hidden_states=cond).sample
            pred_x0 = (latent - (1 - a_prev) ** 0.5 * eps) / a_prev**0.5
            latent = a_t**0.5 * pred_x0 + (1 - a_t) ** 0.5 * eps
            saved[int(t)] = latent
    assert inversion.noisiest_t == int(timesteps[-1])
    for t, lat in inversion.latents.items():
        assert torch.allclose(lat, saved[t], atol=1e-5, rtol=1e-5), t


def test_low_frequency_init_equals_authors(inversion):
    sched = _sched(STEPS)
    T, t_inv = int(sched.timesteps[0]), inversion.noisiest_t
    a = sched.alphas_cumprod[t_inv]
    eps = (inversion.noisiest - a**0.5 * inversion.x0) / (1 - a) ** 0.5
    x = sched.add_noise(inversion.x0, eps, torch.tensor([T]))
    noise = torch.randn(x.shape, generator=torch.Generator("cpu").manual_seed(3))

    def lf(z):
        z = rearrange(z, "b c f h w -> (b f) c h w")
        h, w = z.shape[-2:]
        d = F.interpolate(z, size=(h // 4, w // 4), mode="bilinear", align_corners=True, antialias=True)
        return F.interpolate(d, size=(h, w), mode="bilinear", align_corners=True, antialias=True)

    ref = rearrange(lf(x) + (rearrange(noise, "b c f h w -> (b f) c h w") - lf(noise)),
                    "(b f) c h w -> b c f h w", f=x.shape[2])
    ours = dmt.low_frequency_init(inversion, seed=3)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_guided_sampling_equals_authors_loop(tiny_model, inversion, targets):
    """Their run(): guidance_step (Adam + GradScaler, target prompt, features of the truncated
    UNet), denoise_step (CFG through DDIMScheduler.step), undo_step, denoise_step again."""
    model, n_opt = tiny_model, 3
    sched = _sched(STEPS)
    timesteps, guided = _authors_get_timesteps(sched, STEPS, 1.0, 0.6)
    lrs = np.linspace(0.007, 0.004, len(guided))
    prefix = dmt.AUTHORS_PROMPT_PREFIX
    cond = dmt.encode_prompt(model, prefix + "a fox")
    embeds = torch.cat([cond, dmt.encode_prompt(model, dmt.DEFAULT_NEGATIVE_PROMPT)])
    src = dmt.encode_prompt(model, inversion.source_prompt)
    paths = dmt.FEATURE_PATHS
    model.unet.requires_grad_(False)
    try:
        def features(x, t, text):
            with capture_features(model.unet, paths) as f:
                model.unet(x, t, encoder_hidden_states=text)
            return {p: rearrange(f[p], "(b f) d h w -> b f d h w", f=x.shape[2])[0] for p in paths}

        def loss_fn(orig, target):
            total = 0
            for p in paths:
                o, t_ = orig[p].mean(dim=(2, 3), keepdim=True), target[p].mean(dim=(2, 3), keepdim=True)
                acc = 0
                for i in range(len(o)):
                    acc = acc + 1 - F.cosine_similarity(t_ - t_[i], (o - o[i]).detach(), dim=1).mean()
                total = total + acc / len(o)
            return total

        def denoise(x, t):
            with torch.no_grad():
                noise = model.unet(torch.cat([x, x]), t, encoder_hidden_states=embeds).sample
            c, u = noise.chunk(2)
            return sched.step(u + 10 * (c - u), t, x).prev_sample

        gen = torch.Generator().manual_seed(5)
        x = dmt.low_frequency_init(inversion, seed=5)
        for i, t in enumerate(timesteps):
            if t in guided:
                with torch.no_grad():
                    orig = features(inversion.latents[t], t, src)
                xo = x.clone().detach().requires_grad_(True)
                opt = torch.optim.Adam([xo], lr=lrs[i])
                for _ in range(n_opt):
                    opt.zero_grad()
                    loss_fn(orig, features(xo, t, cond)).backward()
                    opt.step()
                x = xo.detach()
            x = denoise(x, t)
            if t != timesteps[-1]:
                for k in range(1000 // STEPS):
                    beta = sched.betas[timesteps[i + 1] + k]
                    x = (1 - beta) ** 0.5 * x + beta**0.5 * torch.randn(x.shape, generator=gen)
                x = denoise(x, t)
        ref = x
    finally:
        model.unet.requires_grad_(True)
    ours = dmt.guided_sample(model, targets, dmt.low_frequency_init(inversion, seed=5), "a fox", seed=5,
                             settings=dmt.GuidanceSettings(optimization_steps=n_opt)).latents
    err = ((ours - ref).norm() / ref.norm()).item()
    print("relative difference to the authors' loop:", err)
    assert err < 1e-4
