"""The SMM motion loss between generated and source space-time features.

For one activation with source SMM φ and generated SMM φ̃, both (F, D):
  cosine (authors' default):  L = (1/F) Σ_i [ 1 − (1/F) Σ_j cos(φ̃_j − φ̃_i, φ_j − φ_i) ]
      cosine over D with torch's eps-clamped cosine_similarity; at j = i both vectors are zero,
      the cosine is 0 and the term counts as 1, so the smallest value is 1/F, reached exactly
      when φ̃ = φ + c for a per-channel constant c.
  l2 (the paper's printed form): L = Σ_i Σ_j ‖(φ̃_i − φ̃_j) − (φ_i − φ_j)‖², zero at φ̃ = φ + c.
Both are invariant to spatial permutations of the features (the SMM averages them out).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ..settings import TRANSFER

LOSS_FORMS: tuple[str, ...] = TRANSFER["loss"].choices  # ("cosine", "l2")


def smm_loss(generated: torch.Tensor, source: torch.Tensor, form: str = "cosine") -> torch.Tensor:
    """Loss of one activation. generated, source: (F, D) → scalar, computed in float32."""
    if generated.shape != source.shape or generated.ndim != 2:
        raise ValueError(f"SMMs must both be (F, D); got {tuple(generated.shape)} and {tuple(source.shape)}.")
    g = generated.float()
    s = source.float().detach()
    g_diff = g[None, :, :] - g[:, None, :]  # [i, j] = φ̃_j − φ̃_i
    s_diff = s[None, :, :] - s[:, None, :]
    if form == "cosine":
        cos = F.cosine_similarity(g_diff, s_diff, dim=-1)  # (F, F)
        return (1.0 - cos.mean(dim=1)).mean()
    if form == "l2":
        return (g_diff - s_diff).pow(2).sum()
    raise ValueError(f"Unknown loss form '{form}'; use one of {LOSS_FORMS}.")


def total_loss(
    generated: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor], form: str = "cosine"
) -> torch.Tensor:
    """Sum of smm_loss over the activations (same keys in both mappings), each (F, D)."""
    if set(generated) != set(source):
        raise ValueError(f"Feature names differ: {sorted(generated)} vs {sorted(source)}.")
    return sum(smm_loss(generated[k], source[k], form) for k in source)
