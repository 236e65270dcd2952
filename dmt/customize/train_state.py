"""The resumable training state: one safetensors file (never a pickle).

Tensors: ``param.<name>`` (the trained fp32 tensors), ``opt.<i>.<key>`` (AdamW's per-parameter
state: step, exp_avg, exp_avg_sq), ``rng`` (the training generator's state, uint8).
Metadata ``"dmt"`` (JSON): format "dmt-train-state", the step reached, the keys of the settings
and of the data it belongs to, the optimiser's param_groups, the grad scaler's state.
Written through a temporary file and a rename: an interrupted write keeps the previous state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import InputError
from .atomic import atomic_path

FORMAT = "dmt-train-state"
VERSION = 1
STATE_FILE = "state.safetensors"  # the resumable state's name inside a training work folder


def state_path(work_dir: str | Path) -> Path:
    """WORK_DIR/state.safetensors: where train_motion keeps the resumable state."""
    return Path(work_dir) / STATE_FILE


def read_train_state_info(path: str | Path) -> dict[str, Any] | None:
    """The header of a state file without its tensors: dict(step, keys); None when there is no
    file. Raises InputError for a file that is not a readable training state."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})["dmt"])
        assert header["format"] == FORMAT
        return {"step": int(header["step"]), "keys": dict(header["keys"])}
    except (SafetensorError, OSError, ValueError, KeyError, AssertionError, TypeError) as exc:
        raise InputError(
            f"The training checkpoint '{path}' cannot be read ({exc}). Delete it to start again, or "
            f"train without resume."
        ) from exc


def save_train_state(
    path: str | Path,
    step: int,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    scaler: torch.amp.GradScaler | None,
    keys: dict[str, str],
) -> Path:
    """Write the state after `step` completed optimiser steps."""
    tensors = {f"param.{k}": v.detach().float().cpu().contiguous() for k, v in params.items()}
    sd = optimizer.state_dict()
    extra: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                extra.setdefault(str(idx), {})[key] = val
    tensors["rng"] = generator.get_state().cpu().contiguous()
    header = {"format": FORMAT, "version": VERSION, "step": int(step), "keys": keys,
              "param_order": list(params), "param_groups": sd["param_groups"], "opt_extra": extra,
              "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"dmt": json.dumps(header, default=float)})
    return path


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read a state file. Returns dict(step, keys, params, optimizer_state (for
    Optimizer.load_state_dict), rng, scaler). Raises InputError for an unreadable file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})["dmt"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        assert header["format"] == FORMAT
    except (SafetensorError, OSError, ValueError, KeyError, AssertionError, TypeError) as exc:
        raise InputError(
            f"The training checkpoint '{path}' cannot be read ({exc}). Delete it to start again, or "
            f"train without resume."
        ) from exc
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for idx, st in header["opt_extra"].items():
        state.setdefault(int(idx), {}).update(st)
    params = {k: tensors[f"param.{k}"] for k in header["param_order"]}
    groups = header["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"step": int(header["step"]), "keys": header["keys"], "params": params,
            "optimizer_state": {"state": state, "param_groups": groups}, "rng": tensors["rng"],
            "scaler": header.get("scaler")}
