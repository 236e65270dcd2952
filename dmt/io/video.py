"""Reading and writing videos and frame folders.

Frames are always torch tensors of shape (F, H, W, 3), float32, RGB, values in [0, 1] —
the same layout as ComfyUI's IMAGE type. Videos are read with OpenCV and written with PyAV
(FFmpeg; h264 in .mp4 by default, which browsers and players play); a folder of images
(PNG/JPEG/WebP/BMP, sorted by the number in the file name, else by name) is accepted wherever a
video is.

A written video's bytes depend only on its frames and settings (and the PyAV/FFmpeg build): the
RGB -> YUV conversion is done here in integer arithmetic, and x264 runs in its cpu-independent
mode with one thread, so any process, worker or machine writes the same file.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from fractions import Fraction
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


#: Codecs write_video offers (FFmpeg encoder names as PyAV knows them) and what they are for.
CODECS = {
    "h264": "H.264/AVC (libx264), yuv420p: plays in browsers and most players (default)",
    "mpeg4": "MPEG-4 Part 2 (FFmpeg's mpeg4, what OpenCV's 'mp4v' wrote): older players",
    "libvpx-vp9": "VP9 (libvpx), for .webm or .mkv",
    "libsvtav1": "AV1 (SVT-AV1), small files, slow players",
}
DEFAULT_CODEC = "h264"
_CONTAINER_CODECS = {".mp4": ("h264", "mpeg4", "libsvtav1", "libvpx-vp9"), ".m4v": ("h264", "mpeg4"),
                     ".mov": ("h264", "mpeg4"), ".mkv": tuple(CODECS), ".webm": ("libvpx-vp9", "libsvtav1"),
                     ".avi": ("mpeg4", "h264")}
# h264: x264's cpu-independent mode and one thread. By default x264 picks CPU-specific versions of
# its macroblock-tree functions that round differently (C/SSE2 vs SSSE3+), and the AVX-512 one
# reads uninitialised memory, so the bytes depended on the CPU and on the writing process's heap
# (issue 17: a Ray worker and the driver wrote different mp4s of equal frames).
# cpu-independent=1 takes the C versions: same bytes from C to AVX-512 and whatever the heap holds,
# same size and quality. x264's output also depends on its thread count, hence threads=1.
_CODEC_OPTIONS = {"h264": {"crf": "18", "preset": "medium", "threads": "1", "x264-params": "cpu-independent=1"},
                  "libvpx-vp9": {"crf": "30", "b": "0"}, "libsvtav1": {"crf": "30"}}
#: What the stream records about the YUV that rgb_to_yuv420p makes (FFmpeg codec options, written
#: by the encoders into the stream, e.g. h264's VUI): BT.601 matrix, limited ("tv") range, chroma
#: samples at the centre of each 2x2 block.
_YUV_TAGS = {"colorspace": "smpte170m", "color_range": "tv", "chroma_sample_location": "center"}


def available_codecs() -> list[str]:
    """The CODECS this PyAV build can encode."""
    import av

    out = []
    for name in CODECS:
        try:
            av.codec.Codec(name, "w")
            out.append(name)
        except Exception:  # not built into this FFmpeg
            continue
    return out


def choose_codec(path: str | Path, codec: str | None = None) -> str | None:
    """The codec write_video uses for `path` (None for a PNG folder); raises ValueError for a
    codec or suffix that cannot be written, so callers can check before any heavy work."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        return None
    if suffix not in _CONTAINER_CODECS:
        raise ValueError(f"Cannot write '{suffix}' videos; use one of {', '.join(_CONTAINER_CODECS)} or a folder.")
    codec = codec or (_CONTAINER_CODECS[suffix][0] if suffix == ".webm" else DEFAULT_CODEC)
    if codec not in CODECS:
        raise ValueError(f"Unknown codec '{codec}'; use one of: {', '.join(CODECS)}.")
    if codec not in _CONTAINER_CODECS[suffix]:
        raise ValueError(f"Codec '{codec}' does not go into '{suffix}' files; there use one of "
                         f"{', '.join(_CONTAINER_CODECS[suffix])}.")
    return codec


def _fixed_point(kr: float, kb: float) -> tuple[tuple[int, int, int], ...]:
    """BT.601-style RGB -> limited-range YCbCr coefficients in 16-bit fixed point: rows Y, Cb, Cr.
    Exact integers (Python's IEEE doubles, rounded once), so no machine rounds them differently;
    the chroma rows sum to 0 (grey stays at 128) and the Y row to 219/255 (white is 235)."""
    one = 1 << 16
    y_r, y_b = round(kr * 219 / 255 * one), round(kb * 219 / 255 * one)
    y_g = round(219 / 255 * one) - y_r - y_b
    half = round(0.5 * 224 / 255 * one)
    cb_r = -round(kr / (2 * (1 - kb)) * 224 / 255 * one)
    cr_b = -round(kb / (2 * (1 - kr)) * 224 / 255 * one)
    return (y_r, y_g, y_b), (cb_r, -half - cb_r, half), (half, -half - cr_b, cr_b)


_BT601 = _fixed_point(0.299, 0.114)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H * 3 // 2, W) uint8 yuv420p planes (Y, then U, then V, as PyAV's
    VideoFrame.from_ndarray takes them): BT.601 matrix, limited range (Y 16-235, chroma 16-240),
    each chroma sample from the mean of a 2x2 block of pixels (centre siting). Integer arithmetic
    with round-half-up, so the result is the same on every machine and in every process (FFmpeg's
    swscale takes CPU-dependent code paths). H and W must be even."""
    height, width = rgb.shape[0], rgb.shape[1]
    if rgb.ndim != 3 or rgb.shape[2] != 3 or height % 2 or width % 2:
        raise ValueError(f"Expected (H, W, 3) RGB with even H and W, got {rgb.shape}.")
    px = rgb.astype(np.int32)
    (yr, yg, yb), cb, cr = _BT601
    y = (yr * px[..., 0] + yg * px[..., 1] + yb * px[..., 2] + (1 << 15)) >> 16
    block = px[0::2, 0::2] + px[0::2, 1::2] + px[1::2, 0::2] + px[1::2, 1::2]  # sums of 2x2, 0..1020
    u, v = ((k[0] * block[..., 0] + k[1] * block[..., 1] + k[2] * block[..., 2] + (1 << 17)) >> 18 for k in (cb, cr))
    out = np.empty((height * 3 // 2, width), np.uint8)
    out[:height] = np.clip(y + 16, 16, 235)
    out[height:].reshape(-1)[:] = np.concatenate([np.clip(c + 128, 16, 240).reshape(-1) for c in (u, v)])
    return out


def _frame_rate(fps: float) -> Fraction:
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"Frame rate must be a positive finite number, got {fps}.")
    return Fraction(fps).limit_denominator(1001)


def write_video(path: str | Path, frames: torch.Tensor, fps: float = 8.0, codec: str | None = None,
                codec_options: dict[str, str] | None = None) -> Path:
    """Write frames as a video file with PyAV, or as numbered PNGs when `path` has no video suffix.

    Args:
        path: output file (.mp4/.m4v/.mov/.mkv/.avi/.webm) or folder (PNG frames).
        frames: (F, H, W, 3) float in [0, 1].
        fps: frames per second of the written video (pass the source's; exact rationals such as
            30000/1001 are recovered from 29.97).
        codec: one of CODECS (None: h264, or libvpx-vp9 for .webm). h264/mpeg4/vp9 use yuv420p,
            so width and height must be even.
        codec_options: FFmpeg options over the codec's defaults (e.g. {"crf": "23"} for a smaller
            h264 file); ignored for PNG frames.
    Returns:
        The written path. The file is written under a temporary name in the same folder and
        renamed at the end, so a failed write never leaves a partial file under `path`.
    """
    path = Path(path)
    data = frames_to_uint8(frames)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        codec = choose_codec(path, codec)
        height, width = data.shape[1], data.shape[2]
        if width % 2 or height % 2:
            raise ValueError(f"Frames are {width}x{height}; {codec} (yuv420p) needs an even width and height. "
                             f"Resize the frames or write PNG frames to a folder.")
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{suffix}")
        fmt = {".m4v": "mp4", ".mkv": "matroska"}.get(suffix, suffix[1:])
        try:
            with av.open(str(tmp), mode="w", format=fmt) as container:
                stream = container.add_stream(codec, rate=_frame_rate(fps),
                                              options={**_CODEC_OPTIONS.get(codec, {}), **(codec_options or {}),
                                                       **_YUV_TAGS})
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                if codec == "mpeg4":
                    stream.bit_rate = 8_000_000
                for f in data:
                    # already yuv420p, so PyAV hands it to the encoder without a swscale conversion
                    frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(f), format="yuv420p")
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    else:
        path.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(data):
            cv2.imwrite(str(path / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return path
