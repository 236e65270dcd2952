"""Autograd modes. ComfyUI runs nodes under torch.inference_mode(); tensors made there cannot
be saved for backward. `torch.inference_mode(False)` leaves it but also turns grad mode ON, so
plain evaluation uses `evaluation()` (normal tensors, no graph)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def evaluation() -> Iterator[None]:
    """Outside inference mode, with gradients off: results are ordinary tensors without a graph."""
    with torch.inference_mode(False), torch.no_grad():
        yield
