"""Positional offsets on Wan's rotary embedding: DiTFlow's "optimise the positional embeddings"
mode on a transformer whose positions are rotary, and the file that makes them reusable.

DiTFlow (CVPR 2025) can optimise the positional embeddings instead of the latent during the
guided steps; the optimised embeddings then carry the reference's motion and can be reused with
other prompts without any optimisation (its zero-shot mode). Wan 2.1 has no additive positional
embedding: every self-attention rotates queries and keys by angles θ(f, y, x) of the token's
position (diffusers' WanRotaryPosEmbed, output (cos θ, sin θ) of shape (1, N, 1, head_dim), each
angle repeated for the two channels of its rotation pair). The positional parameter here is an
angle offset δ per token and rotation pair, added to θ:

    cos(θ + δ) = cos θ · cos δ − sin θ · sin δ,   sin(θ + δ) = sin θ · cos δ + cos θ · sin δ,

installed by a forward hook on `transformer.rope` (no module swapped, nothing patched), shared
by every block, as DiTFlow's embedding is. δ = 0 is the model unchanged (bit for bit: the hook
returns the rope's own tensors).

File ("dmt-positions", safetensors): tensor "delta" (N, head_dim / 2) float32; metadata "dmt"
(JSON) with the patch grid (F', h', w'), head_dim, the base model's kind, fingerprint and name,
the source prompt and the settings that made it. A file is refused by a model of another kind or
shape, or for a video of another grid, naming what differs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import InputError, InversionMismatchError
from ..io.dmt_header import read_dmt_header
from ..models.zeroscope import same_model

FORMAT = "dmt-positions"
VERSION = 1


def rope_shape(transformer: torch.nn.Module, grid: tuple[int, int, int]) -> tuple[int, int]:
    """(N, head_dim / 2): the offset shape for a patch grid (F', h', w') on `transformer`."""
    head_dim = int(transformer.config.attention_head_dim)
    return int(grid[0] * grid[1] * grid[2]), head_dim // 2


@contextlib.contextmanager
def rope_offset(transformer: torch.nn.Module, delta: torch.Tensor | None) -> Iterator[None]:
    """Inside the block every forward of `transformer` rotates by θ + δ instead of θ.

    delta: (N, head_dim / 2) float32 (gradients flow to it when it requires them), or None (no
        hook). N must be the token count of the latents the transformer sees (else InputError
        from the forward, naming both).
    The hook is removed on every exit path.
    """
    if delta is None:
        yield
        return

    def hook(_module, _args, output):
        cos, sin = output
        if cos.shape[1] != delta.shape[0] or cos.shape[-1] != 2 * delta.shape[1]:
            raise InputError(f"The positional offsets are for {delta.shape[0]} tokens of {2 * delta.shape[1]} "
                             f"channels; this video has {cos.shape[1]} tokens of {cos.shape[-1]}. Use offsets made "
                             f"for the same frame count and size.")
        d = delta.to(cos.device, torch.float32).repeat_interleave(2, dim=-1).view(1, cos.shape[1], 1, cos.shape[-1])
        c, s = cos.float(), sin.float()
        cd, sd = torch.cos(d), torch.sin(d)
        return (c * cd - s * sd).to(cos.dtype), (s * cd + c * sd).to(sin.dtype)

    handle = transformer.rope.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@dataclass
class PositionMotion:
    """A reference video's motion as rotary-position offsets (see the module docstring).

    delta: (N, head_dim / 2) float32 on the CPU. grid: (F', h', w') patch grid it was made for.
    info: metadata (base_model_kind "wan", base_model_fingerprint, base_model_name, head_dim,
        source_prompt, settings).
    """

    delta: torch.Tensor
    grid: tuple[int, int, int]
    info: dict[str, Any] = field(default_factory=dict)

    def check_fits(self, model: Any, grid: tuple[int, int, int] | None = None) -> None:
        """InputError / InversionMismatchError unless `model` is a Wan of the same shape (and
        `grid`, when given, the grid these offsets were made for), naming what differs."""
        kind = getattr(model, "kind", "zeroscope")
        if kind != "wan":
            raise InversionMismatchError("Positional offsets are made with Wan (its rotary positions); the model is "
                                         "ZeroScope, which has none. Load Wan for them.")
        head_dim = int(model.transformer.config.attention_head_dim)
        if int(self.info.get("head_dim", head_dim)) != head_dim:
            raise InversionMismatchError(f"These positional offsets were made for a Wan with head_dim "
                                         f"{self.info.get('head_dim')}; this one has {head_dim} "
                                         f"('{self.info.get('base_model_name', '')}' made them).")
        if grid is not None and tuple(grid) != tuple(self.grid):
            raise InputError(f"These positional offsets were made for a patch grid {tuple(self.grid)} (latent frames "
                             f"x height x width / 2); this video's is {tuple(grid)}. Use the same frame count and size "
                             f"as the reference.")

    def same_base(self, fingerprint: str) -> bool:
        return same_model(str(self.info.get("base_model_fingerprint", "")), fingerprint)


def save_positions(path: str | Path, motion: PositionMotion) -> Path:
    """Write `motion` to `path` (.safetensors) through a temporary name and a rename."""
    from ..customize.atomic import atomic_path

    path = Path(path)
    header = {**motion.info, "format": FORMAT, "version": VERSION, "grid": list(motion.grid)}
    with atomic_path(path) as tmp:
        save_file({"delta": motion.delta.detach().float().cpu().contiguous()}, str(tmp),
                  metadata={"dmt": json.dumps(header, default=str)})
    return path


def load_positions(path: str | Path) -> PositionMotion:
    """Read a file written by save_positions (InversionMismatchError for anything else)."""
    header = read_dmt_header(path, FORMAT, VERSION, InversionMismatchError, "positions file",
                             "DMT positional offsets")
    try:
        with safe_open(str(path), framework="pt") as f:
            delta = f.get_tensor("delta")
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise InversionMismatchError(f"'{path}' is damaged: {exc}") from None
    grid = tuple(int(v) for v in header.pop("grid"))
    info = {k: v for k, v in header.items() if k not in ("format", "version")}
    return PositionMotion(delta=delta.float(), grid=grid, info=info)  # type: ignore[arg-type]


__all__ = ["PositionMotion", "rope_offset", "rope_shape", "save_positions", "load_positions", "position_motion"]


def position_motion(model: Any, delta: torch.Tensor, latent_shape: tuple[int, ...], source_prompt: str = "",
                    settings: dict | None = None) -> PositionMotion:
    """A PositionMotion of offsets `delta` optimised on `model` for latents of `latent_shape`
    (1, 16, F', h, w), with the metadata a later user needs (kind, fingerprint, head_dim, grid)."""
    from .attention_flow import patch_grid

    grid = patch_grid(latent_shape, model.patch_size)
    info = {"base_model_kind": "wan", "base_model_fingerprint": model.fingerprint, "base_model_name": model.name,
            "head_dim": int(model.transformer.config.attention_head_dim), "source_prompt": source_prompt,
            "settings": settings or {}}
    return PositionMotion(delta=delta.detach().float().cpu(), grid=grid, info=info)
