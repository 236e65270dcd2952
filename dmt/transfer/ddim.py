"""DDIM arithmetic on latents (float32), written out as the authors and diffusers do it.

Coefficients are the scheduler's float32 ᾱ values (0-dim tensors), as in diffusers; the latent
stays float32 even when the UNet runs in fp16 (the noise prediction is upcast first).
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from ..transfer.schedule import alpha_bar


def ddim_step(scheduler: DDIMScheduler, x: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int) -> torch.Tensor:
    """One deterministic DDIM step (eta 0) from t to t_prev (t_prev < 0 → final_alpha_cumprod).

    Follows DDIMScheduler.step: x̂0 = (x − √(1−ᾱ_t)·ε)/√ᾱ_t (clamped when the config asks for
    clip_sample), x_prev = √ᾱ_prev·x̂0 + √(1−ᾱ_prev)·ε. x, eps: (B, 4, F, h, w).
    """
    a_t, a_prev = alpha_bar(scheduler, t), alpha_bar(scheduler, t_prev)
    eps = eps.float()
    x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5
    if scheduler.config.get("clip_sample", False):
        r = scheduler.config.get("clip_sample_range", 1.0)
        x0 = x0.clamp(-r, r)
    return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps


def inversion_step(scheduler: DDIMScheduler, x: torch.Tensor, eps: torch.Tensor, t_prev: int, t: int) -> torch.Tensor:
    """One DDIM inversion step from t_prev to the noisier t (t_prev < 0: first step, ᾱ_0 rule).

    x̂0 = (x − √(1−ᾱ_prev)·ε)/√ᾱ_prev; x_t = √ᾱ_t·x̂0 + √(1−ᾱ_t)·ε (the authors' formula).
    """
    a_t, a_prev = alpha_bar(scheduler, t), alpha_bar(scheduler, t_prev)
    eps = eps.float()
    x0 = (x - (1 - a_prev) ** 0.5 * eps) / a_prev**0.5
    return a_t**0.5 * x0 + (1 - a_t) ** 0.5 * eps


def renoise(
    scheduler: DDIMScheduler, x: torch.Tensor, t_prev: int, num_steps: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Restart sampling's re-noising from t_prev back up by num_train // num_steps train steps.

    x ← √(1−β)·x + √β·n, n ~ N(0, I), with β = betas[t_prev + i] for i = 0 … k−1 (the authors'
    indices; the exact forward process would use betas[t_prev+1 … t]).
    """
    k = scheduler.config.num_train_timesteps // num_steps
    for i in range(k):
        beta = scheduler.betas[t_prev + i]
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = (1 - beta) ** 0.5 * x + beta**0.5 * noise
    return x


def add_noise(scheduler: DDIMScheduler, x0: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
    """Forward process to t: √ᾱ_t·x0 + √(1−ᾱ_t)·ε (DDIMScheduler.add_noise)."""
    a = alpha_bar(scheduler, t)
    return a**0.5 * x0 + (1 - a) ** 0.5 * eps
