"""How many CPU threads torch uses for a model: one for a small model, unless the user chose.

A tiny model gains nothing from more threads, and on a busy machine they only oversubscribe the
cores: `dmt-motion demo` (tiny random model) took 188 s with one thread and 1146 s with two on a
loaded 2-core machine. Real ZeroScope (1.41 G UNet parameters) keeps torch's default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ..settings import THREADS

#: UNets with fewer parameters than this run on one thread unless the user chose (ZeroScope: 1.41 G).
SMALL_UNET_PARAMETERS = 50_000_000


def choose_threads(unet_parameters: int, requested: int | None = None,
                   environ: Mapping[str, str] | None = None) -> int | None:
    """The torch thread count to set for a model, or None to leave torch's own choice.

    Rule: `requested` (--threads N) wins; else an OMP_NUM_THREADS set in `environ` (default:
    os.environ) is respected (torch already reads it: None); else a UNet of fewer than
    SMALL_UNET_PARAMETERS parameters gets 1 thread; else None (torch's default).
    Raises InputError for a requested count outside 1..1024.
    """
    if requested is not None:
        return int(THREADS.check(requested))
    env = os.environ if environ is None else environ
    if env.get("OMP_NUM_THREADS", "").strip():
        return None
    return 1 if unet_parameters < SMALL_UNET_PARAMETERS else None


def unet_parameters(model) -> int:
    """Parameter count of the denoiser: `model.unet` (ZeroScope) or `model.transformer` (Wan)."""
    denoiser = model.transformer if getattr(model, "kind", "zeroscope") == "wan" else model.unet
    return sum(p.numel() for p in denoiser.parameters())


def set_threads_for(model, requested: int | None = None, environ: Mapping[str, str] | None = None) -> int | None:
    """Apply choose_threads to a loaded model: torch.set_num_threads(n) and return n, or None when
    torch's setting is left as it is."""
    n = choose_threads(unet_parameters(model), requested, environ)
    if n is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
