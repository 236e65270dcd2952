"""Measures of a toy-world clip from its pixels: the object's centroid per frame, its colour and
shape class, and trajectory / velocity errors between two clips.

Frames are (F, H, W, 3) float in [0, 1]; positions are pixels (F, 2) as (x, y).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .world import COLOURS, DIRECTIONS


@dataclass
class Track:
    """positions: (F, 2) pixel centroids (a frame with no object repeats its neighbour's).
    found: (F,) bool, whether the frame had object pixels. colour: the palette colour nearest to
    the object's mean colour. shape: ball / square / triangle from the fill ratio of its box.
    area: mean object area in pixels."""

    positions: np.ndarray
    found: np.ndarray
    colour: str
    shape: str
    area: float


def _object_mask(frame: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels far from the frame's background (its median colour): (H, W) bool."""
    bg = np.median(frame.reshape(-1, 3), axis=0)
    return np.abs(frame - bg).max(-1) > threshold


def track_object(frames: torch.Tensor | np.ndarray, threshold: float = 0.25) -> Track:
    """Segment the object in every frame by its distance from the background colour and return
    its centroid (pixels), colour and shape class."""
    f = frames.detach().float().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames, np.float32)
    n, h, w, _ = f.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    pos = np.full((n, 2), np.nan)
    found = np.zeros(n, bool)
    colours, fills, areas = [], [], []
    for i in range(n):
        m = _object_mask(f[i], threshold)
        if m.sum() < 4:
            continue
        found[i] = True
        pos[i] = xs[m].mean(), ys[m].mean()
        colours.append(f[i][m].mean(0))
        r, c = np.nonzero(m)
        box = (r.max() - r.min() + 1) * (c.max() - c.min() + 1)
        fills.append(m.sum() / box)
        areas.append(m.sum())
    if not found.any():
        pos[:] = (w / 2, h / 2)
        return Track(pos, found, "none", "none", 0.0)
    idx = np.arange(n)
    for k in range(2):  # frames without an object: interpolate between neighbours
        pos[:, k] = np.interp(idx, idx[found], pos[found, k])
    mean_rgb = np.mean(colours, 0)
    colour = min(COLOURS, key=lambda c: float(np.sum((np.array(COLOURS[c]) - mean_rgb) ** 2)))
    fill = float(np.median(fills))
    shape = "square" if fill > 0.88 else ("ball" if fill > 0.66 else "triangle")
    return Track(pos, found, colour, shape, float(np.mean(areas)))


def trajectory_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance (pixels) between two (F, 2) position tracks, frame by frame."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b), axis=1).mean())


def velocity_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance (pixels per frame) between the per-frame displacements of two tracks: the
    velocity-profile error, blind to where the motion happens."""
    return float(np.linalg.norm(np.diff(a, axis=0) - np.diff(b, axis=0), axis=1).mean())


def direction_of(positions: np.ndarray) -> str:
    """The vocabulary direction nearest the net displacement of a track (left/right/up/down)."""
    d = np.asarray(positions)[-1] - np.asarray(positions)[0]
    return max(DIRECTIONS, key=lambda k: float(np.dot(DIRECTIONS[k], d)))


def travel(positions: np.ndarray) -> float:
    """Net displacement in pixels between the first and last frame."""
    p = np.asarray(positions)
    return float(np.linalg.norm(p[-1] - p[0]))
