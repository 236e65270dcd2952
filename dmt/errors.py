"""Exceptions with messages that tell the user what to do."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class DMTError(Exception):
    """Base class of every error the dmt library raises on purpose."""


class ModelLoadError(DMTError):
    """A model folder is missing or incomplete, or the hub cannot be reached."""


class InputError(DMTError, ValueError):
    """A user input (video, size, prompt, setting) cannot be used."""


class InversionMismatchError(DMTError, ValueError):
    """A saved inversion does not fit the model or the settings it is used with."""


class Interrupted(DMTError):
    """The run was cancelled through `check_interrupt`."""


class DMTOutOfMemoryError(DMTError, MemoryError):
    """The device ran out of memory; the message says what to lower."""


for _cls in (DMTError, ModelLoadError, InputError, InversionMismatchError, Interrupted, DMTOutOfMemoryError):
    _cls.__module__ = "dmt"  # ComfyUI shows the qualified name: 'dmt.InputError', not a file path

OOM_ADVICE = (
    "Lower the memory use: fewer frames (e.g. 16 instead of 24), a smaller size (e.g. 448x256; both "
    "multiples of 8), dtype float16, or the low-memory mode; close other programs using the GPU."
)


@contextlib.contextmanager
def explain_out_of_memory(stage: str) -> Iterator[None]:
    """Re-raise device out-of-memory errors as DMTOutOfMemoryError naming `stage` and what to lower.

    Frees the CUDA cache on the way out so the next run starts clean.
    """
    try:
        yield
    except torch.OutOfMemoryError as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise DMTOutOfMemoryError(f"Out of memory during {stage}. {OOM_ADVICE}") from exc
