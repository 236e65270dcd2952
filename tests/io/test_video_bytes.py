"""A written video's bytes are a function of its frames and settings only: the same frames written
by fresh processes that differ in import order (OpenCV's bundled FFmpeg loaded before PyAV's or
after), thread variables, heap contents (MALLOC_PERTURB_ fills fresh allocations with a byte, as a
long-running worker's reused memory would be) and FFmpeg's CPU-feature dispatch give
byte-identical files (issue 17: a Ray worker and the driver wrote different mp4s of equal frames).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dmt

from helpers import moving_square_clip

REPO = Path(__file__).resolve().parents[2]

#: Runs in a fresh interpreter: argv = frames .npy, output folder, first module to import, and
#: "nosimd" to turn off FFmpeg's (libavutil's) SIMD code paths before writing, as on a CPU
#: without them.
WRITER = r"""
import importlib, sys
first = sys.argv[3]
importlib.import_module(first)
importlib.import_module("av" if first == "cv2" else "cv2")
if sys.argv[4] == "nosimd":
    import ctypes, glob, os, av
    libs = glob.glob(os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs", "libavutil*.so*"))
    if not libs:
        sys.exit(3)  # not a PyAV wheel with bundled FFmpeg: the caller skips this variant
    ctypes.CDLL(libs[0]).av_force_cpu_flags(0)
import numpy as np, torch
import dmt
frames = np.load(sys.argv[1])
for i, clip in enumerate(frames.files):
    dmt.write_video(f"{sys.argv[2]}/{i}.mp4", torch.from_numpy(frames[clip]), fps=10)
"""


def _smooth_clip(num_frames: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Smooth random colours (what a tiny random model's output looks like)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(num_frames, 3, height // 8, width // 8, generator=g)
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).contiguous()


def _write_in_fresh_process(frames_file: Path, out: Path, first: str, env: dict, simd: str = "simd") -> list[str]:
    out.mkdir()
    full_env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_PERTURB_", "OMP_NUM_THREADS")}
    full_env.update(env, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-c", WRITER, str(frames_file), str(out), first, simd], env=full_env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == 3:
        pytest.skip("PyAV without bundled libavutil: cannot switch FFmpeg's SIMD off")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.mp4"))]


def test_same_frames_same_bytes_whatever_process_writes_them(tmp_path):
    clips = {"square": moving_square_clip(num_frames=8, size=64), "smooth": _smooth_clip(8, 64, 64, 0),
             "wide": _smooth_clip(12, 96, 160, 1)}
    frames_file = tmp_path / "frames.npz"
    np.savez(frames_file, **{k: v.numpy() for k, v in clips.items()})
    variants = {
        "cv2 first, 1 thread": ("cv2", {"OMP_NUM_THREADS": "1"}, "simd"),
        "av first, 2 threads, heap filled with 0xaa": ("av", {"OMP_NUM_THREADS": "2", "MALLOC_PERTURB_": "85"}, "simd"),
        "av first, heap filled with 0xfe": ("av", {"OMP_NUM_THREADS": "1", "MALLOC_PERTURB_": "1"}, "simd"),
        "cv2 first, FFmpeg without SIMD": ("cv2", {"OMP_NUM_THREADS": "1"}, "nosimd"),
    }
    hashes = {name: _write_in_fresh_process(frames_file, tmp_path / f"v{i}", first, env, simd)
              for i, (name, (first, env, simd)) in enumerate(variants.items())}
    assert all(len(h) == len(clips) for h in hashes.values())
    reference = next(iter(hashes.values()))
    differ = {name: [clip for clip, a, b in zip(clips, h, reference) if a != b] for name, h in hashes.items()}
    assert not any(differ.values()), f"different bytes from the first variant's: {differ}"
    # and this process (which has run other tests: another heap) writes the same bytes too
    here = tmp_path / "here"
    here.mkdir()
    for i, clip in enumerate(clips.values()):
        dmt.write_video(here / f"{i}.mp4", clip, fps=10)
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(here.glob("*.mp4"))] == reference


def test_rgb_to_yuv420p_is_bt601_limited_range_with_2x2_chroma():
    from dmt.io.video import rgb_to_yuv420p

    # exact BT.601 values, rounded: 16 + 219 * (0.299 R + 0.587 G + 0.114 B) / 255, chroma 128 +- 112
    expected = {(0, 0, 0): (16, 128, 128), (255, 255, 255): (235, 128, 128), (128, 128, 128): (126, 128, 128),
                (255, 0, 0): (81, 90, 240), (0, 255, 0): (145, 54, 34), (0, 0, 255): (41, 240, 110)}
    for rgb, yuv in expected.items():
        planes = rgb_to_yuv420p(np.full((2, 4, 3), rgb, np.uint8))
        assert planes.shape == (3, 4) and (planes[:2] == yuv[0]).all(), rgb
        assert planes[2].tolist() == [yuv[1]] * 2 + [yuv[2]] * 2, rgb  # U (2 samples), then V (2 samples)
    # each chroma sample comes from its own 2x2 block: the mean of a red and a blue block half
    block = np.zeros((2, 2, 3), np.uint8)
    block[:, 0], block[:, 1] = (255, 0, 0), (0, 0, 255)
    assert rgb_to_yuv420p(block)[2].tolist() == [round((90 + 240) / 2), round((240 + 110) / 2)]
    with pytest.raises(ValueError, match="even"):
        rgb_to_yuv420p(np.zeros((3, 4, 3), np.uint8))


def test_stream_records_bt601_tv_range(tmp_path):
    import av

    out = dmt.write_video(tmp_path / "v.mp4", moving_square_clip(num_frames=3, size=32), fps=8)
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
    assert frame.color_range == 1 and frame.colorspace == 6  # AVCOL_RANGE_MPEG, AVCOL_SPC_SMPTE170M (BT.601)
