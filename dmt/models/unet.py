"""Calling the UNet the way the authors do: fp32 latents, weights' dtype under autocast."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..models.zeroscope import ZeroScope


def autocast_for(model: ZeroScope) -> contextlib.AbstractContextManager:
    """Autocast to the weights' dtype (fp16/bf16) on the model's device; nothing for fp32."""
    dtype = model.dtype
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=model.device.type, dtype=dtype)


def predict_noise(model: ZeroScope, latents: torch.Tensor, t: int, text: torch.Tensor) -> torch.Tensor:
    """ε = UNet(latents, t, text) under autocast.

    Args:
        latents: (B, 4, F, h, w), any float dtype (kept fp32 by the library).
        t: integer timestep.
        text: (B, 77, D) prompt embeddings.
    Returns:
        (B, 4, F, h, w) noise prediction in the autocast dtype.
    """
    with autocast_for(model):
        return model.unet(latents, t, encoder_hidden_states=text, return_dict=False)[0]


@contextlib.contextmanager
def frozen(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Set requires_grad=False on every parameter; restore each parameter's flag on exit."""
    params = list(module.parameters())
    saved = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield module
    finally:
        for p, flag in zip(params, saved):
            p.requires_grad_(flag)
