"""Example clips of the motion to learn, each with a caption that names the motion by its token.

Sources:
- a folder: every video file (.mp4, .mov, ...) and every sub-folder of frame images is one clip;
  the caption of ``clip.mp4`` (or of the frame folder ``clip/``) is ``clip.txt`` beside it, else
  the single `caption` given for all clips;
- a single video file or frame folder (with `caption`);
- in memory: frames (F, H, W, 3) in [0, 1] plus a caption (what the ComfyUI node passes).

Every clip is cut to its first `num_frames` frames (at `stride`), centre-cropped to the training
aspect ratio and resized to width × height with the transfer's frame reader
(dmt.models.latents.prepare_frames: antialiased bicubic). A clip shorter than `num_frames` is
refused (the message gives its length), never padded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from ..settings import TRAIN
from ..io.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoReadError, read_video
from ..models.latents import check_frames, check_size, prepare_frames

DEFAULT_TOKEN: str = TRAIN["token"].default  # "sks"
DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_WIDTH = (TRAIN[k].default for k in ("frames", "height", "width"))  # 16, 256, 256


@dataclass
class MotionExample:
    """One prepared training clip.

    frames: (num_frames, height, width, 3) float32 in [0, 1]. caption: its text (contains the
    token). source: where it came from (file path or a name for in-memory clips).
    """

    frames: torch.Tensor
    caption: str
    source: str


def token_pattern(token: str) -> re.Pattern:
    """Regex matching `token` as a whole word (not inside another word)."""
    return re.compile(rf"(?<![\w]){re.escape(token)}(?![\w])")


def check_token(token: str) -> str:
    """Return the stripped token or raise InputError when it is empty or contains spaces."""
    if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token.strip()):
        raise InputError(f"The motion token must be one word without spaces (default '{DEFAULT_TOKEN}'); got {token!r}.")
    return token.strip()


def caption_has_token(caption: str, token: str) -> bool:
    """Whether `caption` contains `token` as a whole word."""
    return bool(token_pattern(token).search(caption))


def strip_token(caption: str, token: str) -> str:
    """`caption` without the token word (spaces collapsed): the prior prompt for regularization
    and the baseline of the evaluation."""
    return re.sub(r"\s+", " ", token_pattern(token).sub("", caption)).strip()


def _center_crop(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    h, w = frames.shape[1], frames.shape[2]
    target = width / height
    if abs(w / h - target) < 1e-6:
        return frames
    if w / h > target:  # too wide: crop the sides
        new_w = max(1, round(h * target))
        x0 = (w - new_w) // 2
        return frames[:, :, x0 : x0 + new_w]
    new_h = max(1, round(w / target))
    y0 = (h - new_h) // 2
    return frames[:, y0 : y0 + new_h]


def example_from_frames(
    frames: torch.Tensor,
    caption: str,
    token: str | None = DEFAULT_TOKEN,
    num_frames: int = DEFAULT_FRAMES,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    stride: int = 1,
    source: str = "frames",
    crop: bool = True,
) -> MotionExample:
    """Prepare one in-memory clip.

    Args:
        frames: (F, H, W, 3) float in [0, 1] (ComfyUI IMAGE layout).
        caption: its caption; must contain `token` as a word (token None: no check, for
            regularization clips).
        num_frames, height, width: training clip size (multiples of 8 for height/width).
        stride: take every stride-th frame.
        crop: centre-crop to the training aspect ratio before resizing (False: stretch).
    Raises:
        InputError: bad shape, size not a multiple of 8, too few frames, token missing.
    """
    check_size(width, height)
    TRAIN["frames"].check(num_frames)
    TRAIN["stride"].check(stride)
    check_frames(frames, what=f"example clip '{source}'")
    if not isinstance(caption, str) or not caption.strip():
        raise InputError(f"Example clip '{source}' has an empty caption.")
    if token is not None and not caption_has_token(caption, token):
        raise InputError(
            f"The caption of example clip '{source}' does not contain the motion token '{token}': "
            f"\"{caption}\". Name the motion in every caption, e.g. \"a person doing the {token} dance\"."
        )
    available = len(range(0, frames.shape[0], stride))
    if available < num_frames:
        raise InputError(
            f"Example clip '{source}' has {available} frame(s)"
            f"{f' at stride {stride}' if stride > 1 else ''}, but training uses {num_frames}. Use a "
            f"longer clip or fewer training frames."
        )
    clip = frames[::stride][:num_frames]
    if crop:
        clip = _center_crop(clip, width, height)
    clip = prepare_frames(clip, width, height, num_frames=num_frames)
    return MotionExample(frames=clip, caption=caption.strip(), source=source)


def _clip_sources(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
            out.append(p)
        elif p.is_dir() and any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()):
            out.append(p)
    return out


def _caption_for(src: Path, caption: str | None) -> str:
    txt = src.with_suffix(".txt") if src.is_file() else src.parent / (src.name + ".txt")
    if txt.is_file():
        return txt.read_text(encoding="utf-8").strip()
    if caption is not None:
        return caption
    raise InputError(f"No caption for example clip '{src}': add '{txt.name}' beside it or give one caption for all.")


def load_examples(
    path: str | Path,
    caption: str | None = None,
    token: str | None = DEFAULT_TOKEN,
    num_frames: int = DEFAULT_FRAMES,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    stride: int = 1,
    crop: bool = True,
) -> list[MotionExample]:
    """Read and prepare every example clip under `path` (see the module docstring).

    Args:
        path: folder of clips (videos and/or frame folders, captions in <name>.txt), or one clip.
        caption: caption for clips without a .txt (and for a single clip).
        token: the motion token every caption must contain (None: no check).
    Returns:
        list of MotionExample, sorted by file name.
    Raises:
        InputError: no clips, an unreadable clip (named), a missing caption or token, a clip
            shorter than num_frames (its length given), a size that is not a multiple of 8.
    """
    if token is not None:
        token = check_token(token)
    check_size(width, height)
    path = Path(path)
    if not path.exists():
        raise InputError(f"Examples path '{path}' does not exist. Give a folder of clips or one clip.")
    if path.is_dir() and not any(q.suffix.lower() in IMAGE_SUFFIXES for q in path.iterdir()):
        sources = _clip_sources(path)
    else:
        sources = [path]
    if not sources:
        raise InputError(
            f"No example clips in '{path}': put video files ({', '.join(VIDEO_SUFFIXES)}) or folders of "
            f"frame images there, each with its caption in <name>.txt."
        )
    examples = []
    for src in sources:
        text = _caption_for(src, caption)
        try:
            clip = read_video(src)
        except VideoReadError as exc:
            raise InputError(f"Cannot read example clip '{src}': {exc}") from exc
        examples.append(example_from_frames(clip.frames, text, token, num_frames, height, width, stride,
                                            source=str(src), crop=crop))
    return examples
