"""Video ↔ latent conversion with the VAE, frame by frame in slices.

Frames: (F, H, W, 3) float in [0, 1] (ComfyUI IMAGE layout). Latents: (1, 4, F, H/8, W/8)
float32, already multiplied by the VAE's scaling_factor (0.18215 for ZeroScope).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError, explain_out_of_memory
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..models.grad_modes import evaluation
from ..models.zeroscope import ZeroScope
from ..settings import TRANSFER

DEFAULT_WIDTH, DEFAULT_HEIGHT = TRANSFER["width"].default, TRANSFER["height"].default
DEFAULT_NUM_FRAMES = 24  # ZeroScope's training length


class _UpToNative(int):
    """prepare_frames' default frame count: 24 (ZeroScope's native length), or fewer when the clip
    is shorter. An explicit count is never shortened: asking for more frames than the clip gives
    is refused."""

    def __repr__(self) -> str:
        return "UP_TO_NATIVE"


UP_TO_NATIVE = _UpToNative(DEFAULT_NUM_FRAMES)


def check_frames(frames: torch.Tensor, what: str = "video", finite: bool = True) -> None:
    """Raise InputError unless `frames` is a (F, H, W, 3) tensor with F >= 2 and only finite
    values (NaN or infinite pixels would run to the end and give a non-finite video)."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"The {what} must be frames of shape (F, H, W, 3); got {shape}.")
    if frames.shape[0] < 2:
        raise InputError(
            f"The {what} has {frames.shape[0]} frame(s); motion transfer needs at least 2 (24 is "
            f"ZeroScope's native length)."
        )
    if finite and frames.is_floating_point() and not bool(torch.isfinite(frames).all()):
        bad = int((~torch.isfinite(frames)).flatten(1).any(1).sum())
        raise InputError(
            f"The {what} contains NaN or infinite pixel values in {bad} of its {frames.shape[0]} frames; "
            f"frames must be finite numbers in [0, 1]. Check the node or file that produced them."
        )


def check_size(width: int, height: int) -> None:
    """Raise InputError unless width and height are in their range (dmt.settings: multiples of 8,
    8 to 2048 pixels)."""
    if TRANSFER["width"].problem(width) or TRANSFER["height"].problem(height):
        raise InputError(
            f"Size {width}x{height} does not fit: width and height must be multiples of {TRANSFER['width'].multiple_of} "
            f"{TRANSFER['width'].range_text()} "
            f"(ZeroScope's native size is {DEFAULT_WIDTH}x{DEFAULT_HEIGHT})."
        )


def prepare_frames(
    frames: torch.Tensor,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    num_frames: int | None = UP_TO_NATIVE,  # type: ignore[assignment]
    start: int = 0,
    stride: int = 1,
) -> torch.Tensor:
    """Cut and resize a clip to the model's input.

    Takes frames start, start+stride, ... (`num_frames` of them; None for all; the default takes
    up to 24, fewer from a shorter clip; an explicit count larger than the clip gives is refused
    with the counts), then resizes every
    frame to width×height with antialiased bicubic interpolation (the authors use PIL's bicubic
    resize), ignoring the aspect ratio, as the authors do.

    Args:
        frames: (F, H, W, 3) float in [0, 1].
    Returns:
        (F', height, width, 3) float32 in [0, 1], on the input's device.
    Raises:
        InputError: bad shape or size, fewer than 2 frames, NaN/inf in the frames used, or an
            explicit frame count above what the clip gives.
    """
    check_frames(frames, finite=False)
    check_size(width, height)
    if start < 0 or stride < 1:
        raise InputError(f"Frame start must be >= 0 and stride >= 1, got start={start}, stride={stride}.")
    if num_frames is not None and num_frames < 2:
        raise InputError(f"Frame count must be at least 2, got {num_frames}.")
    clip = frames[start::stride]
    check_frames(clip, what=f"clip cut from the video (start={start}, stride={stride})")
    if num_frames is not None:
        if clip.shape[0] < num_frames and not isinstance(num_frames, _UpToNative):
            raise InputError(
                f"Frame count {num_frames} is more than the video gives: it has {frames.shape[0]} frames, and "
                f"from start {start} with stride {stride} that leaves {clip.shape[0]}. Set the frame count to "
                f"at most {clip.shape[0]} (0 or None = all), or lower the start or the stride."
            )
        clip = clip[:int(num_frames)]
    clip = clip.float()
    if clip.shape[1:3] != (height, width):
        x = clip.permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
        clip = x.clamp_(0, 1).permute(0, 2, 3, 1).contiguous()
    return clip


def _check_slice(slice_size: int) -> None:
    if not isinstance(slice_size, int) or slice_size < 1:
        raise InputError(f"VAE slice (chunk) size must be a whole number >= 1, got {slice_size!r}.")


def num_chunks(num_frames: int, slice_size: int = 1) -> int:
    """How many VAE calls (= progress steps and cancel points) encode/decode make for F frames."""
    return -(-int(num_frames) // max(int(slice_size), 1))


def encode_frames(
    model: ZeroScope,
    frames: torch.Tensor,
    slice_size: int = 1,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
) -> torch.Tensor:
    """VAE-encode frames to x0 = scaling_factor · posterior mean.

    Args:
        frames: (F, H, W, 3) float in [0, 1], H and W multiples of 8 (see prepare_frames).
        slice_size: frames per VAE call (the chunk: memory vs speed).
        on_step: called after every chunk as on_step("encode", chunk, num_chunks, None).
        check_interrupt: called before every chunk (a cancel point per chunk, see dmt.io.progress).
            Neither changes the result.
    Returns:
        x0: (1, 4, F, H/8, W/8) float32 on the model's device.
    """
    check_frames(frames)
    check_size(frames.shape[2], frames.shape[1])
    _check_slice(slice_size)
    vae = model.vae
    # One cast for all chunks: diffusers' `vae.dtype` walks every module on each access.
    pixels = (frames.to(vae.device, torch.float32).permute(0, 3, 1, 2) * 2.0 - 1.0).to(vae.dtype)
    out = []
    total = num_chunks(pixels.shape[0], slice_size)
    with explain_out_of_memory("VAE encoding"), evaluation():
        for k, i in enumerate(range(0, pixels.shape[0], slice_size)):
            checkpoint(check_interrupt)
            dist = vae.encode(pixels[i : i + slice_size]).latent_dist
            out.append(dist.mean.float())
            on_step("encode", k + 1, total, None)
    x0 = torch.cat(out) * vae.config.scaling_factor
    return x0.permute(1, 0, 2, 3).unsqueeze(0).contiguous()


def decode_latents(
    model: ZeroScope,
    latents: torch.Tensor,
    slice_size: int = 1,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
) -> torch.Tensor:
    """VAE-decode latents to frames.

    Args:
        latents: (1, 4, F, h, w), scaled by scaling_factor.
        slice_size: frames per VAE call (the chunk).
        on_step: called after every chunk as on_step("decode", chunk, num_chunks, latent) with the
            input latent (for previews).
        check_interrupt: called before every chunk (a cancel point per chunk). Neither callback
            changes the result.
    Returns:
        (F, 8h, 8w, 3) float32 in [0, 1] on the model's device (x/2 + 1/2, clamped).
    """
    if latents.ndim != 5 or latents.shape[0] != 1:
        raise InputError(f"Latents must have shape (1, C, F, h, w), got {tuple(latents.shape)}.")
    _check_slice(slice_size)
    vae = model.vae
    z = (latents[0].permute(1, 0, 2, 3) / vae.config.scaling_factor).to(vae.device, vae.dtype)
    out = []
    total = num_chunks(z.shape[0], slice_size)
    with explain_out_of_memory("VAE decoding"), evaluation():
        for k, i in enumerate(range(0, z.shape[0], slice_size)):
            checkpoint(check_interrupt)
            out.append(vae.decode(z[i : i + slice_size]).sample.float())
            on_step("decode", k + 1, total, latents)
    images = torch.cat(out)
    return (images / 2 + 0.5).clamp_(0, 1).permute(0, 2, 3, 1).contiguous()
