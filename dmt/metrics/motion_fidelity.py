"""Motion-Fidelity score (paper eq. 5) and track visualisation.

Definition used here. Track a grid of points in the original video (tracklets τ) and in the
edited video (tracklets τ̃), keeping only points tracked reliably through every frame.
Positions are normalised to frame units (x / W, y / H), so videos of different sizes compare.

Per tracklet and frame step t (F − 1 steps), the displacement d_t is either
  * *moving*: |d_t| ≥ ``static_threshold`` (normalised units per frame), direction u_t = d_t/|d_t|;
  * *static*: |d_t| < ``static_threshold``; a static step has no direction.
The correlation of two tracklets is the mean over steps of a per-step agreement
  s_t = u_t · ũ_t (both moving, in [-1, 1]),  1 (both static),  0 (one static, one moving),
so corr(τ, τ̃) ∈ [-1, 1] and is never NaN (a zero displacement is not divided by its length).

  edited_to_original = mean over edited tracklets τ̃ of max_τ corr(τ, τ̃)
  original_to_edited = mean over original tracklets τ of max_τ̃ corr(τ, τ̃)
  combined           = (edited_to_original + original_to_edited) / 2      ∈ [-1, 1]
  paper_sum          =  edited_to_original + original_to_edited            ∈ [-2, 2]

The paper (eq. 5) sums the two directions (``paper_sum``); ``combined`` is their mean, so that a
perfect match is 1. The authors' public script reports only ``edited_to_original`` (its
"average_score"), does not special-case static steps (0/0 → NaN there), and subtracts an identity
matrix from the similarity matrix before the max, which stops a tracklet from matching the
tracklet that started at the same grid position (for identical videos that scores the best
*other* tracklet). We treat that as an artefact and do not reproduce it: with dropped lost points
the two tracklet lists are no longer index-aligned anyway.

Two fully static videos score 1 (every step of every tracklet agrees: nothing moves); a static
video against a moving one scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import InputError
from ..settings import SCORE
from ..metrics.tracking import Box, Tracks, as_uint8_frames, track_points

DEFAULT_STATIC_THRESHOLD: float = SCORE["static_threshold"].default  # 1e-3
"""Displacements shorter than this (frame units per frame; 0.58 px at 576 wide) are static."""


@dataclass
class MotionFidelity:
    """Result of ``motion_fidelity`` / ``score_tracks``. Scores are plain floats, never NaN.

    Attributes:
        edited_to_original: mean over edited tracklets of the best corr with an original one, [-1, 1].
        original_to_edited: mean over original tracklets of the best corr with an edited one, [-1, 1].
        combined: mean of the two directions, [-1, 1] (1 = the same motion).
        paper_sum: sum of the two directions as in the paper's eq. 5, [-2, 2].
        num_original, num_edited: tracklets used (valid in every frame) on each side.
        original_tracks, edited_tracks: all tracked points, lost ones included (flagged).
        static_threshold: the static/moving threshold used (frame units per frame).
    """

    edited_to_original: float
    original_to_edited: float
    combined: float
    paper_sum: float
    num_original: int
    num_edited: int
    original_tracks: Tracks
    edited_tracks: Tracks
    static_threshold: float

    def to_dict(self) -> dict:
        """JSON-ready summary (no tensors)."""
        o, e = self.original_tracks, self.edited_tracks
        return {
            "combined": self.combined,
            "edited_to_original": self.edited_to_original,
            "original_to_edited": self.original_to_edited,
            "paper_sum": self.paper_sum,
            "num_original_tracklets": self.num_original,
            "num_edited_tracklets": self.num_edited,
            "num_original_points": o.num_points,
            "num_edited_points": e.num_points,
            "num_frames": o.num_frames,
            "original_size": [o.width, o.height],
            "edited_size": [e.width, e.height],
            "backend": o.backend,
            "static_threshold": self.static_threshold,
            "definition": "combined = (edited_to_original + original_to_edited) / 2; "
            "paper_sum = edited_to_original + original_to_edited (paper eq. 5)",
        }


def step_features(tracklets: torch.Tensor, static_threshold: float = DEFAULT_STATIC_THRESHOLD) -> torch.Tensor:
    """Per-step motion code of each tracklet, so that corr is one dot product.

    Args:
        tracklets: (N, F, 2) positions in normalised frame units.
    Returns:
        (N, 3 (F − 1)) float32: per step [u_x, u_y, 0] when moving, [0, 0, 1] when static.
        (a · b) / (F − 1) is the correlation defined in the module docstring.
    """
    steps = (tracklets[:, 1:] - tracklets[:, :-1]).float()  # (N, F-1, 2)
    length = steps.norm(dim=-1, keepdim=True)
    static = length < static_threshold
    unit = torch.where(static, torch.zeros_like(steps), steps / length.clamp_min(1e-12))
    return torch.cat([unit, static.float()], dim=-1).flatten(1)


def similarity_matrix(
    edited: torch.Tensor, original: torch.Tensor, static_threshold: float = DEFAULT_STATIC_THRESHOLD
) -> torch.Tensor:
    """corr(τ̃_i, τ_j) for all pairs: (N_edited, N_original) in [-1, 1].

    Args:
        edited, original: (N, F, 2) tracklets in normalised frame units, same F.
    """
    steps = edited.shape[1] - 1
    sim = step_features(edited, static_threshold) @ step_features(original, static_threshold).T
    return (sim / steps).clamp(-1.0, 1.0)


def _best_matches(
    edited: torch.Tensor, original: torch.Tensor, static_threshold: float, chunk: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column maxima of the similarity matrix, built in row chunks to bound memory.

    Returns (best original match per edited tracklet (N_e,), best edited match per original (N_o,)).
    """
    steps = edited.shape[1] - 1
    fe = step_features(edited, static_threshold)
    fo = step_features(original, static_threshold)
    row_best = []
    col_best = torch.full((fo.shape[0],), -1.0)
    for start in range(0, fe.shape[0], chunk):
        sim = ((fe[start:start + chunk] @ fo.T) / steps).clamp(-1.0, 1.0)
        row_best.append(sim.max(dim=1).values)
        col_best = torch.maximum(col_best, sim.max(dim=0).values)
    return torch.cat(row_best), col_best


def score_tracks(
    original: Tracks, edited: Tracks, static_threshold: float = DEFAULT_STATIC_THRESHOLD
) -> MotionFidelity:
    """Motion-Fidelity score of two already tracked videos (see the module docstring).

    Raises:
        InputError (a ValueError): different frame counts, or no point tracked through every frame.
    """
    if original.num_frames != edited.num_frames:
        raise InputError(
            f"The original video has {original.num_frames} frames but the edited one has "
            f"{edited.num_frames}: motion fidelity compares frame by frame, so trim or resample one "
            "of them to the same frame count."
        )
    for name, tracks in (("original", original), ("edited", edited)):
        if tracks.num_complete == 0:
            raise InputError(
                f"No point of the {name} video could be tracked through all {tracks.num_frames} "
                f"frames ({tracks.num_points} grid points tried). The video may be texture-less or "
                "change too fast between frames: try a denser grid, a larger mask box or no mask, "
                "or the CoTracker backend."
            )
    e2o, o2e = _best_matches(edited.normalized(), original.normalized(), static_threshold)
    e2o_mean, o2e_mean = float(e2o.mean()), float(o2e.mean())
    return MotionFidelity(
        edited_to_original=e2o_mean,
        original_to_edited=o2e_mean,
        combined=(e2o_mean + o2e_mean) / 2.0,
        paper_sum=e2o_mean + o2e_mean,
        num_original=original.num_complete,
        num_edited=edited.num_complete,
        original_tracks=original,
        edited_tracks=edited,
        static_threshold=static_threshold,
    )


def motion_fidelity(
    original: torch.Tensor | np.ndarray,
    edited: torch.Tensor | np.ndarray,
    grid: int = 55,
    mask: torch.Tensor | np.ndarray | Box | None = None,
    backend: str = "lk",
    *,
    static_threshold: float = DEFAULT_STATIC_THRESHOLD,
    cotracker_checkpoint: str | Path | None = None,
    fb_threshold: float = 1.0,
) -> MotionFidelity:
    """Track both videos on a grid and score how well the edited one keeps the original's motion.

    Args:
        original, edited: (F, H, W, 3) frames, float in [0, 1] or uint8; the same F (≥ 2),
            sizes may differ.
        grid: points per side (grid² points; the authors use 55).
        mask: optional first-frame foreground mask (any resolution) or a normalised box
            (x0, y0, x1, y1); only grid points inside its bounding box are tracked, in both videos.
        backend: "lk" (offline OpenCV Lucas–Kanade) or "cotracker" (needs ``cotracker_checkpoint``).
        static_threshold: displacement (frame units per frame) below which a step is static.
        fb_threshold: LK forward–backward error (pixels) above which a point is lost.
    Returns:
        MotionFidelity (scores, tracklet counts, the tracks).
    Raises:
        InputError (a ValueError): fewer than 2 frames, frame counts differ, bad mask, nothing trackable.
    """
    SCORE["grid"].check(grid)
    SCORE["static_threshold"].check(static_threshold)
    videos = {"original": as_uint8_frames(original, "original video"),
              "edited": as_uint8_frames(edited, "edited video")}
    for name, frames in videos.items():
        if frames.shape[0] < 2:
            raise InputError(
                f"The {name} video has {frames.shape[0]} frame(s); motion fidelity needs at least 2."
            )
    if videos["original"].shape[0] != videos["edited"].shape[0]:
        raise InputError(
            f"The original video has {videos['original'].shape[0]} frames but the edited one has "
            f"{videos['edited'].shape[0]}: motion fidelity compares frame by frame, so trim or "
            "resample one of them to the same frame count."
        )
    tracks = {
        name: track_points(frames, grid, mask, backend, fb_threshold=fb_threshold,
                           cotracker_checkpoint=cotracker_checkpoint)
        for name, frames in videos.items()
    }
    return score_tracks(tracks["original"], tracks["edited"], static_threshold)


def _point_colours(tracks: Tracks) -> np.ndarray:
    """(N, 3) uint8 RGB per point from its first-frame position (hue ← x, brightness ← y), so
    points that start at the same place have the same colour in both videos."""
    start = tracks.positions[:, 0].numpy() / np.array([tracks.width, tracks.height], np.float32)
    hsv = np.empty((len(start), 1, 3), np.uint8)
    hsv[:, 0, 0] = np.clip(start[:, 0], 0, 1) * 170
    hsv[:, 0, 1] = 255
    hsv[:, 0, 2] = 255 - np.clip(start[:, 1], 0, 1) * 100
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[:, 0]


def draw_tracks(
    frames: torch.Tensor | np.ndarray,
    tracks: Tracks,
    trail: int = 8,
    max_points: int = 900,
    complete_only: bool = True,
) -> torch.Tensor:
    """Draw each point's recent trail and current position on the frames.

    Args:
        frames: (F, H, W, 3) the frames the tracks were computed on (float [0, 1] or uint8).
        tracks: their Tracks.
        trail: how many past frames each trail shows.
        max_points: at most this many points are drawn (evenly subsampled).
        complete_only: draw only points valid in every frame (those the score uses);
            otherwise every point is drawn while it is valid.
    Returns:
        (F, H, W, 3) float32 in [0, 1].
    """
    canvas = as_uint8_frames(frames).copy()
    keep = tracks.complete if complete_only else torch.ones(tracks.num_points, dtype=torch.bool)
    idx = torch.nonzero(keep).flatten().numpy()
    if len(idx) > max_points:
        idx = idx[np.linspace(0, len(idx) - 1, max_points).round().astype(int)]
    pos = tracks.positions.numpy()
    valid = tracks.valid.numpy()
    colours = _point_colours(tracks)
    for f in range(min(len(canvas), tracks.num_frames)):
        img = canvas[f]
        for n in idx:
            if not valid[n, f]:
                continue
            first = max(0, f - trail)
            seg = pos[n, first:f + 1][valid[n, first:f + 1]]
            colour = tuple(int(c) for c in colours[n])
            if len(seg) > 1:
                cv2.polylines(img, [np.round(seg).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
            cv2.circle(img, (int(round(pos[n, f, 0])), int(round(pos[n, f, 1]))), 2, colour, -1, cv2.LINE_AA)
    return torch.from_numpy(canvas).float() / 255.0


def draw_comparison(
    original: torch.Tensor | np.ndarray,
    edited: torch.Tensor | np.ndarray,
    result: MotionFidelity,
    trail: int = 8,
    max_points: int = 900,
) -> torch.Tensor:
    """Side-by-side visualisation: original | edited, tracks drawn, the score written on top.

    The edited half is resized to the original's height when they differ.
    Returns:
        (F, H, W_original + gap + W_edited', 3) float32 in [0, 1].
    """
    left = as_uint8_frames(draw_tracks(original, result.original_tracks, trail, max_points))
    right = as_uint8_frames(draw_tracks(edited, result.edited_tracks, trail, max_points))
    height = left.shape[1]
    if right.shape[1] != height:
        width = max(1, round(right.shape[2] * height / right.shape[1]))
        right = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in right])
    gap = np.full((left.shape[0], height, 4, 3), 255, np.uint8)
    out = np.ascontiguousarray(np.concatenate([left, gap, right], axis=2))
    label = f"motion fidelity {result.combined:.3f}"
    scale = max(0.4, height / 640)
    for img in out:
        for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(img, label, (6, int(20 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        colour, thickness, cv2.LINE_AA)
    return torch.from_numpy(out).float() / 255.0
