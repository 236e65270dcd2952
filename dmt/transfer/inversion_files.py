"""Saving an inversion (and optionally its targets) as one safetensors file — never a pickle.

Tensors: "x0", "latent.<t>", "target.<t>.<activation path>". The settings travel as JSON in the
safetensors metadata under the key "dmt", so a file is checked against the model and the
settings before use.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import InversionMismatchError
from ..transfer.inversion import Inversion
from ..models.zeroscope import same_model
from ..transfer.schedule import Schedule
from ..transfer.targets import Targets

FORMAT = "dmt-inversion"
VERSION = 1


def save_inversion(path: str | Path, inversion: Inversion, targets: Targets | None = None) -> Path:
    """Write `inversion` (and `targets`) to `path` (.safetensors). Returns the path."""
    path = Path(path)
    tensors = {"x0": inversion.x0.detach().float().cpu().contiguous()}
    for t, lat in inversion.latents.items():
        tensors[f"latent.{t}"] = lat.detach().float().cpu().contiguous()
    header = {
        "format": FORMAT, "version": VERSION, "source_prompt": inversion.source_prompt,
        "noisiest_t": inversion.noisiest_t, "num_inversion_steps": inversion.num_inversion_steps,
        "num_sampling_steps": inversion.num_sampling_steps, "scheduler_config": inversion.scheduler_config,
        "model_fingerprint": inversion.model_fingerprint,
    }
    if targets is not None:
        s = targets.schedule
        header["targets"] = {
            "timesteps": list(s.timesteps), "guided": list(s.guided), "num_steps": s.num_steps,
            "guidance_window": list(s.guidance_window), "feature_paths": list(targets.feature_paths),
            "model_fingerprint": targets.model_fingerprint,
        }
        for t, feats in targets.smms.items():
            for name, v in feats.items():
                tensors[f"target.{t}.{name}"] = v.detach().float().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"dmt": json.dumps(header, default=str)})
    return path


def load_inversion(
    path: str | Path,
    device: str | torch.device = "cpu",
    model_fingerprint: str | None = None,
    num_inversion_steps: int | None = None,
    num_sampling_steps: int | None = None,
) -> tuple[Inversion, Targets | None]:
    """Read a file written by save_inversion.

    The optional arguments are what the caller is about to use; a file that does not match them
    is refused with InversionMismatchError saying what differs.
    Returns:
        (Inversion, Targets or None) on `device`.
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
    problems = []
    if model_fingerprint and not same_model(header["model_fingerprint"], model_fingerprint):
        problems.append("it was made with a different model")
    if num_inversion_steps is not None and header["num_inversion_steps"] != num_inversion_steps:
        problems.append(f"it has {header['num_inversion_steps']} inversion steps, not {num_inversion_steps}")
    if num_sampling_steps is not None and header["num_sampling_steps"] != num_sampling_steps:
        problems.append(f"it was made for {header['num_sampling_steps']} sampling steps, not {num_sampling_steps}")
    if problems:
        raise InversionMismatchError(f"Inversion file '{path}' does not fit: {'; '.join(problems)}. Invert again.")
    latents = {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("latent.")}
    inversion = Inversion(
        x0=tensors["x0"], latents=latents, noisiest_t=int(header["noisiest_t"]),
        source_prompt=header["source_prompt"], num_inversion_steps=int(header["num_inversion_steps"]),
        num_sampling_steps=int(header["num_sampling_steps"]), scheduler_config=header["scheduler_config"],
        model_fingerprint=header["model_fingerprint"],
    )
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
                          latent_shape=tuple(inversion.x0.shape))
    return inversion, targets
