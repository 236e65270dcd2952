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


def prediction_type(model: ZeroScope) -> str:
    """What the UNet outputs, from the scheduler config: "epsilon" (ZeroScope) or "v_prediction"
    (the toy-world model; v = √ᾱ_t·ε − √(1−ᾱ_t)·x0)."""
    return str(model.scheduler.config.get("prediction_type", "epsilon"))


def predict_noise(model: ZeroScope, latents: torch.Tensor, t: int, text: torch.Tensor) -> torch.Tensor:
    """ε = UNet(latents, t, text) under autocast.

    Args:
        latents: (B, 4, F, h, w), any float dtype (kept fp32 by the library).
        t: integer timestep.
        text: (B, 77, D) prompt embeddings.
    Returns:
        (B, 4, F, h, w) noise prediction in the autocast dtype. A v-prediction UNet's output is
        turned into ε here (ε = √ᾱ_t·v + √(1−ᾱ_t)·x_t, in float32), so every stage of the method
        (inversion, guidance, sampling) runs unchanged on it; an ε-UNet's output is returned as is.
    """
    with autocast_for(model):
        out = model.unet(latents, t, encoder_hidden_states=text, return_dict=False)[0]
    if prediction_type(model) == "v_prediction":
        a = model.scheduler.alphas_cumprod[int(t)].to(torch.float32)
        return a.sqrt() * out.float() + (1 - a).sqrt() * latents.float()
    return out


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
