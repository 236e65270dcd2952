"""Video ↔ latent conversion with the VAE, frame by frame in slices.

Frames: (F, H, W, 3) float in [0, 1] (ComfyUI IMAGE layout). Latents: (1, 4, F, H/8, W/8)
float32, already multiplied by the VAE's scaling_factor (0.18215 for ZeroScope).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.grad_modes import evaluation
from ..errors import InputError, explain_out_of_memory
from ..models.zeroscope import ZeroScope

DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_NUM_FRAMES = 576, 320, 24


def check_frames(frames: torch.Tensor, what: str = "video") -> None:
    """Raise InputError unless `frames` is a (F, H, W, 3) float tensor with F >= 2."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"The {what} must be frames of shape (F, H, W, 3); got {shape}.")
    if frames.shape[0] < 2:
        raise InputError(
            f"The {what} has {frames.shape[0]} frame(s); motion transfer needs at least 2 (24 is "
            f"ZeroScope's native length)."
        )


def check_size(width: int, height: int) -> None:
    """Raise InputError unless width and height are positive multiples of 8."""
    if width <= 0 or height <= 0 or width % 8 or height % 8:
        raise InputError(
            f"Size {width}x{height} does not fit: width and height must be positive multiples of 8 "
            f"(ZeroScope's native size is {DEFAULT_WIDTH}x{DEFAULT_HEIGHT})."
        )


def prepare_frames(
    frames: torch.Tensor,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    num_frames: int | None = DEFAULT_NUM_FRAMES,
    start: int = 0,
    stride: int = 1,
) -> torch.Tensor:
    """Cut and resize a clip to the model's input.

    Takes frames start, start+stride, ... (at most `num_frames`, None for all), then resizes every
    frame to width×height with antialiased bicubic interpolation (the authors use PIL's bicubic
    resize), ignoring the aspect ratio, as the authors do.

    Args:
        frames: (F, H, W, 3) float in [0, 1].
    Returns:
        (F', height, width, 3) float32 in [0, 1], on the input's device.
    """
    check_frames(frames)
    check_size(width, height)
    if start < 0 or stride < 1:
        raise InputError(f"Frame start must be >= 0 and stride >= 1, got start={start}, stride={stride}.")
    if num_frames is not None and num_frames < 2:
        raise InputError(f"Frame count must be at least 2, got {num_frames}.")
    clip = frames[start::stride]
    if num_frames is not None:
        clip = clip[:num_frames]
    check_frames(clip, what=f"clip cut from the video (start={start}, stride={stride})")
    clip = clip.float()
    if clip.shape[1:3] != (height, width):
        x = clip.permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
        clip = x.clamp_(0, 1).permute(0, 2, 3, 1).contiguous()
    return clip


def encode_frames(model: ZeroScope, frames: torch.Tensor, slice_size: int = 1) -> torch.Tensor:
    """VAE-encode frames to x0 = scaling_factor · posterior mean.

    Args:
        frames: (F, H, W, 3) float in [0, 1], H and W multiples of 8 (see prepare_frames).
        slice_size: frames per VAE call (memory vs speed).
    Returns:
        x0: (1, 4, F, H/8, W/8) float32 on the model's device.
    """
    check_frames(frames)
    check_size(frames.shape[2], frames.shape[1])
    vae = model.vae
    pixels = frames.to(vae.device, torch.float32).permute(0, 3, 1, 2) * 2.0 - 1.0
    out = []
    with explain_out_of_memory("VAE encoding"), evaluation():
        for i in range(0, pixels.shape[0], slice_size):
            dist = vae.encode(pixels[i : i + slice_size].to(vae.dtype)).latent_dist
            out.append(dist.mean.float())
    x0 = torch.cat(out) * vae.config.scaling_factor
    return x0.permute(1, 0, 2, 3).unsqueeze(0).contiguous()


def decode_latents(model: ZeroScope, latents: torch.Tensor, slice_size: int = 1) -> torch.Tensor:
    """VAE-decode latents to frames.

    Args:
        latents: (1, 4, F, h, w), scaled by scaling_factor.
        slice_size: frames per VAE call.
    Returns:
        (F, 8h, 8w, 3) float32 in [0, 1] on the model's device (x/2 + 1/2, clamped).
    """
    if latents.ndim != 5 or latents.shape[0] != 1:
        raise InputError(f"Latents must have shape (1, C, F, h, w), got {tuple(latents.shape)}.")
    vae = model.vae
    z = (latents[0].permute(1, 0, 2, 3) / vae.config.scaling_factor).to(vae.device)
    out = []
    with explain_out_of_memory("VAE decoding"), evaluation():
        for i in range(0, z.shape[0], slice_size):
            out.append(vae.decode(z[i : i + slice_size].to(vae.dtype)).sample.float())
    images = torch.cat(out)
    return (images / 2 + 0.5).clamp_(0, 1).permute(0, 2, 3, 1).contiguous()
