"""Reading and writing videos and frame folders.

Frames are always torch tensors of shape (F, H, W, 3), float32, RGB, values in [0, 1] —
the same layout as ComfyUI's IMAGE type. Videos are read and written with OpenCV; a folder of
images (PNG/JPEG/WebP/BMP, sorted by the number in the file name, else by name) is accepted
wherever a video is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif", ".m4v")


class VideoReadError(ValueError):
    """An input video or frame folder could not be read."""


@dataclass
class VideoClip:
    """Decoded frames and their frame rate.

    frames: (F, H, W, 3) float32 RGB in [0, 1]. fps: frames per second (8.0 for a frame folder).
    """

    frames: torch.Tensor
    fps: float


def _frame_sort_key(path: Path) -> tuple:
    numbers = re.findall(r"\d+", path.stem)
    return (0, int(numbers[-1]), path.name) if numbers else (1, 0, path.name)


def _to_float(frames_bgr: list[np.ndarray]) -> torch.Tensor:
    rgb = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames_bgr])
    return torch.from_numpy(rgb).float().div_(255.0)


def read_video(path: str | Path, max_frames: int | None = None) -> VideoClip:
    """Read a video file or a folder of frame images.

    Args:
        path: a video file (anything OpenCV's FFmpeg backend decodes) or a folder of images.
        max_frames: stop after this many frames (None: all).
    Returns:
        VideoClip with frames (F, H, W, 3) float32 in [0, 1].
    Raises:
        VideoReadError: missing path, undecodable file, empty folder, frames of different sizes.
    """
    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"Input video not found: '{path}'. Give a video file or a folder of frames.")
    frames: list[np.ndarray] = []
    fps = 8.0
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_frame_sort_key)
        if not files:
            raise VideoReadError(
                f"No frame images ({', '.join(IMAGE_SUFFIXES)}) in folder '{path}'."
            )
        for f in files[:max_frames]:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise VideoReadError(f"Cannot read frame image '{f}': not a valid image file.")
            if frames and img.shape != frames[0].shape:
                raise VideoReadError(
                    f"Frame '{f.name}' is {img.shape[1]}x{img.shape[0]} but the first frame is "
                    f"{frames[0].shape[1]}x{frames[0].shape[0]}: all frames must have one size."
                )
            frames.append(img)
    else:
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise VideoReadError(
                    f"Cannot open video '{path}': the file is damaged or not a video OpenCV can decode."
                )
            fps = float(cap.get(cv2.CAP_PROP_FPS)) or 8.0
            while max_frames is None or len(frames) < max_frames:
                ok, img = cap.read()
                if not ok:
                    break
                frames.append(img)
        finally:
            cap.release()
        if not frames:
            raise VideoReadError(f"Video '{path}' has no decodable frames.")
    return VideoClip(frames=_to_float(frames), fps=fps)


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, H, W, 3) float [0, 1] → uint8 numpy, truncating like the authors' tensor2vid."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"Expected frames of shape (F, H, W, 3), got {tuple(frames.shape)}.")
    return (frames.detach().float().clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()


def write_video(path: str | Path, frames: torch.Tensor, fps: float = 8.0) -> Path:
    """Write frames as an .mp4/.avi video, or as numbered PNGs when `path` has no video suffix.

    Args:
        path: output file (.mp4 uses the 'mp4v' codec) or folder.
        frames: (F, H, W, 3) float in [0, 1].
        fps: frames per second of the written video.
    Returns:
        The written path.
    """
    path = Path(path)
    data = frames_to_uint8(frames)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
        writer = cv2.VideoWriter(str(path), fourcc, float(fps), (data.shape[2], data.shape[1]))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write video '{path}'. Use .mp4, .avi or a folder for PNG frames.")
        try:
            for f in data:
                writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    else:
        path.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(data):
            cv2.imwrite(str(path / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return path
