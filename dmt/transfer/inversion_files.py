"""Saving an inversion (and optionally its targets) as one safetensors file — never a pickle.

Tensors: "x0", "latent.<t>", "target.<t>.<activation path>". The settings travel as JSON in the
safetensors metadata under the key "dmt", so a file is checked against the model and the
settings before use. Wan inversions (dmt.FlowInversion) use the same format with "kind": "wan"
in the header and the tensors "x0", "noisiest", "sigmas", "trajectory"; a file of one model kind
given to the other is refused naming both (files without "kind" are ZeroScope's).

A file holds only what later stages read: x0 and the noisiest latent (the low-frequency init) and
the latents at the guided timesteps (target extraction): 22 latents of (1, 4, F, h, w) float32 at
the authors' defaults, 24.3 MB for 24 frames at 576x320 (files of earlier versions kept every
sampling timestep, 52 latents, 57.5 MB; they load unchanged: same format, more latents).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import DDIMScheduler
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import InputError, InversionMismatchError
from ..transfer.context import ContextOptions, check_same_schedule
from ..transfer.inversion import Inversion
from ..models.zeroscope import same_model
from ..transfer.schedule import Schedule, make_schedule
from ..transfer.targets import Targets
from ..transfer.amf_guidance import check_same_windows
from ..transfer.wan_transfer import FlowInversion

FORMAT = "dmt-inversion"
VERSION = 1


def saved_timesteps(
    inversion: Inversion, targets: Targets | None = None, guidance_window: Sequence[float] | None = None
) -> list[int]:
    """The timesteps whose latents save_inversion writes: the noisiest always; then the targets'
    guided timesteps and/or those of `guidance_window` (for the inversion's sampling steps); with
    neither, every latent the inversion holds. Only latents the inversion holds are listed."""
    if targets is None and guidance_window is None:
        wanted = set(inversion.latents)
    else:
        wanted = set(targets.schedule.guided) if targets is not None else set()
        if guidance_window is not None:
            scheduler = DDIMScheduler.from_config(inversion.scheduler_config)
            lo, hi = guidance_window
            wanted |= set(make_schedule(scheduler, inversion.num_sampling_steps, (lo, hi)).guided)
    wanted.add(inversion.noisiest_t)
    return sorted((t for t in wanted if t in inversion.latents), reverse=True)


def save_inversion(
    path: str | Path,
    inversion: Inversion,
    targets: Targets | None = None,
    *,
    guidance_window: Sequence[float] | None = None,
) -> Path:
    """Write `inversion` (and `targets`) to `path` (.safetensors). Returns the path.

    Latents written (see saved_timesteps): the noisiest, and the guided ones of `targets` and/or
    `guidance_window` (e.g. (0.6, 1.0)); with neither, every latent the inversion holds. The
    file is written under a temporary name and renamed, so `path` is never a partial file.
    Loading it gives results bit-identical to using `inversion` and `targets` directly.
    """
    if isinstance(inversion, FlowInversion):
        if targets is not None:
            raise InputError("Wan targets are not saved in inversion files (extracting them again takes a few "
                             "transformer passes); save the inversion alone.")
        return _save_flow_inversion(Path(path), inversion)
    path = Path(path)
    tensors = {"x0": inversion.x0.detach().float().cpu().contiguous()}
    for t in saved_timesteps(inversion, targets, guidance_window):
        tensors[f"latent.{t}"] = inversion.latents[t].detach().float().cpu().contiguous()
    header = {
        "format": FORMAT, "version": VERSION, "source_prompt": inversion.source_prompt,
        "noisiest_t": inversion.noisiest_t, "num_inversion_steps": inversion.num_inversion_steps,
        "num_sampling_steps": inversion.num_sampling_steps, "scheduler_config": inversion.scheduler_config,
        "model_fingerprint": inversion.model_fingerprint,
        # Temporal context windows (None: one pass); absent in files written before windows existed.
        "context": None if inversion.context is None else inversion.context.to_dict(),
    }
    if targets is not None:
        s = targets.schedule
        header["targets"] = {
            "timesteps": list(s.timesteps), "guided": list(s.guided), "num_steps": s.num_steps,
            "guidance_window": list(s.guidance_window), "feature_paths": list(targets.feature_paths),
            "model_fingerprint": targets.model_fingerprint,
            "context": None if targets.context is None else targets.context.to_dict(),
        }
        for t, feats in targets.smms.items():
            for name, v in feats.items():
                tensors[f"target.{t}.{name}"] = v.detach().float().cpu().contiguous()
    return _write(path, tensors, header)


def _write(path: Path, tensors: dict[str, torch.Tensor], header: dict) -> Path:
    """Write under a temporary name and rename, so `path` is never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"dmt": json.dumps(header, default=str)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _save_flow_inversion(path: Path, inversion: FlowInversion) -> Path:
    def cpu(t: torch.Tensor) -> torch.Tensor:
        return t.detach().float().cpu().contiguous()

    tensors = {"x0": cpu(inversion.x0)}
    for name in ("noisiest", "sigmas", "trajectory"):
        value = getattr(inversion, name)
        if value is not None:
            tensors[name] = cpu(value)
    header = {"format": FORMAT, "version": VERSION, "kind": FlowInversion.kind,
              "source_prompt": inversion.source_prompt, "model_fingerprint": inversion.model_fingerprint,
              "model_name": inversion.model_name,
              "context": None if inversion.context is None else inversion.context.to_dict()}
    return _write(path, tensors, header)


_KIND_NAMES = {"zeroscope": "ZeroScope", "wan": "Wan"}


def _stored_context(path: Path, header: dict) -> ContextOptions | None:
    """The file's context windows (None: one pass, or a file from before windows existed)."""
    try:
        return None if header.get("context") is None else ContextOptions.from_dict(header["context"])
    except (InputError, TypeError) as exc:
        raise InversionMismatchError(f"'{path}' holds unreadable context-window settings: {exc}") from None


def _load_flow_inversion(path: Path, header: dict, tensors: dict[str, torch.Tensor],
                         model_fingerprint: str | None) -> FlowInversion:
    if model_fingerprint and not same_model(header["model_fingerprint"], model_fingerprint):
        raise InversionMismatchError(
            f"Inversion file '{path}' was made with the Wan '{header.get('model_name', '')}' (fingerprint "
            f"{header['model_fingerprint']}), not with this one ({model_fingerprint}). Invert again.")
    return FlowInversion(x0=tensors["x0"], noisiest=tensors.get("noisiest"), sigmas=tensors.get("sigmas"),
                         source_prompt=header["source_prompt"], model_fingerprint=header["model_fingerprint"],
                         model_name=header.get("model_name", ""), trajectory=tensors.get("trajectory"),
                         context=_stored_context(path, header))


def load_inversion(
    path: str | Path,
    device: str | torch.device = "cpu",
    model_fingerprint: str | None = None,
    num_inversion_steps: int | None = None,
    num_sampling_steps: int | None = None,
    context: ContextOptions | None | str = "any",
    model_kind: str | None = None,
) -> tuple[Inversion | FlowInversion, Targets | None]:
    """Read a file written by save_inversion.

    The optional arguments are what the caller is about to use; a file that does not match them
    is refused with InversionMismatchError saying what differs. `context`: the temporal context
    windows the caller will use (None: one pass; "any": not checked); a file made with other
    windows is refused. `model_kind`: "zeroscope" or "wan", the model about to use it (None: not
    checked); a file of the other kind is refused naming both.
    Returns:
        (Inversion, Targets or None) on `device`; for a Wan file (FlowInversion, None).
    """
    path = Path(path)
    if not path.is_file():
        raise InversionMismatchError(f"Inversion file '{path}' not found.")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InversionMismatchError(f"'{path}' is not a readable safetensors inversion file: {exc}") from exc
    try:
        header = json.loads(meta["dmt"])
        assert header["format"] == FORMAT
    except (KeyError, ValueError, AssertionError, TypeError):
        raise InversionMismatchError(f"'{path}' is a safetensors file but not a DMT inversion.") from None
    if header["version"] > VERSION:
        raise InversionMismatchError(f"'{path}' was written by a newer DMT (format {header['version']}); update.")
    kind = header.get("kind", "zeroscope")
    if model_kind is not None and kind != model_kind:
        made, given = _KIND_NAMES.get(kind, kind), _KIND_NAMES.get(model_kind, model_kind)
        raise InversionMismatchError(f"Inversion file '{path}' was made with {made}, but the model is {given}; "
                                     f"invert the video with {given} (or load {made}).")
    if kind == FlowInversion.kind:
        inversion = _load_flow_inversion(path, header, tensors, model_fingerprint)
        if not (isinstance(context, str) and context == "any"):
            check_same_windows(inversion.context, context, inversion.num_frames, f"inversion in '{path}'")
        return inversion, None
    problems = []
    if model_fingerprint and not same_model(header["model_fingerprint"], model_fingerprint):
        problems.append("it was made with a different model")
    if num_inversion_steps is not None and header["num_inversion_steps"] != num_inversion_steps:
        problems.append(f"it has {header['num_inversion_steps']} inversion steps, not {num_inversion_steps}")
    if num_sampling_steps is not None and header["num_sampling_steps"] != num_sampling_steps:
        problems.append(f"it was made for {header['num_sampling_steps']} sampling steps, not {num_sampling_steps}")
    if problems:
        raise InversionMismatchError(f"Inversion file '{path}' does not fit: {'; '.join(problems)}. Invert again.")
    stored_context = _stored_context(path, header)
    latents = {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("latent.")}
    inversion = Inversion(
        x0=tensors["x0"], latents=latents, noisiest_t=int(header["noisiest_t"]),
        source_prompt=header["source_prompt"], num_inversion_steps=int(header["num_inversion_steps"]),
        num_sampling_steps=int(header["num_sampling_steps"]), scheduler_config=header["scheduler_config"],
        model_fingerprint=header["model_fingerprint"], context=stored_context,
    )
    if not (isinstance(context, str) and context == "any"):
        check_same_schedule(stored_context, context, inversion.num_frames, f"inversion in '{path}'")
    targets = None
    if "targets" in header:
        th = header["targets"]
        smms: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("target."):
                _, t, name = k.split(".", 2)
                smms.setdefault(int(t), {})[name] = v
        schedule = Schedule(tuple(th["timesteps"]), tuple(th["guided"]), int(th["num_steps"]),
                            tuple(th["guidance_window"]))
        targets = Targets(smms=smms, schedule=schedule, feature_paths=tuple(th["feature_paths"]),
                          num_frames=inversion.num_frames, model_fingerprint=th["model_fingerprint"],
                          context=stored_context, latent_shape=tuple(inversion.x0.shape))
    return inversion, targets
