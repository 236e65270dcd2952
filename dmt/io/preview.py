"""Cheap latent → RGB previews (no VAE): ZeroScope latents live in the SD 1.x VAE space, where a
fixed 4×3 linear map gives a recognisable low-resolution image."""

from __future__ import annotations

import torch

# Linear least-squares map from SD 1.x VAE latent channels to RGB in [-1, 1] (the factors
# ComfyUI and other previewers use for SD 1.5 latents).
SD15_LATENT_RGB = torch.tensor([
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
])


def latent_preview(latents: torch.Tensor, frame: int | None = 0) -> torch.Tensor:
    """Approximate RGB of latents.

    Args:
        latents: (1, 4, F, h, w) or (4, F, h, w), scaled latents (as the sampler holds them).
        frame: which frame (None: all frames).
    Returns:
        (h, w, 3) for one frame or (F, h, w, 3), float32 in [0, 1], on the CPU.
    """
    z = latents.detach().float().cpu()
    if z.ndim == 5:
        z = z[0]
    if z.ndim != 4 or z.shape[0] != 4:
        raise ValueError(f"Expected latents (1, 4, F, h, w), got {tuple(latents.shape)}.")
    if frame is not None:
        z = z[:, frame : frame + 1]
    rgb = torch.einsum("cfhw,cr->fhwr", z, SD15_LATENT_RGB)
    rgb = ((rgb + 1) / 2).clamp_(0, 1)
    return rgb[0] if frame is not None else rgb
