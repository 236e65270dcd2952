"""Temporal context windows: running every UNet call of the transfer on a long video as
overlapping windows of frames whose results are fused.

ZeroScope was trained on 24-frame clips and the memory of one UNet call grows with the frame
count. With context windows each UNet call sees at most `length` frames; the windows overlap by
at least `overlap` frames and their noise predictions are blended per frame with weights that
sum to 1 (the approach of AnimateDiff-Evolved and ComfyUI core's context windows).

Schedule (stride 1, no closed loop): windows start at 0, L−O, 2(L−O), … while they fit; the
last window is aligned to the end of the video (it may overlap its neighbour by more than O).
A video of at most L frames is one window: the plain, window-free path.

Example, 40 frames, length 16, overlap 4 (step 12)::

    frame    0         10        20        30     39
             |---------|---------|---------|--------|
    win 0    ################                          frames  0-15
    win 1                ################              frames 12-27
    win 2                            ################  frames 24-39  (ends at the last frame)

    frame  | 0-11 | 12-15      | 16-23 | 24-27      | 28-39
    windows| 0    | 0 and 1    | 1     | 1 and 2    | 2

Fuse weights inside a window of n frames, position i = 0 … n−1:
  pyramid (default): min(i + 1, n − i) — highest in the middle, falling off toward the edges,
      so a frame's result comes mostly from the window where it sits most centrally;
  flat: 1 for every position (a plain average over the windows that cover the frame).
Per frame the weights of the covering windows are normalised to sum to 1, so a frame covered by
one window takes that window's prediction exactly.

Where windows apply (see the stages): each DDIM inversion step's and each CFG denoise step's
noise prediction is the fused prediction of the windows; SMM targets are kept per window; the
guided loss is the sum of per-window losses, each window backpropagated on its own (only one
window's activations alive at a time), the latent gradient accumulated, then one Adam step.
The low-frequency init and restart re-noising act on the whole video.

Wan 2.1 (dmt.transfer.wan_transfer): the options are given in video frames as for ZeroScope and
act on latent frames, each of which holds 4 video frames after the first (`latent_context`):
length L frames → (L − 1) // 4 + 1 latent frames, overlap O → (O − 1) // 4 + 1 (0 stays 0), the
conversion ComfyUI core's Wan context windows use. Every stage above runs per window the same
way on Wan's velocity predictions, attention motion flow and SMMs. A window that starts after
the first latent frame hands Wan a first latent frame that holds 4 video frames, where its own
clips start with one frame alone (as in ComfyUI core's windows).
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from dataclasses import asdict, dataclass

import torch

from ..errors import InputError, InversionMismatchError

from ..settings import TRANSFER

DEFAULT_CONTEXT_LENGTH: int = TRANSFER["context_length"].default  # 24
DEFAULT_CONTEXT_OVERLAP: int = TRANSFER["context_overlap"].default  # 8
MIN_CONTEXT_LENGTH: int = TRANSFER["context_length"].min  # 2
# ZeroScope has no temporal position embedding, so any length runs, but it was trained on 24-frame
# clips; Wan 2.1 on 81 frames (21 latent frames). Windows are accepted up to 81 frames; longer
# windows give up both the training-length quality and the memory bound that windows are for.
MAX_CONTEXT_LENGTH: int = TRANSFER["context_length"].max  # 81
FUSE_MODES: tuple[str, ...] = TRANSFER["context_fuse"].choices


@dataclass(frozen=True)
class ContextOptions:
    """Settings of the temporal context windows (frozen: hashable, usable in cache keys).

    length: frames per window (24, ZeroScope's training length); MIN_CONTEXT_LENGTH … MAX_CONTEXT_LENGTH.
    overlap: frames shared by neighbouring windows (8); 0 ≤ overlap < length.
    stride: 1 (contiguous windows; larger strides are not implemented).
    closed_loop: False (no wrap-around windows; not implemented).
    fuse: "pyramid" (default) or "flat" (see the module docstring).
    """

    length: int = DEFAULT_CONTEXT_LENGTH
    overlap: int = DEFAULT_CONTEXT_OVERLAP
    stride: int = 1
    closed_loop: bool = False
    fuse: str = "pyramid"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InputError, saying what to do, for settings that cannot work."""
        for name in ("length", "overlap", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"Context {name} must be a whole number, got {value!r}.")
        if self.length < MIN_CONTEXT_LENGTH:
            raise InputError(
                f"Context length {self.length} is too short: a window needs at least {MIN_CONTEXT_LENGTH} frames "
                f"for the motion features (valid: {MIN_CONTEXT_LENGTH}-{MAX_CONTEXT_LENGTH}, ZeroScope's own: 24)."
            )
        if self.length > MAX_CONTEXT_LENGTH:
            raise InputError(
                f"Context length {self.length} is more than a window can usefully take: ZeroScope was trained on "
                f"24-frame clips, Wan 2.1 on 81. Use {MIN_CONTEXT_LENGTH}-{MAX_CONTEXT_LENGTH} frames (ZeroScope: 24, "
                f"Wan: 81)."
            )
        if self.overlap < 0:
            raise InputError(f"Context overlap must be >= 0, got {self.overlap}.")
        if self.overlap >= self.length:
            raise InputError(
                f"Context overlap {self.overlap} must be smaller than the context length {self.length} "
                f"(e.g. length 24, overlap 8); otherwise the windows never advance."
            )
        if self.stride != 1:
            raise InputError(f"Context stride {self.stride} is not supported; only stride 1 (contiguous windows).")
        if not isinstance(self.closed_loop, bool) or self.closed_loop:
            raise InputError("Closed-loop context windows are not supported; set closed_loop to False.")
        if self.fuse not in FUSE_MODES:
            raise InputError(f"Context fuse must be one of {FUSE_MODES}, got '{self.fuse}'.")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (for files and cache keys)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ContextOptions:
        """Inverse of to_dict (unknown keys refused)."""
        unknown = set(data) - {"length", "overlap", "stride", "closed_loop", "fuse"}
        if unknown:
            raise InputError(f"Unknown context option(s) {sorted(unknown)}.")
        return cls(**data)

    def windows(self, num_frames: int) -> list[range]:
        """The windows for a video of `num_frames` frames, as ranges of frame indices, in order."""
        return context_windows(num_frames, self.length, self.overlap)

    def describe(self, num_frames: int | None = None) -> str:
        text = f"context windows of {self.length} frames, overlap {self.overlap}, {self.fuse} fuse"
        if num_frames is not None:
            text += f" ({len(self.windows(num_frames))} window(s) for {num_frames} frames)"
        return text


def context_windows(num_frames: int, length: int, overlap: int) -> list[range]:
    """Windows of `length` frames advancing by length − overlap; the last ends at the last frame.

    A video of at most `length` frames is one window range(num_frames).
    """
    if num_frames < 1:
        raise InputError(f"A video needs at least 1 frame, got {num_frames}.")
    if num_frames <= length:
        return [range(num_frames)]
    step = length - overlap
    starts = list(range(0, num_frames - length, step))
    starts.append(num_frames - length)
    return [range(s, s + length) for s in starts]


def window_weights(n: int, fuse: str) -> torch.Tensor:
    """Unnormalised fuse weights of a window of n frames, float32 (n,)."""
    if fuse == "flat":
        return torch.ones(n)
    if fuse == "pyramid":
        i = torch.arange(n, dtype=torch.float32)
        return torch.minimum(i + 1, n - i)
    raise InputError(f"Context fuse must be one of {FUSE_MODES}, got '{fuse}'.")


def fuse_weights(num_frames: int, options: ContextOptions) -> list[torch.Tensor]:
    """Per window, its frames' weights (float32 (n,)), normalised so each frame's weights sum to 1."""
    wins = options.windows(num_frames)
    raw = [window_weights(len(w), options.fuse) for w in wins]
    total = torch.zeros(num_frames)
    for w, r in zip(wins, raw):
        total[w.start:w.stop] += r
    return [r / total[w.start:w.stop] for w, r in zip(wins, raw)]


def latent_context(options: ContextOptions | None, temporal_factor: int) -> ContextOptions | None:
    """`options` (video frames) in the latent frames of a causal video VAE that keeps the first
    frame alone and packs each `temporal_factor` frames after it into one latent frame (Wan: 4).

    length L → (L − 1) // f + 1 latent frames (a window of that many latent frames holds at most L
    video frames); overlap O → (O − 1) // f + 1, 0 staying 0. None stays None. Raises InputError
    when the window holds fewer than 2 latent frames or the overlap covers the whole window.
    """
    if options is None:
        return None
    f = int(temporal_factor)
    length = (options.length - 1) // f + 1
    overlap = (options.overlap - 1) // f + 1 if options.overlap > 0 else 0
    if length < 2:
        raise InputError(f"Context length {options.length} frames is {length} latent frame on this model (each holds "
                         f"{f} frames after the first): a window needs at least {f + 1} frames (2 latent frames).")
    if overlap >= length:
        raise InputError(f"Context overlap {options.overlap} frames is {overlap} latent frames, as many as the "
                         f"{options.length}-frame window's {length}: the windows would never advance. Use an overlap "
                         f"of at most {(length - 1) * f} frames (or a longer window).")
    return dataclasses.replace(options, length=length, overlap=overlap)


def effective_windows(options: ContextOptions | None, num_frames: int) -> list[range] | None:
    """The windows that will actually run, or None when the plain (one-pass) path runs."""
    if options is None:
        return None
    wins = options.windows(num_frames)
    return None if len(wins) == 1 else wins


def schedule_key(options: ContextOptions | None, num_frames: int) -> tuple | None:
    """What decides the numerics: None for one pass, else (window starts, length, fuse)."""
    wins = effective_windows(options, num_frames)
    if wins is None:
        return None
    return (tuple(w.start for w in wins), options.length, options.fuse)


def check_same_schedule(made_with: ContextOptions | None, asked: ContextOptions | None, num_frames: int,
                        what: str) -> None:
    """Refuse to mix stages made with different context windows (InversionMismatchError)."""
    if schedule_key(made_with, num_frames) != schedule_key(asked, num_frames):
        def name(o):
            return "no context windows (one pass)" if effective_windows(o, num_frames) is None else o.describe(num_frames)
        raise InversionMismatchError(
            f"The {what} was made with {name(made_with)}, but {name(asked)} were asked for. Use the same "
            f"context options for inversion, targets and sampling (or invert again with the new ones)."
        )


def fused_prediction(
    predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, options: ContextOptions | None
) -> torch.Tensor:
    """predict(x) over the context windows of x (B, C, F, h, w), fused per frame.

    One window (or options None): exactly predict(x), untouched. Several: predict on each window's
    frames x[:, :, s:e], the results (B, C', n, h, w) blended in float32 with fuse_weights.
    """
    num_frames = x.shape[2]
    wins = effective_windows(options, num_frames)
    if wins is None:
        return predict(x)
    out = None
    for w, weight in zip(wins, fuse_weights(num_frames, options)):
        pred = predict(x[:, :, w.start:w.stop]).float()
        if out is None:
            out = torch.zeros(pred.shape[:2] + (num_frames,) + pred.shape[3:], dtype=torch.float32, device=pred.device)
        out[:, :, w.start:w.stop] += pred * weight.to(pred.device).view(1, 1, -1, 1, 1)
        del pred
    return out
