#!/usr/bin/env python
"""Speed of the Motion-Fidelity score (offline LK tracker) on a synthetic clip pair.

The pair: 24 frames at 576x320, a textured background panning 3 px/frame and a textured object
jumping across it; the edited clip has the same motion with another shape, textures and colours.
Rows (median over --repeats after one warm-up call; the JSON keeps every time):

  track            track_points on one clip (grid x grid points, LK with forward-backward check)
  score            score_tracks on the two tracked clips (similarity maxima, both directions)
  motion_fidelity  the whole library call: track both clips + score
  draw_comparison  the side-by-side visualisation

    python bench/bench_motion_fidelity.py --json bench/motion_fidelity_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dmt.metrics.motion_fidelity import draw_comparison, motion_fidelity, score_tracks  # noqa: E402
from dmt.metrics.tracking import track_points  # noqa: E402


def synthetic_clip(frames: int, height: int, width: int, shape: str, seed: int) -> torch.Tensor:
    """(F, H, W, 3) float clip: panning noise background + a textured disc/square on an arc."""
    rng = np.random.default_rng(seed)

    def texture(h: int, w: int) -> np.ndarray:
        t = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.5)
        t = (t - t.mean()) / (t.std() + 1e-6) * 0.22 + 0.5
        return np.clip(t[..., None] * rng.uniform(0.4, 1.0, 3).astype(np.float32), 0, 1)

    pan, pad, radius = 3.0, int(3.0 * frames) + 2, height // 8
    bg = texture(height + 2 * pad, width + 2 * pad)
    size = 2 * radius + 3
    obj = texture(size, size)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    dist = np.hypot(xx, yy) if shape == "disc" else np.maximum(abs(xx), abs(yy)) / 0.9
    alpha = np.clip(radius + 0.5 - dist, 0, 1).astype(np.float32)
    out = []
    for t in range(frames):
        s = t / (frames - 1)
        img = cv2.warpAffine(bg, np.float32([[1, 0, -pan * t - pad], [0, 1, -pad]]), (width, height))
        cx, cy = width * (0.25 + 0.5 * s), height * (0.7 - 0.4 * math.sin(math.pi * s))
        place = np.float32([[1, 0, cx - (size - 1) / 2], [0, 1, cy - (size - 1) / 2]])
        a = cv2.warpAffine(alpha, place, (width, height))[..., None]
        img = a * cv2.warpAffine(obj, place, (width, height)) + (1 - a) * img
        out.append(img)
    return torch.from_numpy(np.stack(out)).float()


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--width", type=int, default=576)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--grid", type=int, default=55)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch / OpenCV threads (0: leave their defaults)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)

    original = synthetic_clip(args.frames, args.height, args.width, "disc", seed=0)
    edited = synthetic_clip(args.frames, args.height, args.width, "square", seed=1)
    rows = {}
    rows["track"] = timed(lambda: track_points(original, args.grid), args.repeats)
    edited_tracks = track_points(edited, args.grid)
    rows["score"] = timed(lambda: score_tracks(rows["track"][2], edited_tracks), args.repeats)
    rows["motion_fidelity"] = timed(lambda: motion_fidelity(original, edited, args.grid), args.repeats)
    result = rows["motion_fidelity"][2]
    rows["draw_comparison"] = timed(lambda: draw_comparison(original, edited, result), args.repeats)

    print(f"Motion fidelity, {args.frames} frames {args.width}x{args.height}, grid {args.grid} "
          f"({args.grid ** 2} points), LK tracker, CPU threads torch {torch.get_num_threads()} / "
          f"OpenCV {cv2.getNumThreads()}, {os.cpu_count()} cores, median of {args.repeats}")
    print(f"{'row':<18}{'median s':>10}{'min s':>10}")
    for name, (median, times, _) in rows.items():
        print(f"{name:<18}{median:>10.3f}{min(times):>10.3f}")
    print(f"score: combined {result.combined:.4f}, edited->original {result.edited_to_original:.4f}, "
          f"original->edited {result.original_to_edited:.4f}; tracklets {result.num_original} / "
          f"{result.num_edited} of {args.grid ** 2}")

    if args.json is not None:
        data = {
            "frames": args.frames, "width": args.width, "height": args.height, "grid": args.grid,
            "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
            "opencv_threads": cv2.getNumThreads(), "cpu_count": os.cpu_count(),
            "machine": platform.platform(), "processor": platform.processor(),
            "torch": torch.__version__, "opencv": cv2.__version__,
            "seconds": {name: {"median": m, "all": t} for name, (m, t, _) in rows.items()},
            "result": result.to_dict(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
