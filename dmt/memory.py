"""Memory options of the guided step (opt-in; the defaults change nothing)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def gradient_checkpointing(unet: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Turn diffusers' gradient checkpointing on for the block (when `enabled`) and restore the
    model's previous setting on exit. Recomputes block activations in the backward pass instead
    of storing them: less memory, same gradients, about one extra forward of compute."""
    was_on = bool(getattr(unet, "is_gradient_checkpointing", False))
    if not enabled or was_on:
        yield
        return
    unet.enable_gradient_checkpointing()
    try:
        yield
    finally:
        unet.disable_gradient_checkpointing()
