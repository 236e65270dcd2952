"""Applying motions to a shared model for the duration of one call.

`apply_motions(model, [(motion, strength), ...])` replaces the data of every touched UNet weight
by W + Σ strength_k · ΔW_k (computed in float32, stored in the weight's dtype) and, on exit,
puts the *original tensor objects* back: every weight is restored bit-exactly on every exit path
(return, exception, KeyboardInterrupt, a ComfyUI Cancel). Nothing else about the model changes:
no hooks, no module swaps, requires_grad and grads untouched. While the block runs the model is
patched for everyone who holds it, so callers sharing a model must not run other work on it
concurrently (ComfyUI runs one prompt at a time).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch

from ..errors import InputError
from ..models.interface import kind_of, model_ops
from .motion_file import Motion, MotionFileError

MAX_STRENGTH = 2.0

MotionList = Sequence["tuple[Motion, float] | Motion"]


def _unet(model) -> torch.nn.Module:
    """The denoiser of a dmt model (ZeroScope's UNet, Wan's transformer), or `model` itself."""
    if hasattr(model, "unet") or hasattr(model, "transformer"):
        return model_ops(model).denoiser(model)
    return model


def check_same_kind(model, motion: Motion) -> None:
    """MotionFileError naming both models when `motion` was trained on the other kind of model
    (files without a kind are ZeroScope's)."""
    if not (hasattr(model, "unet") or hasattr(model, "transformer")):
        return  # a bare denoiser: check_fits compares the shapes
    made, given = motion.base_kind, kind_of(model)
    if made != given:
        names = {"zeroscope": "ZeroScope", "wan": "Wan"}
        raise MotionFileError(
            f"This motion was trained on {names.get(made, made)} ('{motion.info.get('base_model_name', '')}'), but the "
            f"model is {names.get(given, given)}; a motion only works on the kind of model it was trained on. Load "
            f"{names.get(made, made)}, or train the motion again on {names.get(given, given)}.")


def check_strength(strength: float) -> float:
    """Return `strength` as a float, or raise InputError unless it is a number in [0, 2]."""
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise InputError(f"Motion strength must be a number in [0, {MAX_STRENGTH:g}]; got {strength!r}.") from None
    if not math.isfinite(s) or s < 0 or s > MAX_STRENGTH:
        raise InputError(
            f"Motion strength must lie in [0, {MAX_STRENGTH:g}] (1 = as trained, 0 = off); got {strength}."
        )
    return s


def normalize_motions(motions: "MotionList | Motion | None") -> list[tuple[Motion, float]]:
    """[(motion, strength), ...] from a Motion, a list of Motions (strength 1) or of pairs;
    every strength checked (InputError outside [0, 2])."""
    if motions is None:
        return []
    if isinstance(motions, Motion):
        motions = [motions]
    out = []
    for item in motions:
        motion, strength = (item, 1.0) if isinstance(item, Motion) else item
        if not isinstance(motion, Motion):
            raise InputError(f"Expected a Motion (from load_motion or training), got {type(motion).__name__}.")
        out.append((motion, check_strength(strength)))
    return out


def touched_parameters(motions: "MotionList | Motion | None") -> list[str]:
    """Names of the UNet parameters that `apply_motions` would patch (union over the motions,
    in first-seen order). The nodes use this to know which weights to back up or compare."""
    seen: dict[str, None] = {}
    for motion, _ in normalize_motions(motions):
        for name in motion.parameter_names():
            seen.setdefault(name, None)
    return list(seen)


@torch.no_grad()
def combined_deltas(unet: torch.nn.Module, motions: list[tuple[Motion, float]]) -> dict[str, torch.Tensor]:
    """Σ strength · ΔW per touched parameter, float32 on the parameter's device."""
    params = dict(unet.named_parameters())
    total: dict[str, torch.Tensor] = {}
    for motion, strength in motions:
        if strength == 0:
            continue
        for name in motion.parameter_names():
            p = params[name]
            d = motion.delta(name).to(p.device, torch.float32) * strength  # never in place: delta may alias the file's tensor
            total[name] = total[name].add_(d) if name in total else d
    return total


@contextlib.contextmanager
def apply_motions(model, motions: "MotionList | Motion | None") -> Iterator[list[str]]:
    """Patch the denoiser of `model` (a dmt.ZeroScope's UNet, a dmt.Wan's transformer, or a bare
    denoiser) with `motions` inside the block.

    Args:
        model: the shared model; restored bit-exactly on exit.
        motions: a Motion, or a list of Motions / (Motion, strength) pairs, strength in [0, 2].
            Two or more motions add their deltas, each scaled by its own strength.
    Yields:
        The names of the patched UNet parameters.
    Raises (before anything is changed):
        InputError for a strength outside [0, 2]; MotionFileError for a motion trained on the
        other kind of model or that does not fit the model's shapes.
    """
    unet = _unet(model)
    pairs = normalize_motions(motions)
    for motion, _ in pairs:
        check_same_kind(model, motion)
        motion.check_fits(unet)
    params = dict(unet.named_parameters())
    originals: dict[str, torch.Tensor] = {}
    try:
        with torch.inference_mode(False), torch.no_grad():
            deltas = combined_deltas(unet, pairs)
            for name, d in deltas.items():
                p = params[name]
                originals[name] = p.data
                p.data = (p.data.float() + d).to(p.dtype)
            del deltas
        yield list(originals)
    finally:
        with torch.inference_mode(False), torch.no_grad():
            for name, original in originals.items():
                params[name].data = original
