"""The initial latent: the inverted noise re-noised to the first sampling step, low-passed, with
fresh high frequencies from a seed (the authors' "high-frequency replacement" init)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from einops import rearrange

from ..transfer.ddim import add_noise
from ..errors import InputError
from ..settings import TRANSFER
from ..transfer.inversion import Inversion
from ..transfer.schedule import alpha_bar, make_schedule

DEFAULT_DOWNSAMPLE_FACTOR: int = TRANSFER["downsample_factor"].default  # 4


def max_downsample_factor(latent_shape: tuple[int, ...]) -> int:
    """The largest ξ the low-pass can take for a (…, h, w) latent: the downsampled latent must keep
    at least 1×1 pixels, so ξ <= min(h, w) (= min(width, height) / 8 of the video)."""
    return max(1, min(int(latent_shape[-2]), int(latent_shape[-1])))


def check_downsample_factor(factor: int, latent_shape: tuple[int, ...]) -> None:
    """Raise InputError unless 1 <= factor <= max_downsample_factor(latent_shape)."""
    top = max_downsample_factor(latent_shape)
    h, w = int(latent_shape[-2]), int(latent_shape[-1])
    if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool) or not 1 <= factor <= top:
        raise InputError(
            f"Downsample factor {factor} does not fit this video: its latent is {w}x{h} ({w * 8}x{h * 8} px / 8) "
            f"and the downsampled latent must keep at least 1 pixel per side, so the factor must be a whole "
            f"number from 1 to {top} (authors: {DEFAULT_DOWNSAMPLE_FACTOR})."
        )


def low_pass(x: torch.Tensor, factor: int) -> torch.Tensor:
    """LF(x): per-frame bilinear downsample by `factor` and back up (antialias, align_corners).

    x: (B, C, F, h, w) → same shape.
    """
    b, _, f, h, w = x.shape
    flat = rearrange(x, "b c f h w -> (b f) c h w")
    small = F.interpolate(flat, size=(h // factor, w // factor), mode="bilinear", align_corners=True, antialias=True)
    back = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=True, antialias=True)
    return rearrange(back, "(b f) c h w -> b c f h w", b=b, f=f)


def seeded_noise(shape: tuple[int, ...], seed: int, device: torch.device | str) -> torch.Tensor:
    """ε0 ~ N(0, I), float32, from torch.Generator(device).manual_seed(seed) (as the authors)."""
    gen = torch.Generator(device=device).manual_seed(int(seed))
    return torch.randn(shape, generator=gen, device=device, dtype=torch.float32)


def default_start_timestep(scheduler: DDIMScheduler, num_steps: int = 50, max_guidance: float = 1.0) -> int:
    """The first sampling timestep (981 for 50 steps and a guidance window ending at 1.0)."""
    return make_schedule(scheduler, num_steps, (0.0, max_guidance)).timesteps[0]


def low_frequency_init(
    inversion: Inversion,
    seed: int = 0,
    downsample_factor: int = DEFAULT_DOWNSAMPLE_FACTOR,
    noise: torch.Tensor | None = None,
    start_timestep: int | None = None,
) -> torch.Tensor:
    """x̃_T = LF(x_T) + (ε0 − LF(ε0)).

    x_T re-noises x0 to the first sampling timestep T with the inversion's own noise:
    ε_inv = (x_Tinv − √ᾱ_Tinv·x0)/√(1−ᾱ_Tinv), x_T = √ᾱ_T·x0 + √(1−ᾱ_T)·ε_inv.

    Args:
        seed: seeds ε0 (ignored when `noise` is given).
        downsample_factor: ξ (4); 1 returns x_T unchanged (no replacement), as the authors.
        noise: an explicit ε0 of the latent's shape.
        start_timestep: T (None: 981, the first of 50 steps).
    Returns:
        (1, 4, F, h, w) float32 on the inversion's device.
    """
    check_downsample_factor(downsample_factor, tuple(inversion.x0.shape))
    scheduler = DDIMScheduler.from_config(inversion.scheduler_config)
    t_inv = inversion.noisiest_t
    T = default_start_timestep(scheduler, inversion.num_sampling_steps) if start_timestep is None else int(start_timestep)
    x0 = inversion.x0
    a_inv = alpha_bar(scheduler, t_inv)
    eps_inv = (inversion.noisiest.to(x0.device) - a_inv**0.5 * x0) / (1 - a_inv) ** 0.5
    x_T = add_noise(scheduler, x0, eps_inv, T)
    if downsample_factor == 1:
        return x_T
    if noise is None:
        noise = seeded_noise(tuple(x_T.shape), seed, x_T.device)
    elif noise.shape != x_T.shape:
        raise InputError(f"Noise of shape {tuple(noise.shape)} does not match the latent {tuple(x_T.shape)}.")
    noise = noise.to(x_T.device, torch.float32)
    return low_pass(x_T, downsample_factor) + (noise - low_pass(noise, downsample_factor))
