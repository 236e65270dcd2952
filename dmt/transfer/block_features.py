"""Space-time features of a video DiT: chosen Wan transformer blocks' hidden states and their SMM.

Wan's transformer cuts the latent (B, 16, F', h, w) into 1×2×2 patches: N = F'·h'·w' tokens
(h' = h/2, w' = w/2), frame by frame, row by row, width fastest. Every block maps the tokens
(B, N, D) to (B, N, D) (D = 1536 for Wan2.1-T2V-1.3B). A block's output, viewed as
(B, F', h', w', D) and averaged over h' and w', is its space-time marginal mean (SMM) (B, F', D):
the DiT counterpart of the per-frame spatial means the paper reads from ZeroScope's decoder
(dmt.transfer.features). The guidance loss compares such SMMs with dmt.transfer.loss.total_loss.

Default blocks (`default_smm_blocks`): the middle block and the one after it. The paper guides
with ZeroScope's first decoder block with attention (`up_blocks[1]`), just past the UNet's
bottleneck: features coarse enough to carry layout and motion rather than texture, fine enough
to be per region. A DiT has no bottleneck; its middle blocks are the nearest equivalent (and the
AMF default is the middle block, so the two guidances read the same depth and can be compared).
Two blocks, as the paper sums several activations of its block; the forward stops after the
later one, so a little over half of the transformer runs per guidance iteration. These are a
reasoned default, not a measured one: the toy world should settle it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..models.wan import Wan
from .attention_flow import StopForward, forward_until_stop, patch_grid
from .loss import total_loss

__all__ = ["default_smm_blocks", "check_block_indices", "capture_blocks", "forward_blocks", "token_smm",
           "latent_smms", "latent_smm_loss"]


def default_smm_blocks(num_blocks: int) -> tuple[int, ...]:
    """The blocks SMM guidance reads when none are chosen (see the module docstring):
    (n // 2, n // 2 + 1), moved down to the last two blocks when n // 2 is the last, (0,) for one
    block. Wan2.1-T2V-1.3B (30 blocks): (15, 16); the tiny test Wan (2 blocks): (0, 1)."""
    if num_blocks < 1:
        raise InputError("The transformer has no blocks.")
    if num_blocks == 1:
        return (0,)
    first = min(num_blocks // 2, num_blocks - 2)
    return (first, first + 1)


def _blocks_of(transformer: torch.nn.Module) -> torch.nn.ModuleList:
    blocks = getattr(transformer, "blocks", None)
    if blocks is None or not hasattr(blocks, "__len__"):
        raise InputError("The model has no transformer blocks (`.blocks`); SMM guidance needs Wan's "
                         "WanTransformer3DModel.")
    return blocks


def check_block_indices(transformer: torch.nn.Module, indices: Sequence[int]) -> tuple[int, ...]:
    """`indices` as a tuple of ints, or InputError naming the valid range (0 to len(blocks) - 1)
    when one is not a whole number, out of range or repeated, or when none is given."""
    n = len(_blocks_of(transformer))
    values = list(indices) if isinstance(indices, (tuple, list)) else None
    whole = lambda i: isinstance(i, (int, np.integer)) and not isinstance(i, bool)  # noqa: E731
    if not values or any(not whole(i) or not 0 <= i < n for i in values) or len(set(values)) != len(values):
        raise InputError(f"SMM blocks {indices!r} are not usable: this transformer has {n} blocks, so give distinct "
                         f"whole numbers from 0 to {n - 1} (or None for {default_smm_blocks(n)}).")
    return tuple(int(i) for i in values)


@contextlib.contextmanager
def capture_blocks(transformer: torch.nn.Module, indices: Sequence[int],
                   stop: bool = False) -> Iterator[dict[int, torch.Tensor]]:
    """Record the outputs of blocks `indices` during forwards inside the `with`.

    Args:
        transformer: a WanTransformer3DModel (its `blocks[i]` are hooked).
        indices: distinct block indices, 0 to len(blocks) - 1.
        stop: end each forward right after the last of them in execution order (StopForward
            escapes the transformer call: use `forward_blocks`, which catches it).
    Yields:
        dict block index → its output (B, N, D) in the model's dtype, overwritten by every forward,
        attached to the autograd graph when gradients are on.
    Every hook is removed on exit, whatever the exit.
    """
    chosen = check_block_indices(transformer, indices)
    blocks, last = _blocks_of(transformer), max(chosen)
    store: dict[int, torch.Tensor] = {}

    def record(index: int):
        def hook(_module, _inputs, output):
            store[index] = output[0] if isinstance(output, tuple) else output
            if stop and index == last:
                raise StopForward

        return hook

    handles = []
    try:
        for i in chosen:
            handles.append(blocks[i].register_forward_hook(record(i)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def forward_blocks(model: Wan, latent: torch.Tensor, t: float, text: torch.Tensor,
                   indices: Sequence[int]) -> dict[int, torch.Tensor]:
    """Run the transformer only up to the last of blocks `indices` and return their outputs.

    Args: as `predict_velocity` (latent (B, 16, F', h, w), t = sigma · 1000, text (B, L, D)).
    Returns:
        dict block index → (B, N, D) in the model's dtype; differentiable w.r.t. `latent` when
        gradients are on (the gradients equal those of a full forward: nothing after the last
        block contributes to these outputs).
    """
    with capture_blocks(model.transformer, indices, stop=True) as store:
        forward_until_stop(model, latent, t, text, f"block {max(indices)}")
    return dict(store)


def token_smm(hidden: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """SMM of a block output: (B, N, D) tokens on the (F', h', w') patch grid → (B, F', D).

    The mean over the h'·w' patches of each latent frame runs in the hidden states' dtype (as
    ZeroScope's spatial_marginal_mean); the result is float32.
    """
    frames, h, w = (int(v) for v in grid)
    if hidden.ndim != 3 or hidden.shape[1] != frames * h * w:
        raise InputError(f"Block outputs must be (B, N, D) with N = {frames}x{h}x{w} = {frames * h * w} tokens; "
                         f"got {tuple(hidden.shape)}.")
    batch, _, dim = hidden.shape
    return hidden.reshape(batch, frames, h * w, dim).mean(dim=2).float()


def latent_smms(model: Wan, latent: torch.Tensor, t: float, text: torch.Tensor,
                indices: Sequence[int]) -> dict[int, torch.Tensor]:
    """The SMM of each of blocks `indices` for `latent` at timestep `t` with prompt `text`.

    Args: latent (B, 16, F', h, w); t = sigma · 1000; text (B, L, D) or (1, L, D).
    Returns:
        dict block index → (B, F', D) float32 (differentiable w.r.t. `latent` when gradients are on).
    """
    grid = patch_grid(latent.shape, model.patch_size)
    return {i: token_smm(h, grid) for i, h in forward_blocks(model, latent, t, text, indices).items()}


def latent_smm_loss(model: Wan, reference: Mapping[int, torch.Tensor], latent: torch.Tensor, t: float,
                    text: torch.Tensor, form: str = "cosine") -> torch.Tensor:
    """The paper's SMM loss of `latent` against reference SMMs, summed over the blocks.

    Args:
        reference: block index → (F', D) reference SMM (one guided step's targets).
        latent: (1, 16, F', h, w); gradients flow to it when enabled.
        t: sigma · 1000. text: (1, L, D) prompt embeddings.
        form: "cosine" (the authors' code) or "l2" (the paper's equation), as dmt.transfer.loss.
    Returns:
        0-d float32: Σ over blocks of smm_loss(generated, reference, form) (dmt.transfer.loss.total_loss).
    """
    if latent.shape[0] != 1:
        raise InputError(f"SMM guidance optimises one video at a time; got a batch of {latent.shape[0]}.")
    generated = latent_smms(model, latent, t, text, tuple(reference))
    return total_loss({f"block {i}": s[0] for i, s in generated.items()},
                      {f"block {i}": s for i, s in reference.items()}, form)
