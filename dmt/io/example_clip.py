"""The pack's example input clip: a synthetic cartoon car driving left to right on a road.

Drawn here (no download, no camera footage), so the example workflows run as loaded. The file
shipped as `example_inputs/dmt_example_car.mp4` is made by

    python -m dmt.io.example_clip example_inputs/dmt_example_car.mp4

24 frames of 576×320 (ZeroScope's native size) at 8 fps, h264 (yuv420p) via `write_video`: about 9 KB.
The scene is deterministic; only the h264 encoding rounds the colours.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

EXAMPLE_CLIP_NAME = "dmt_example_car.mp4"
EXAMPLE_SOURCE_PROMPT = "a car driving on a road"
NUM_FRAMES, WIDTH, HEIGHT, FPS = 24, 576, 320, 8


def example_frames(num_frames: int = NUM_FRAMES, width: int = WIDTH, height: int = HEIGHT) -> torch.Tensor:
    """The example clip's frames, (F, H, W, 3) float32 RGB in [0, 1]: sky, hills, a road with
    lane marks, and a red car whose body bobs slightly while it crosses the frame."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    img = np.zeros((height, width, 3), np.float32)
    sky = np.stack([0.45 + 0.35 * ys, 0.65 + 0.25 * ys, 0.95 - 0.05 * ys], -1) * np.ones_like(xs)[..., None]
    img[:] = sky
    hills = 0.55 + 0.06 * np.sin(xs * 9.0) + 0.03 * np.sin(xs * 23.0 + 1.0)
    img[np.broadcast_to(ys > hills, (height, width))] = (0.30, 0.62, 0.28)
    road_top, road_bottom = int(0.68 * height), int(0.92 * height)
    img[road_top:road_bottom] = (0.33, 0.33, 0.35)
    lane = (road_top + road_bottom) // 2
    for x0 in range(0, width, width // 8):
        img[lane - 2:lane + 2, x0:x0 + width // 16] = (0.95, 0.95, 0.85)
    frames = np.repeat(img[None], num_frames, 0)
    car_w, car_h = int(0.22 * width), int(0.11 * height)
    for i in range(num_frames):
        t = i / max(num_frames - 1, 1)
        x = int(-0.05 * width + t * (0.85 * width - car_w))
        bob = int(round(1.5 * np.sin(i * 1.7)))
        base = lane + int(0.05 * height) + bob
        f = frames[i]
        x0, x1 = max(x, 0), min(x + car_w, width)
        f[base - car_h:base, x0:x1] = (0.85, 0.12, 0.10)                          # body
        cx0, cx1 = max(x + car_w // 4, 0), min(x + 3 * car_w // 4, width)
        f[base - car_h - car_h * 3 // 4:base - car_h, cx0:cx1] = (0.80, 0.10, 0.08)  # cabin
        wx0, wx1 = max(x + car_w // 3, 0), min(x + 2 * car_w // 3, width)
        f[base - car_h - car_h * 3 // 5:base - car_h - car_h // 8, wx0:wx1] = (0.70, 0.85, 0.95)  # window
        r = car_h // 2
        for wheel_x in (x + car_w // 5, x + 4 * car_w // 5):
            yy, xx = np.ogrid[:height, :width]
            f[(yy - base) ** 2 + (xx - wheel_x) ** 2 <= r * r] = (0.08, 0.08, 0.08)
    return torch.from_numpy(frames)


def write_example_clip(path: str | Path, frames: torch.Tensor | None = None, fps: int = FPS) -> Path:
    """Encode the example frames as a small h264 mp4 (crf 23, preset veryslow) with `write_video`."""
    from .video import write_video

    frames = example_frames() if frames is None else frames
    return write_video(path, frames, fps=fps, codec="h264", codec_options={"crf": "23", "preset": "veryslow"})


if __name__ == "__main__":
    out = write_example_clip(sys.argv[1] if len(sys.argv) > 1 else EXAMPLE_CLIP_NAME)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
