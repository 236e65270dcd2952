"""Loading ZeroScope component by component (no deprecated pipeline class).

A model source is a local diffusers folder (``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``) or a Hugging Face hub repo id (default
``cerspense/zeroscope_v2_576w``). Safetensors are preferred; pickled ``.bin`` weights are only
ever loaded with ``weights_only=True`` (diffusers and transformers do so).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from ..errors import ModelLoadError
from .folders import identify_folder

DEFAULT_MODEL = "cerspense/zeroscope_v2_576w"
DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}

_WEIGHTS = {
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
             "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
            "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin"),
    "text_encoder": ("model.safetensors", "pytorch_model.bin", "model.fp16.safetensors",
                     "pytorch_model.fp16.bin"),
}
_CONFIGS = {
    "unet": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "tokenizer": ("vocab.json", "merges.txt"),
    "scheduler": ("scheduler_config.json",),
}
DOWNLOAD_PATTERNS = [f"{c}/*" for c in _CONFIGS] + ["model_index.json"]


@dataclass
class ZeroScope:
    """The five ZeroScope components, on one device, in one dtype.

    unet: UNet3DConditionModel, input (B, 4, F, H/8, W/8). vae: AutoencoderKL (SD 1.x latent
    space, `scaling_factor` 0.18215). text_encoder: CLIPTextModel → (B, 77, 1024).
    scheduler: DDIMScheduler (its config is data; the library never mutates it).
    name: the folder or repo id it came from. fingerprint: hash of the configs and a slice of the
    UNet weights, used to check that a saved inversion belongs to this model.
    """

    unet: UNet3DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDIMScheduler
    name: str = ""
    fingerprint: str = field(default="")
    #: which base model this is ("zeroscope" or "wan"); a class attribute, not a field
    kind: ClassVar[str] = "zeroscope"

    @property
    def device(self) -> torch.device:
        """The UNet's device: that of its first parameter (diffusers' `unet.device` without its
        walk over all submodules for group-offloading hooks, which dmt does not use)."""
        for p in self.unet.parameters():
            return p.device
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        """The UNet's dtype: that of its first floating-point parameter. The same answer as
        diffusers' `unet.dtype` for this UNet (no layer-wise casting, no fp32-kept modules),
        without its walk over all ~1,700 submodules (it is asked on every UNet call)."""
        for p in self.unet.parameters():
            if p.is_floating_point():
                return p.dtype
        return self.unet.dtype

    def to(self, device: str | torch.device) -> "ZeroScope":
        """Move every component to `device` (in place) and return self."""
        with torch.inference_mode(False):
            for module in (self.unet, self.vae, self.text_encoder):
                module.to(device)
        return self


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float16'/'fp16', 'bfloat16'/'bf16', 'float32'/'fp32' or a torch dtype → torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"Unknown dtype '{dtype}'; use one of float16, bfloat16, float32.") from None


def missing_files(folder: Path) -> list[str]:
    """Relative paths a complete ZeroScope diffusers folder needs but `folder` lacks."""
    return _missing(Path(folder), _CONFIGS, _WEIGHTS)


def _missing(folder: Path, configs: Mapping[str, Sequence[str]], weights: Mapping[str, Sequence[str]]) -> list[str]:
    """Relative paths `folder` lacks: every file of `configs`, and one of each `weights` tuple
    (named "sub/first (or second)"). A present sharded-weights index (*.index.json) also needs
    every shard it lists."""
    missing = []
    for sub, names in configs.items():
        for name in names:
            if not (folder / sub / name).is_file():
                missing.append(f"{sub}/{name}")
    for sub, names in weights.items():
        present = next((n for n in names if (folder / sub / n).is_file()), None)
        if present is None:
            missing.append(f"{sub}/{names[0]} (or {names[1]})")
        elif present.endswith(".index.json"):
            try:
                shards = sorted(set(json.loads((folder / sub / present).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                missing.append(f"{sub}/{present} (unreadable: {type(exc).__name__}; download it again)")
                continue
            missing += [f"{sub}/{s}" for s in shards if not (folder / sub / s).is_file()]
    return missing


_ZEROSCOPE_PARTS = tuple(_CONFIGS)


def _and_list(parts: Sequence[str]) -> str:
    """("unet", "vae", "scheduler") -> "unet/, vae/ and scheduler/"."""
    names = [f"{p}/" for p in parts]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def download_model(repo_id: str, folder: str | Path, patterns: Sequence[str] | None = None,
                   parts: Sequence[str] = _ZEROSCOPE_PARTS) -> Path:
    """Fetch the diffusers components of hub repo `repo_id` into `folder` (resumable).

    patterns: the hub files to fetch (default: ZeroScope's DOWNLOAD_PATTERNS); parts: the
    component folders the error message names (default: ZeroScope's).
    Raises ModelLoadError when the hub cannot be reached, naming the folder to fill by hand.
    """
    from huggingface_hub import snapshot_download

    folder = Path(folder)
    try:
        snapshot_download(repo_id, local_dir=str(folder),
                          allow_patterns=list(DOWNLOAD_PATTERNS if patterns is None else patterns))
    except Exception as exc:  # network, auth, missing repo: all end in the same advice
        raise ModelLoadError(
            f"Could not download '{repo_id}' into '{folder}': {type(exc).__name__}: {exc}. "
            f"Check the internet connection, or download the repo's {_and_list(parts)} folders from "
            f"https://huggingface.co/{repo_id} into '{folder}'."
        ) from exc
    return folder


def _resolve_source(source: str | Path, download_to: str | Path | None, *, label: str, default_repo: str,
                    patterns: Sequence[str], parts: Sequence[str]) -> Path:
    """The local folder of a model source: `source` itself when it exists, else a hub repo id
    fetched into `download_to` (or the hub cache). label: the model's name in messages
    ("ZeroScope"); parts: its component folders (the first two are named in messages)."""
    path = Path(source)
    if not path.exists():
        looks_like_repo = isinstance(source, str) and source.count("/") == 1 and not source.startswith((".", "/"))
        if not looks_like_repo:
            raise ModelLoadError(
                f"Model folder '{source}' does not exist. Give a {label} diffusers folder or the "
                f"hub repo id '{default_repo}'."
            )
        if download_to is not None:
            path = download_model(str(source), download_to, patterns, parts)
        else:
            from huggingface_hub import snapshot_download
            try:
                path = Path(snapshot_download(str(source), allow_patterns=list(patterns)))
            except Exception as exc:
                raise ModelLoadError(
                    f"Could not fetch '{source}' from the Hugging Face hub: {type(exc).__name__}: {exc}. "
                    f"Check the connection, or download it once into a folder and pass that folder."
                ) from exc
    if not path.is_dir():
        raise ModelLoadError(f"Model path '{path}' is a file; give the diffusers folder that holds "
                             f"{parts[0]}/, {parts[1]}/, ...")
    return path


def _fingerprint(unet: torch.nn.Module, vae: torch.nn.Module, scheduler: DDIMScheduler) -> str:
    """'<hash of the configs>:<the first 8 conv_in weights>' — the same for one checkpoint loaded
    in any dtype (compared with a tolerance by `same_model`), different for other weights."""
    return _fingerprint_of((unet.config, vae.config, scheduler.config), unet.conv_in.weight)


def _fingerprint_of(configs: Sequence[Mapping], probe_weight: torch.Tensor) -> str:
    """'<hash of `configs` (keys starting with "_" left out)>:<the first 8 values of `probe_weight`>'."""
    h = hashlib.sha256()
    for cfg in configs:
        h.update(json.dumps({k: v for k, v in dict(cfg).items() if not k.startswith("_")},
                            sort_keys=True, default=str).encode())
    probe = probe_weight.detach().flatten()[:8].float().cpu().tolist()
    return h.hexdigest()[:16] + ":" + ",".join(f"{v:.5g}" for v in probe)


def same_model(a: str, b: str) -> bool:
    """True when two fingerprints name the same architecture and checkpoint (dtype aside).
    An empty fingerprint (unknown origin) matches anything."""
    if not a or not b:
        return True
    (ha, _, va), (hb, _, vb) = a.partition(":"), b.partition(":")
    if ha != hb:
        return False
    try:
        xa, xb = torch.tensor([float(v) for v in va.split(",")]), torch.tensor([float(v) for v in vb.split(",")])
    except ValueError:
        return va == vb
    return xa.shape == xb.shape and torch.allclose(xa, xb, rtol=1e-2, atol=1e-4)


def load_zeroscope(
    source: str | Path = DEFAULT_MODEL,
    dtype: str | torch.dtype = "float16",
    device: str | torch.device = "cpu",
    download_to: str | Path | None = None,
) -> ZeroScope:
    """Load ZeroScope from a diffusers folder or a hub repo id.

    Args:
        source: a local folder, or a hub repo id ("owner/name"). A repo id is downloaded into
            `download_to` (when given) and loaded from there, otherwise fetched into the hub cache.
        dtype: weights dtype: float16 (authors' choice), bfloat16 or float32.
        device: torch device for all components.
        download_to: folder that receives a hub download (ComfyUI: models/diffusers/<name>).
    Returns:
        ZeroScope with every module in eval mode. Weights are created outside inference mode so
        that the guided step can back-propagate through them even when called from ComfyUI.
    Raises:
        ModelLoadError: missing/incomplete folder (lists what is missing), a Wan folder, or an
            unreachable hub.
    """
    torch_dtype = resolve_dtype(dtype)
    path = _resolve_source(source, download_to, label="ZeroScope", default_repo=DEFAULT_MODEL,
                           patterns=DOWNLOAD_PATTERNS, parts=_ZEROSCOPE_PARTS)
    info = identify_folder(path)
    if info.kind == "wan":
        raise ModelLoadError(
            f"Model folder '{path}' holds a Wan model ({info.description}), not ZeroScope. Load it "
            f"with the Wan loader (dmt.load_wan), or give a ZeroScope diffusers folder (unet/, vae/, "
            f"text_encoder/, tokenizer/, scheduler/) such as '{DEFAULT_MODEL}'."
        )
    missing = missing_files(path)
    if missing:
        raise ModelLoadError(
            f"Model folder '{path}' is incomplete; missing: {', '.join(missing)}. Download "
            f"'{DEFAULT_MODEL}' (its unet/, vae/, text_encoder/, tokenizer/, scheduler/ folders) into it."
        )
    # Without accelerate diffusers falls back to full-memory loading anyway; say so to skip its warning.
    low_mem = {} if importlib.util.find_spec("accelerate") else {"low_cpu_mem_usage": False}
    try:
        with torch.inference_mode(False):
            unet = UNet3DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=torch_dtype, **low_mem)
            vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=torch_dtype, **low_mem)
            text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", torch_dtype=torch_dtype)
            tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
            scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler")
            for module in (unet, vae, text_encoder):
                module.eval()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"Could not load the model in '{path}': {exc}") from exc
    model = ZeroScope(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                      scheduler=scheduler, name=str(source))
    model.to(device)
    model.fingerprint = _fingerprint(unet, vae, scheduler)
    return model
