"""Progress and cancellation hooks injected by the caller (CLI bars, ComfyUI nodes).

on_step(stage, step, total, latent): called after every unit of work — an inversion step, a
target extraction, an optimisation iteration or a denoise pass. `latent` is the current
(1, 4, F, h, w) latent where one exists (for previews), else None. It may raise to cancel
(ComfyUI's ProgressBar.update does on Cancel).
check_interrupt(): called before every unit of work; raise, or return True to cancel with
dmt.errors.Interrupted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import Interrupted

OnStep = Callable[[str, int, int, "torch.Tensor | None"], None]
CheckInterrupt = Callable[[], "bool | None"]


def no_progress(stage: str, step: int, total: int, latent: torch.Tensor | None) -> None:
    """Default on_step: does nothing."""


def never_interrupt() -> bool:
    """Default check_interrupt: never cancels."""
    return False


def checkpoint(check_interrupt: CheckInterrupt) -> None:
    """Call check_interrupt and raise Interrupted when it returns True."""
    if check_interrupt():
        raise Interrupted("The run was cancelled.")
