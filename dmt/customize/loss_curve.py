"""The training log: one JSON line per step, and a loss-curve image drawn with OpenCV."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_path


def read_loss_log(path: str | Path) -> list[dict]:
    """Records of a loss.jsonl file (missing file: empty list; a torn last line is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def write_loss_log(path: str | Path, records: list[dict]) -> None:
    """Rewrite the whole log (used at resume, to drop steps after the restored checkpoint)."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def append_loss_log(path: str | Path, record: dict) -> None:
    """Append one record (one JSON line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` values (shorter at the start)."""
    c = np.cumsum(np.insert(values.astype(np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def draw_loss_curve(losses: list[float], width: int = 640, height: int = 360, title: str = "training loss") -> np.ndarray:
    """Loss per step (light) and its moving average (dark) on a white canvas.

    Returns:
        (height, width, 3) uint8 RGB image; the y axis spans [min, max] of the losses (labelled).
    """
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 15, 30, 35
    cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    cv2.putText(img, title, (left, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    y = np.asarray([v for v in losses if np.isfinite(v)], np.float64)
    if len(y) == 0:
        return img
    lo, hi = float(y.min()), float(y.max())
    span = hi - lo if hi > lo else 1.0
    n = len(y)

    def pts(vals: np.ndarray) -> np.ndarray:
        xs = left + (np.arange(len(vals)) / max(n - 1, 1)) * (width - left - right)
        ys = height - bottom - (vals - lo) / span * (height - top - bottom)
        return np.stack([xs, ys], 1).round().astype(np.int32).reshape(-1, 1, 2)

    cv2.polylines(img, [pts(y)], False, (160, 190, 230), 1, cv2.LINE_AA)
    cv2.polylines(img, [pts(moving_average(y, max(1, n // 20)))], False, (20, 60, 160), 2, cv2.LINE_AA)
    for v, yy in ((hi, top + 5), (lo, height - bottom)):
        cv2.putText(img, f"{v:.4g}", (2, yy), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "step 1", (left, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"step {n}", (width - right - 70, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    return img


def save_loss_curve(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (through a temporary file)."""
    path = Path(path)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"Could not encode the loss curve for '{path}'.")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return path
