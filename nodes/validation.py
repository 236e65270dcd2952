"""Checks at the node boundary, before any heavy work, with messages in the user's terms: which
widget of which node to change, and to what. The library checks the same things in its own terms
(dmt.InputError); these name the widgets. Widget ranges and defaults come from the library's
setting tables (dmt.settings), so a node never has a range of its own. No maths here beyond
counting."""

from __future__ import annotations

import logging
import math

import torch

from .. import dmt
from ..dmt.models.text import AUTHORS_PROMPT_PREFIX, count_prompt_tokens, with_prefix
from ..dmt.settings import Setting
from ..dmt.transfer.noise_init import DEFAULT_DOWNSAMPLE_FACTOR, max_downsample_factor

log = logging.getLogger("dmt")


def widget_range(setting: Setting, index: int | None = None, with_special: bool = True, **override) -> dict:
    """default/min/max (and step 8 for sizes) of a number widget, from the library's `setting`.
    index: one half of a pair setting. with_special: the widget also offers the setting's special
    values (0 = all frames). `override`: widget keywords that the node sets itself (a default
    where the library's is "not given", for example)."""
    default = setting.default if index is None else setting.default[index]
    low = setting.min
    if with_special and setting.special:
        low = min([low, *(v for v, _ in setting.special)])
    out = {"default": default, "min": low, "max": setting.max}
    if setting.multiple_of:
        out["step"] = setting.multiple_of
    out.update(override)
    return {k: v for k, v in out.items() if v is not None}


def check_setting(node: str, widget: str, setting: Setting, value, index: int | None = None) -> None:
    """Refuse a widget value outside the library's range for `setting` (ComfyUI checks a widget's
    min/max when a prompt is queued, but not the value of a converted, linked input)."""
    setting.check(value, f"'{widget}' in '{node}'", index=index)


def check_finite(node: str, values: dict[str, float], defaults: dict[str, float] | None = None) -> None:
    """Refuse NaN or infinite float widgets (ComfyUI's min/max check lets NaN through)."""
    for name, value in values.items():
        if value is None:
            continue
        if not math.isfinite(float(value)):
            hint = f" (default {defaults[name]})" if defaults and name in defaults else ""
            raise dmt.InputError(f"'{name}' in '{node}' is {value}: enter a finite number{hint}.")


def check_frame_count(node: str, images: torch.Tensor, frame_count: int, start_frame: int, frame_stride: int) -> None:
    """Refuse a frame count above what the video gives from start_frame with frame_stride."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or frame_count <= 0:
        return  # shape errors and "all frames" are handled by the library
    total = images.shape[0]
    available = len(range(start_frame, total, max(frame_stride, 1)))
    if available < 2:
        return  # the library's "needs at least 2 frames" says more
    if frame_count > available:
        raise dmt.InputError(
            f"'frame_count' in '{node}' is {frame_count}, but the video has {total} frames and from "
            f"'start_frame' {start_frame} with 'frame_stride' {frame_stride} gives only {available}. "
            f"Set 'frame_count' to at most {available} (0 = all frames), or lower 'start_frame' or 'frame_stride'."
        )


def check_sampling_steps(targets_node: str, invert_node: str, inversion, sampling_steps: int) -> None:
    """The targets' sampling steps must be the ones the inversion kept latents for."""
    made = inversion.num_sampling_steps
    if sampling_steps != made:
        raise dmt.InputError(
            f"'sampling_steps' is {sampling_steps} in '{targets_node}' but {made} in '{invert_node}' (the inversion "
            f"keeps its latents for those steps). Set 'sampling_steps' in '{targets_node}' to {made}, or set it to "
            f"{sampling_steps} in '{invert_node}' (the inversion then runs again)."
        )


def _describe(shape: tuple[int, ...]) -> str:
    f, h, w = shape[2], shape[-2], shape[-1]
    return f"{f} frames of {w * 8}x{h * 8} px (latent {tuple(shape)})"


def check_same_inversion(init_node: str, invert_node: str, targets_node: str, inversion, targets) -> None:
    """Init gets an inversion and targets: both must describe the same video (frames, size)."""
    want = getattr(targets, "latent_shape", None)
    have = tuple(inversion.x0.shape)
    if targets.num_frames != inversion.num_frames or (want is not None and tuple(want) != have):
        made = _describe(want) if want is not None else f"{targets.num_frames} frames"
        raise dmt.InputError(
            f"'{init_node}' got an inversion of {_describe(have)} but targets made from {made}. Connect its "
            f"'inversion' and the 'inversion' of '{targets_node}' to the same '{invert_node}' node, or give both "
            f"'{invert_node}' nodes the same 'frame_count', 'width' and 'height'."
        )


def check_latent_fits(sampler_node: str, init_node: str, invert_node: str, latent: torch.Tensor, targets) -> None:
    """The sampler's latent must have the frames and size the targets were made for."""
    if not isinstance(latent, torch.Tensor) or latent.ndim != 5 or latent.shape[0] != 1:
        shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise dmt.InputError(
            f"'{sampler_node}' needs a video latent (1, 4, frames, h, w) from '{init_node}'; got {shape}. "
            f"Connect its 'latent' to '{init_node}'."
        )
    want = getattr(targets, "latent_shape", None)
    shape = tuple(latent.shape)
    if shape[2] != targets.num_frames or (want is not None and tuple(want[-2:]) != shape[-2:]):
        made = _describe(want) if want is not None else f"{targets.num_frames} frames"
        raise dmt.InputError(
            f"'{sampler_node}' got a latent of {_describe(shape)} but targets made from {made}. Make both from "
            f"the same '{invert_node}' node (connect '{init_node}' to it), or give the '{invert_node}' nodes the "
            f"same 'frame_count', 'width' and 'height'."
        )


def check_downsample_factor(node: str, inversion, factor: int) -> None:
    """1 <= downsample_factor <= min(latent h, w): the low-pass needs at least 1 latent pixel."""
    shape = tuple(inversion.x0.shape)
    top = max_downsample_factor(shape)
    if not 1 <= factor <= top:
        raise dmt.InputError(
            f"'downsample_factor' in '{node}' is {factor}; for this video (latent {shape[-1]}x{shape[-2]} = "
            f"{shape[-1] * 8}x{shape[-2] * 8} px / 8) it must be 1 to {top}, so that the downsampled latent keeps at "
            f"least 1 pixel per side (authors: {DEFAULT_DOWNSAMPLE_FACTOR})."
        )


def prompt_notes(node: str, model, prompts: dict[str, str], prefix: str = AUTHORS_PROMPT_PREFIX,
                 prefixed: tuple[str, ...] = ()) -> list[str]:
    """For each prompt widget longer than the text encoder reads: a note with the tokens used and
    what was dropped, also logged as a warning. `prefixed`: widgets that get the authors' prefix."""
    notes = []
    for widget, text in prompts.items():
        if not isinstance(text, str):
            continue
        encoded = with_prefix(text, prefix) if widget in prefixed else text
        count = count_prompt_tokens(model.tokenizer, encoded)
        if count.truncated:
            note = (f"'{widget}' in '{node}': {count.used} of {count.total} tokens were used "
                    f"({'with the quality prefix, ' if widget in prefixed else ''}the text encoder reads {count.limit}); "
                    f"the rest was dropped: '{count.dropped_text}'. Shorten '{widget}' to keep every word.")
            log.warning("DMT: %s", note)
            notes.append(note)
    return notes
