"""Motion files: the trained tensors of one customized motion, as safetensors + JSON metadata.

Tensors (float16 by default: a rank-32 LoRA of real ZeroScope is 26.3 M values, 50 MiB in fp16
instead of 100 MiB; float32 on request):
- lora: ``<module>.lora_A`` (r, in[, kt, kh, kw]) and ``<module>.lora_B`` (out, r[, 1, 1, 1]) for
  every adapted Linear/Conv3d; ΔW = alpha / r · B A (over the rank axis).
- full: ``<unet parameter name>`` = the trained delta of that parameter (same shape).
Metadata key ``"dmt"`` (JSON): format "dmt-motion", version, mode, token, rank, alpha, trained
layers, the shape of every touched UNet parameter, training settings (steps, lr, timesteps, size,
frames, seed, ...), the base model's kind ("zeroscope" or "wan"; absent in files written before Wan:
ZeroScope) and fingerprint, and the pack version that wrote it.

`save_motion` writes through a temporary file and a rename; `load_motion` refuses files that are
not ours, truncated or damaged, from a newer format; `Motion.check_fits(unet)` refuses a model of a
different shape, naming the first mismatches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import DMTError
from ..models.zeroscope import same_model
from ..io.dmt_header import read_dmt_header
from .atomic import atomic_path

FORMAT = "dmt-motion"
VERSION = 1


class MotionFileError(DMTError, ValueError):
    """A motion file cannot be read, is not a DMT motion, or does not fit the model."""


MotionFileError.__module__ = "dmt"


@dataclass
class Motion:
    """One trained motion (see the module docstring for the tensor names).

    tensors: name → float tensor (CPU unless loaded elsewhere).
    mode: "lora" or "full". token: the word that names the motion in prompts (e.g. "sks").
    rank, alpha: LoRA rank and alpha (None for full).
    param_shapes: every UNet parameter the motion changes → its shape.
    info: the rest of the metadata (training settings, fingerprint, version, ...).
    """

    tensors: dict[str, torch.Tensor]
    mode: str
    token: str
    rank: int | None = None
    alpha: float | None = None
    param_shapes: dict[str, list[int]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def base_kind(self) -> str:
        """The kind of model it was trained on: "zeroscope" or "wan" (files without one: ZeroScope)."""
        return str(self.info.get("base_model_kind", "zeroscope"))

    @property
    def base_fingerprint(self) -> str:
        return str(self.info.get("base_model_fingerprint", ""))

    def parameter_names(self) -> list[str]:
        """UNet parameters (state-dict names) this motion changes when applied."""
        return list(self.param_shapes)

    def delta(self, name: str) -> torch.Tensor:
        """ΔW of UNet parameter `name`, float32, at strength 1 (a new tensor)."""
        if self.mode == "full":
            return self.tensors[name].float().clone()
        module = name[: -len(".weight")]
        a = self.tensors[module + ".lora_A"].float()
        b = self.tensors[module + ".lora_B"].float()
        scale = float(self.alpha) / float(self.rank)
        # Σ_r B[o, r] · A[r, i, k...]  (peft's Linear and Conv merge, written once for both)
        return torch.einsum("or,r...->o...", b.flatten(1), a.to(b.device)).mul_(scale)

    def check_fits(self, unet: torch.nn.Module) -> None:
        """Raise MotionFileError unless every parameter this motion changes exists in `unet` with
        the recorded shape (a motion for another architecture cannot be applied)."""
        params = dict(unet.named_parameters())
        problems = []
        for name, shape in self.param_shapes.items():
            p = params.get(name)
            if p is None:
                problems.append(f"'{name}' is missing")
            elif list(p.shape) != list(shape):
                problems.append(f"'{name}' is {list(p.shape)} in the model but {list(shape)} in the motion")
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise MotionFileError(
                f"This motion was trained for a differently shaped model: {'; '.join(problems[:3])}{more}. "
                f"Use it with the model it was trained on ({self.info.get('base_model_name') or 'see its metadata'})."
            )

    def same_base(self, fingerprint: str) -> bool:
        """Whether `fingerprint` (ZeroScope.fingerprint) names the checkpoint this motion was trained on."""
        return same_model(self.base_fingerprint, fingerprint)

    def metadata(self) -> dict[str, Any]:
        """The JSON header written to the file."""
        return {**self.info, "format": FORMAT, "version": VERSION, "mode": self.mode, "token": self.token,
                "rank": self.rank, "alpha": self.alpha, "param_shapes": self.param_shapes}


def save_motion(path: str | Path, motion: Motion, dtype: torch.dtype | str = torch.float16) -> Path:
    """Write `motion` to `path` (.safetensors) through a temporary file and a rename: a failure or
    a cancel while writing leaves any previous file at `path` intact.

    dtype: storage dtype of the tensors (float16 default, float32 or bfloat16); `load_motion`
    returns them in that dtype and applying computes in float32. Returns the path."""
    from .. import __version__
    from ..models.zeroscope import resolve_dtype

    dtype = resolve_dtype(dtype)
    path = Path(path)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in motion.tensors.items()}
    header = motion.metadata()
    header["dtype"] = str(dtype).replace("torch.", "")
    header.setdefault("dmt_version", __version__)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"dmt": json.dumps(header, default=str)})
    return path


def read_motion_header(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a motion file without loading its tensors (for listings)."""
    return read_dmt_header(path, FORMAT, VERSION, MotionFileError, "motion file", "a DMT motion")


def load_motion(path: str | Path, device: str | torch.device = "cpu") -> Motion:
    """Read a motion file written by `save_motion`.

    Raises:
        MotionFileError: missing, not safetensors, truncated/damaged, not a DMT motion, newer
            format, or tensors that do not match the header.
    """
    path = Path(path)
    header = read_motion_header(path)
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise MotionFileError(f"'{path}' is truncated or damaged: {exc}") from exc
    mode = header.get("mode")
    shapes = {k: list(v) for k, v in dict(header.get("param_shapes", {})).items()}
    if mode == "full":
        expected = set(shapes)
    elif mode == "lora":
        expected = {n[: -len(".weight")] + s for n in shapes for s in (".lora_A", ".lora_B")}
    else:
        raise MotionFileError(f"'{path}' has an unknown mode '{mode}'.")
    if set(tensors) != expected:
        raise MotionFileError(f"'{path}' is damaged: its tensors do not match its header.")
    info = {k: v for k, v in header.items()
            if k not in ("format", "version", "mode", "token", "rank", "alpha", "param_shapes", "dtype")}
    return Motion(tensors=tensors, mode=mode, token=str(header.get("token", "")),
                  rank=header.get("rank"), alpha=header.get("alpha"), param_shapes=shapes, info=info)
