"""Motions carried by a DMT_MODEL without touching the loader's cached model.

'Apply Motion (DMT)' returns a shallow copy of the model (the same unet, vae, text encoder
objects) that also lists the motions to apply and their strengths. Nodes that run the model wrap
their work in `applied_motions(model)`, which patches the shared UNet with
dmt.customize.apply_motions for the duration of the call and restores every weight bit-exactly
afterwards (also on error or Cancel). No maths here.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

from ..dmt import customize
from ..dmt.customize.apply import check_same_kind
from ..dmt.models.interface import model_ops

MOTIONS_ATTR = "dmt_motions"


def motions_of(model) -> list[tuple[customize.Motion, float]]:
    """The (motion, strength) pairs a model from 'Apply Motion (DMT)' carries ([] for a plain model)."""
    return list(getattr(model, MOTIONS_ATTR, ()) or ())


def with_motion(model, motion: customize.Motion, strength: float):
    """A shallow copy of `model` carrying its motions plus (motion, strength); `model` itself is
    unchanged. Raises InputError for a strength outside [0, 2] and MotionFileError for a motion
    trained on the other kind of model or a differently shaped one (both before any work)."""
    strength = customize.check_strength(strength)
    if not isinstance(motion, customize.Motion):
        raise customize.MotionFileError("The motion input is not a DMT motion (use 'Load Motion (DMT)' or 'Train Motion (DMT)').")
    check_same_kind(model, motion)
    motion.check_fits(model_ops(model).denoiser(model))
    patched = copy.copy(model)
    setattr(patched, MOTIONS_ATTR, (*motions_of(model), (motion, strength)))
    return patched


@contextlib.contextmanager
def applied_motions(model) -> Iterator[None]:
    """Patch the shared UNet with the model's motions inside the block (nothing when it has none)."""
    motions = motions_of(model)
    if not motions:
        yield
        return
    with customize.apply_motions(model, motions):
        yield
