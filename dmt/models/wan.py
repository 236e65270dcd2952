"""Loading Wan 2.1 text-to-video (Wan2.1-T2V-1.3B) component by component, with the ZeroScope
loader's contract (dtype, device, fingerprint, messages for missing files and wrong folders).

A model source is a local diffusers folder (``transformer/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``) or a Hugging Face hub repo id (default
``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``, Apache-2.0). Safetensors are preferred; pickled ``.bin``
weights are only loaded with ``weights_only=True`` (diffusers and transformers do so).

Shapes: frames (F, H, W, 3) in [0, 1] → latent (B, 16, (F - 1)/4 + 1, H/8, W/8): the VAE keeps the
first frame and compresses each following 4 frames into one latent frame, so F must be 4k + 1; the
transformer cuts the latent into 1×2×2 patches, so H and W must be multiples of 16.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler,
                       WanTransformer3DModel)
from transformers import AutoTokenizer, PreTrainedTokenizerBase, UMT5EncoderModel

from ..errors import InputError, ModelLoadError
from .folders import identify_folder
from .zeroscope import _fingerprint_of, _missing, _resolve_source, download_model, resolve_dtype

DEFAULT_WAN_MODEL = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
WAN_LICENCE = "Apache-2.0"

_WAN_PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
_CONFIGS = {
    "transformer": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "tokenizer": ("tokenizer_config.json",),
    "scheduler": ("scheduler_config.json",),
}
_WEIGHTS = {
    "transformer": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                    "diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "text_encoder": ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                     "pytorch_model.bin.index.json"),
    "tokenizer": ("tokenizer.json", "spiece.model"),
}
WAN_DOWNLOAD_PATTERNS = [f"{p}/*" for p in _WAN_PARTS] + ["model_index.json"]
#: scheduler classes a Wan folder may name (flow matching); the hub repo's is UniPC with flow sigmas
_SCHEDULERS = {"UniPCMultistepScheduler": UniPCMultistepScheduler,
               "FlowMatchEulerDiscreteScheduler": FlowMatchEulerDiscreteScheduler}
#: the VAE's time and space compression and the transformer's spatial patch (Wan 2.1)
TEMPORAL_FACTOR, SPATIAL_FACTOR, PATCH = 4, 8, 2
_EXPECTED = (f"a Wan2.1 text-to-video diffusers folder (transformer/, vae/, text_encoder/, tokenizer/, "
             f"scheduler/) such as the hub repo '{DEFAULT_WAN_MODEL}'")


@dataclass
class Wan:
    """The five Wan 2.1 text-to-video components; transformer and text encoder in one dtype.

    transformer: WanTransformer3DModel: latent (B, 16, F', H/8, W/8) + timestep (B,) in [0, 1000]
        + text embeddings (B, L, text_dim) → velocity (B, 16, F', H/8, W/8).
    vae: AutoencoderKLWan: video (B, 3, F, H, W) in [-1, 1], F = 4k + 1 → latent
        (B, 16, k + 1, H/8, W/8); normalise with its config's latents_mean / latents_std.
    text_encoder: UMT5EncoderModel → (B, L, 4096) (32 for the tiny random model).
    tokenizer: the T5 tokenizer (pad 0, eos 1). scheduler: flow matching (UniPC with flow sigmas
        for the hub repo; its config is data, the library never mutates it).
    name: the folder or repo id it came from. fingerprint: hash of the configs and a slice of the
        patch-embedding weights, used to check that saved data belongs to this model.
    """

    transformer: WanTransformer3DModel
    vae: AutoencoderKLWan
    text_encoder: UMT5EncoderModel
    tokenizer: PreTrainedTokenizerBase
    scheduler: UniPCMultistepScheduler | FlowMatchEulerDiscreteScheduler
    name: str = ""
    fingerprint: str = field(default="")
    #: which base model this is ("zeroscope" or "wan"); a class attribute, not a field
    kind: ClassVar[str] = "wan"

    @property
    def device(self) -> torch.device:
        """The transformer's device (that of its patch embedding)."""
        return self.transformer.patch_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The transformer's compute dtype: that of its patch embedding. (diffusers keeps a few
        small modules of the Wan transformer in float32 whatever the dtype: norms, the time
        embedder, the modulation tables.)"""
        return self.transformer.patch_embedding.weight.dtype

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """The transformer's (time, height, width) patch in latent cells: (1, 2, 2) for Wan 2.1."""
        return tuple(self.transformer.config.patch_size)  # type: ignore[return-value]

    def to(self, device: str | torch.device) -> "Wan":
        """Move every component to `device` (in place) and return self."""
        with torch.inference_mode(False):
            for module in (self.transformer, self.vae, self.text_encoder):
                module.to(device)
        return self

    def latent_shape(self, num_frames: int, height: int, width: int, batch_size: int = 1) -> tuple[int, ...]:
        """(B, C, F', h, w) of the latent of `num_frames` frames of height × width pixels, after
        checking them (InputError naming the nearest valid values)."""
        check_wan_frames(num_frames)
        check_wan_size(width, height, self.patch_size)
        cfg = self.vae.config
        t, s = int(cfg.scale_factor_temporal or TEMPORAL_FACTOR), int(cfg.scale_factor_spatial or SPATIAL_FACTOR)
        return (batch_size, int(cfg.z_dim), (num_frames - 1) // t + 1, height // s, width // s)


def wan_frame_counts(num_frames: int) -> tuple[int, int]:
    """The valid frame counts (4k + 1) just below and just above `num_frames` (equal when valid).
    The lower one is at least 1."""
    if num_frames < 1:
        return 1, 1
    lower = TEMPORAL_FACTOR * ((num_frames - 1) // TEMPORAL_FACTOR) + 1
    return (lower, lower) if lower == num_frames else (lower, lower + TEMPORAL_FACTOR)


def check_wan_frames(num_frames: int) -> int:
    """Return `num_frames` when Wan's VAE can take it (4k + 1: 1, 5, 9, ..., 33, ..., 81).

    Raises InputError otherwise, naming the nearest valid counts.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int):
        raise InputError(f"The frame count must be a whole number, not {num_frames!r}.")
    if num_frames < 1:
        raise InputError(f"The frame count is {num_frames}; Wan needs at least 1 frame (4k + 1: 1, 5, 9, ..., 81).")
    lower, upper = wan_frame_counts(num_frames)
    if lower != upper:
        raise InputError(
            f"Wan's VAE needs 4k + 1 frames (1, 5, 9, ..., 33, ..., 81: the first frame, then groups of 4); "
            f"{num_frames} frames cannot be encoded. Use {lower} or {upper} frames (trim or extend the clip).")
    return num_frames


def _patch_hw(patch: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(patch, int):
        return patch, patch
    p = tuple(int(v) for v in patch)
    return (p[-2], p[-1]) if len(p) >= 2 else (p[0], p[0])


def wan_size_multiples(patch: int | Sequence[int] = PATCH) -> tuple[int, int]:
    """(width, height) multiples a Wan frame needs: the VAE's 8 times the transformer's patch."""
    ph, pw = _patch_hw(patch)
    return SPATIAL_FACTOR * pw, SPATIAL_FACTOR * ph


def check_wan_size(width: int, height: int, patch: int | Sequence[int] = PATCH) -> tuple[int, int]:
    """Return (width, height) when both are multiples of 8 × patch (16 for Wan 2.1's 2×2 patch).

    patch: the spatial patch size (an int, or the transformer's (t, h, w) patch_size).
    Raises InputError otherwise, naming the nearest valid sizes (below, above, and the nearest).
    """
    mw, mh = wan_size_multiples(patch)
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"The {name} must be a positive whole number of pixels, not {v!r}.")
    if width % mw == 0 and height % mh == 0:
        return width, height

    def around(v: int, m: int) -> tuple[int, int, int]:
        lo = max(m, v // m * m)
        hi = lo if lo >= v else lo + m
        near = lo if v - lo <= hi - v else hi
        return lo, hi, near

    (wl, wh, wn), (hl, hh, hn) = around(width, mw), around(height, mh)
    options = []
    for w, h in ((wn, hn), (wl, hl), (wh, hh)):
        if f"{w}x{h}" not in options:
            options.append(f"{w}x{h}")
    what = f"multiples of {mw}" if mw == mh else f"a width multiple of {mw} and a height multiple of {mh}"
    raise InputError(
        f"Wan needs frame sizes that are {what} (the VAE's 8x8 pixels times the transformer's "
        f"{mw // SPATIAL_FACTOR}x{mh // SPATIAL_FACTOR} patch); {width}x{height} is not. "
        f"Nearest valid sizes (width x height): {', '.join(options)}.")


def wan_missing_files(folder: str | Path) -> list[str]:
    """Relative paths a complete Wan diffusers folder needs but `folder` lacks (shards of a
    sharded checkpoint included)."""
    return _missing(Path(folder), _CONFIGS, _WEIGHTS)


def download_wan(repo_id: str, folder: str | Path) -> Path:
    """Fetch the diffusers components of Wan hub repo `repo_id` into `folder` (resumable; tens of
    GB for the 1.3B repo, most of it the UMT5-XXL text encoder)."""
    return download_model(repo_id, folder, WAN_DOWNLOAD_PATTERNS, _WAN_PARTS)


def _check_wan_folder(path: Path) -> None:
    info = identify_folder(path)
    if info.kind == "zeroscope":
        raise ModelLoadError(
            f"Model folder '{path}' holds ZeroScope (a unet/ folder), not Wan. Load it with the ZeroScope "
            f"loader (dmt.load_zeroscope), or give {_EXPECTED}.")
    if info.kind == "wan" and not info.supported:
        raise ModelLoadError(
            f"Model folder '{path}' holds {info.description}, which dmt does not run. It needs the "
            f"text-to-video Wan2.1-T2V-1.3B: {_EXPECTED}.")
    if info.kind == "other":
        raise ModelLoadError(
            f"Model folder '{path}' is {info.description} (named in its model_index.json), not Wan. "
            f"Give {_EXPECTED}.")


def _load_scheduler(path: Path):
    cfg_path = path / "scheduler" / "scheduler_config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not read '{cfg_path}': {exc}. Download the scheduler/ folder of "
                             f"'{DEFAULT_WAN_MODEL}' again.") from exc
    name = cfg.get("_class_name", "")
    cls = _SCHEDULERS.get(name)
    flow = cls is FlowMatchEulerDiscreteScheduler or cfg.get("prediction_type") == "flow_prediction"
    if cls is None or not flow:
        raise ModelLoadError(
            f"'{cfg_path}' names {name or 'no scheduler class'}"
            f"{'' if cls is None else ' without prediction_type flow_prediction'}; Wan is a flow-matching "
            f"model and needs UniPCMultistepScheduler with flow_prediction and use_flow_sigmas (as in "
            f"'{DEFAULT_WAN_MODEL}') or FlowMatchEulerDiscreteScheduler. Copy the hub repo's scheduler/ folder.")
    return cls.from_pretrained(path, subfolder="scheduler")


def load_wan(
    source: str | Path = DEFAULT_WAN_MODEL,
    dtype: str | torch.dtype = "bfloat16",
    device: str | torch.device = "cpu",
    download_to: str | Path | None = None,
    vae_dtype: str | torch.dtype | None = None,
) -> Wan:
    """Load Wan2.1-T2V from a diffusers folder or a hub repo id.

    Args:
        source: a local folder, or a hub repo id ("owner/name"). A repo id is downloaded into
            `download_to` (when given) and loaded from there, otherwise fetched into the hub cache.
        dtype: dtype of the transformer and the text encoder: bfloat16 (Wan's own choice),
            float16 or float32.
        device: torch device for all components.
        download_to: folder that receives a hub download (ComfyUI: models/diffusers/<name>).
        vae_dtype: dtype of the VAE (default: `dtype`; diffusers recommends float32 for the best
            decoding, at ~0.5 GB for the 1.3B model's VAE).
    Returns:
        Wan with every module in eval mode. Weights are created outside inference mode so that
        guidance can back-propagate through them even when called from ComfyUI.
    Raises:
        ModelLoadError: missing/incomplete folder (lists what is missing), a folder of another model
            (ZeroScope) or variant (I2V, 14B, Wan 2.2, VACE), a non-flow-matching scheduler, or an
            unreachable hub.
    """
    torch_dtype = resolve_dtype(dtype)
    vae_torch_dtype = torch_dtype if vae_dtype is None else resolve_dtype(vae_dtype)
    path = _resolve_source(source, download_to, label="Wan2.1-T2V", default_repo=DEFAULT_WAN_MODEL,
                           patterns=WAN_DOWNLOAD_PATTERNS, parts=_WAN_PARTS)
    _check_wan_folder(path)
    missing = wan_missing_files(path)
    if missing:
        raise ModelLoadError(
            f"Model folder '{path}' is incomplete; missing: {', '.join(missing)}. Download "
            f"'{DEFAULT_WAN_MODEL}' (its transformer/, vae/, text_encoder/, tokenizer/, scheduler/ folders) "
            f"into it.")
    low_mem = {} if importlib.util.find_spec("accelerate") else {"low_cpu_mem_usage": False}
    try:
        scheduler = _load_scheduler(path)
        with torch.inference_mode(False):
            transformer = WanTransformer3DModel.from_pretrained(path, subfolder="transformer",
                                                                torch_dtype=torch_dtype, **low_mem)
            vae = AutoencoderKLWan.from_pretrained(path, subfolder="vae", torch_dtype=vae_torch_dtype, **low_mem)
            text_encoder = UMT5EncoderModel.from_pretrained(path, subfolder="text_encoder", dtype=torch_dtype)
            tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
            for module in (transformer, vae, text_encoder):
                module.eval()
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"Could not load the Wan model in '{path}': {exc}") from exc
    model = Wan(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                scheduler=scheduler, name=str(source))
    model.to(device)
    model.fingerprint = _fingerprint_of((transformer.config, vae.config, scheduler.config),
                                        transformer.patch_embedding.weight)
    return model


__all__ = ["DEFAULT_WAN_MODEL", "WAN_LICENCE", "Wan", "load_wan", "check_wan_frames", "check_wan_size",
           "wan_frame_counts", "wan_size_multiples", "wan_missing_files", "download_wan"]
