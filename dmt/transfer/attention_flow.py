"""Attention motion flow (AMF, as in DiTFlow, CVPR 2025) from a video DiT's self-attention.

Wan's transformer cuts the latent (B, 16, F', h, w) into 1×2×2 patches: N = F'·h'·w' tokens
(h' = h/2, w' = w/2), ordered frame by frame, row by row (width fastest). In block i, the
self-attention's queries and keys after their RMS norm (before the rotary position embedding)
say which patches look alike. For two latent frames f and g, the softmax over g's patches of
q_f · k_g / (temperature · sqrt(head_dim)), averaged over heads, is a soft match of each patch of
f in g; its expected position minus the patch's own position is a displacement in patch units
(one patch = 2 latent cells = 16 pixels for Wan 2.1). The flows of all chosen frame pairs are the
AMF; matching a reference video's AMF is the guidance signal.

Memory: the maps are computed `chunk` frame pairs at a time, so the largest intermediate is
chunk × heads × (h'w')² floats whatever the frame count; with gradients, each chunk is recomputed
in the backward pass instead of being kept (what is kept is linear in the number of pairs).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.checkpoint import checkpoint as recompute_in_backward

from ..errors import InputError
from ..models.wan import Wan
from ..models.wan_ops import predict_velocity

__all__ = ["capture_qk", "forward_qk", "patch_grid", "frame_pairs", "attention_flow", "amf_loss", "StopForward",
           "forward_until_stop"]


class StopForward(Exception):
    """Raised from a forward hook to end the transformer's forward there (nothing after it runs)."""


def forward_until_stop(model: Wan, latent: torch.Tensor, t: float, text: torch.Tensor, where: str) -> None:
    """Run `predict_velocity` (same arguments) until a hook raises StopForward; RuntimeError naming
    `where` (the point the hook sits at) when the forward ends without reaching it."""
    try:
        predict_velocity(model, latent, t, text)
    except StopForward:
        return
    raise RuntimeError(f"The transformer forward never reached {where}.")


def _attention_of(transformer: torch.nn.Module, block_index: int) -> torch.nn.Module:
    blocks = getattr(transformer, "blocks", None)
    if blocks is None or not hasattr(blocks, "__len__"):
        raise InputError("The model has no transformer blocks (`.blocks`); AMF needs Wan's WanTransformer3DModel.")
    n = len(blocks)
    if isinstance(block_index, bool) or not isinstance(block_index, int) or not 0 <= block_index < n:
        raise InputError(f"Block index {block_index!r} does not exist: this transformer has {n} blocks, so use "
                         f"a whole number from 0 to {n - 1}.")
    return blocks[block_index].attn1


@contextlib.contextmanager
def capture_qk(transformer: torch.nn.Module, block_index: int,
               stop: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Record block `block_index`'s self-attention queries and keys during forwards inside the block.

    Args:
        transformer: a WanTransformer3DModel (its `blocks[i].attn1.norm_q` / `.norm_k` are hooked).
        block_index: 0 to len(blocks) - 1.
        stop: end each forward right after the keys (the exception `StopForward` escapes the
            transformer call: use `forward_qk`, which catches it); nothing after them is computed.
    Yields:
        dict with 'q' and 'k': (B, N, heads · head_dim) in the model's dtype, overwritten by every
        forward, attached to the autograd graph when gradients are on.
    Every hook is removed on exit, whatever the exit.
    """
    attn = _attention_of(transformer, block_index)
    store: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(_module, _inputs, output):
            store[name] = output
            if stop and name == "k":
                raise StopForward

        return hook

    handles = []
    try:
        handles.append(attn.norm_q.register_forward_hook(record("q")))
        handles.append(attn.norm_k.register_forward_hook(record("k")))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def forward_qk(model: Wan, latent: torch.Tensor, t: float, text: torch.Tensor,
               block_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the transformer only up to block `block_index`'s keys and return (q, k).

    Args: as `predict_velocity` (latent (B, 16, F', h, w), t = sigma · 1000, text (B, L, D)).
    Returns:
        q, k: (B, N, heads · head_dim) in the model's dtype; differentiable w.r.t. `latent` when
        gradients are on.
    """
    with capture_qk(model.transformer, block_index, stop=True) as store:
        forward_until_stop(model, latent, t, text, f"block {block_index}'s keys")
    return store["q"], store["k"]


def patch_grid(latent_shape: Sequence[int], patch_size: Sequence[int] = (1, 2, 2)) -> tuple[int, int, int]:
    """(F', h', w') patch grid of a latent (B, C, F', h, w) cut into `patch_size` (t, h, w) patches."""
    f, h, w = (int(v) for v in latent_shape[-3:])
    pt, ph, pw = (int(v) for v in patch_size)
    if f % pt or h % ph or w % pw:
        raise InputError(f"Latent frames x height x width {f}x{h}x{w} are not multiples of the patch {pt}x{ph}x{pw}.")
    return f // pt, h // ph, w // pw


def frame_pairs(num_frames: int, window: int | None = None) -> list[tuple[int, int]]:
    """Ordered latent-frame pairs (f, g) with 0 < |f - g| <= window (None: every pair), sorted."""
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise InputError(f"The frame window must be a whole number >= 1 (or None for every pair); got {window!r}.")
    reach = num_frames if window is None else window
    return [(f, g) for f in range(num_frames) for g in range(num_frames) if 0 < abs(f - g) <= reach]


def _pair_flows(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, scale: float) -> torch.Tensor:
    """q, k: (P, heads, M, d) float32 for P pairs of frames of M patches; positions (M, 2).
    Returns (P, M, 2): expected matched position minus own position."""
    weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1)  # (P, heads, M, M)
    return torch.matmul(weights.mean(dim=1), positions) - positions


def attention_flow(q: torch.Tensor, k: torch.Tensor, grid: Sequence[int], heads: int,
                   temperature: float = 1.0, window: int | None = None,
                   chunk: int = 1) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The attention motion flow of every chosen frame pair.

    Args:
        q, k: (N, heads · head_dim) or (1, N, heads · head_dim) queries and keys of one video
            (see `capture_qk`), N = F'·h'·w' in the transformer's token order.
        grid: (F', h', w') patch grid (see `patch_grid`).
        heads: attention heads (transformer.config.num_attention_heads).
        temperature: > 0; divides the logits on top of 1/sqrt(head_dim) (1: the attention's own
            sharpness; lower: sharper matches).
        window: largest frame distance |f - g| of a pair (None: all F'(F' - 1) ordered pairs).
        chunk: frame pairs computed at once (memory: chunk × heads × (h'w')² floats).
    Returns:
        flow: (P, h'w', 2) float32, (dx, dy) in patch units, patches of frame f row by row;
        pairs: the P pairs (f, g), in the flow's order (see `frame_pairs`).
    Computed in float32. Differentiable w.r.t. q and k.
    """
    if q.ndim == 3 and q.shape[0] == 1 and k.ndim == 3 and k.shape[0] == 1:
        q, k = q[0], k[0]
    if q.ndim != 2 or q.shape != k.shape:
        raise InputError(f"Queries and keys must both have shape (N, D) or (1, N, D) (one video; take q[i] for "
                         f"the i-th of a batch); got {tuple(q.shape)} and {tuple(k.shape)}.")
    frames, h, w = (int(v) for v in grid)
    tokens, dim = q.shape
    if frames * h * w != tokens:
        raise InputError(f"The grid {frames}x{h}x{w} has {frames * h * w} patches but there are {tokens} tokens; "
                         f"pass the patch grid of the latent the queries came from (patch_grid).")
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or dim % heads:
        raise InputError(f"{heads!r} heads do not divide the query width {dim}; pass the transformer's "
                         f"num_attention_heads.")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise InputError(f"The temperature must be a positive number; got {temperature!r}.")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"The pair chunk must be a whole number >= 1; got {chunk!r}.")
    pairs = frame_pairs(frames, window)
    if not pairs:
        raise InputError(f"Attention flow needs at least 2 latent frames (5 video frames for Wan); got {frames}.")
    m, d = h * w, dim // heads
    per_frame = lambda x: x.float().reshape(frames, m, heads, d).transpose(1, 2)  # noqa: E731 (F', heads, M, d)
    qf, kf = per_frame(q), per_frame(k)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    positions = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1).to(qf.device)  # (M, 2) as (x, y)
    scale = 1.0 / (temperature * math.sqrt(d))
    keep_graph = torch.is_grad_enabled() and (qf.requires_grad or kf.requires_grad)
    flows = []
    for start in range(0, len(pairs), chunk):
        part = pairs[start:start + chunk]
        src = torch.tensor([f for f, _ in part], device=qf.device)
        dst = torch.tensor([g for _, g in part], device=qf.device)
        if keep_graph:  # keep only the chunk's inputs; its (heads, M, M) maps are recomputed in backward
            flows.append(recompute_in_backward(_pair_flows, qf[src], kf[dst], positions, scale, use_reentrant=False))
        else:
            flows.append(_pair_flows(qf[src], kf[dst], positions, scale))
    return torch.cat(flows), pairs


def amf_loss(flow: torch.Tensor, ref_flow: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two attention motion flows (same pairs, same grid).

    Args:
        flow, ref_flow: (P, h'w', 2) displacements in patch units (see `attention_flow`).
    Returns:
        0-d float32 tensor in patch² (mean over pairs, patches and the two components).
    """
    if flow.shape != ref_flow.shape:
        raise InputError(f"The flows differ in shape ({tuple(flow.shape)} vs {tuple(ref_flow.shape)}): compute "
                         f"both on the same frame pairs (window) and patch grid (frame count and size).")
    return (flow.float() - ref_flow.to(flow.device).float()).pow(2).mean()
