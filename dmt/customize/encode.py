"""Encoding the training clips once: VAE latents and text embeddings, cached on disk by content.

Training then needs neither the VAE nor the text encoder (they can stay on the CPU). A cache
entry is ``<cache_dir>/<key>.safetensors`` holding ``latents`` (1, 4, F, h, w) and ``text``
(1, 77, D), both float32; the key is the SHA-256 of the clip's pixels, its caption and the
encoders' identity (model fingerprint, a probe of the text encoder's weights, dtype), so a
changed clip, caption or model never reuses a stale entry. Entries are written through a
temporary file and a rename.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..models.interface import model_ops
from ..models.zeroscope import ZeroScope
from .atomic import atomic_path
from .examples import MotionExample

CACHE_VERSION = 1


@dataclass
class EncodedExample:
    """One training item: latents (1, 4, F, h, w) float32 (scaled by the VAE factor) and the
    caption's embedding text (1, 77, D) float32, both on the CPU (Wan: the normalised latent
    (1, 16, F', h, w) and (1, 512, D)); caption and source for logs."""

    latents: torch.Tensor
    text: torch.Tensor
    caption: str
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[2])


def encoder_identity(model: ZeroScope) -> str:
    """A string that changes whenever encoding the same input could give different numbers."""
    emb = model.text_encoder.get_input_embeddings().weight
    probe = emb.detach().flatten()[:8].float().cpu().tolist()
    return json.dumps([model.fingerprint, probe, str(model.dtype), CACHE_VERSION])


def content_key(*parts) -> str:
    """SHA-256 (hex, 32 chars) of strings, numbers and tensors (their float32 bytes and shape)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            t = p.detach().float().cpu().contiguous()
            h.update(str(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes())
        else:
            h.update(json.dumps(p, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def _read_entry(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        return None  # damaged entry: encode again (and overwrite it)
    return tensors if {"latents", "text"} <= set(tensors) else None


def _write_entry(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"dmt": json.dumps(meta, default=str)})


def encode_example(model: ZeroScope, example: MotionExample, cache_dir: str | Path | None = None,
                   vae_slice_size: int = 1) -> EncodedExample:
    """Latents and caption embedding of one example, read from / written to `cache_dir` when given."""
    key = content_key("example", example.frames, example.caption, encoder_identity(model))
    path = Path(cache_dir) / f"{key}.safetensors" if cache_dir is not None else None
    cached = _read_entry(path) if path is not None and path.is_file() else None
    if cached is None:
        ops = model_ops(model)
        latents = ops.encode_clip(model, example.frames, vae_slice_size)
        text = ops.encode_text(model, example.caption)
        cached = {"latents": latents, "text": text}
        if path is not None:
            _write_entry(path, cached, {"caption": example.caption, "source": example.source})
    return EncodedExample(latents=cached["latents"], text=cached["text"], caption=example.caption, source=example.source)


def encode_examples(
    model: ZeroScope,
    examples: list[MotionExample],
    cache_dir: str | Path | None = None,
    vae_slice_size: int = 1,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
) -> list[EncodedExample]:
    """Encode every example (on_step("encode", i, n, latents) after each; cancellable between clips)."""
    out = []
    for i, ex in enumerate(examples):
        checkpoint(check_interrupt)
        enc = encode_example(model, ex, cache_dir, vae_slice_size)
        out.append(enc)
        on_step("encode", i + 1, len(examples), enc.latents)
    return out


def encode_text_cached(model: ZeroScope, prompt: str, cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """(1, 77, D) float32 CPU embedding of `prompt`, memoised in `cache` (a plain dict)."""
    if cache is not None and prompt in cache:
        return cache[prompt]
    text = model_ops(model).encode_text(model, prompt)
    if cache is not None:
        cache[prompt] = text
    return text
