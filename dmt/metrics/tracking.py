"""Point tracking for the Motion-Fidelity score.

A regular grid of points is laid over the first frame and followed through every frame.

Backends:
    ``"lk"`` (default, offline, CPU): OpenCV pyramidal Lucas–Kanade, frame to frame, with a
        forward–backward check: each step is tracked forward (f → f+1) and back again
        (f+1 → f); a point whose round trip misses its start by more than ``fb_threshold``
        pixels, whose LK status is "not found" (e.g. a texture-less patch) or that leaves the
        frame is *lost* from that frame on. Lost points are never silently kept: they are
        flagged in ``Tracks.valid`` and the score only uses points valid in every frame.
    ``"cotracker"`` (optional): Meta's CoTracker, the authors' tracker. Needs the ``cotracker``
        package and a checkpoint file on disk (nothing is downloaded). Like the authors'
        script, every CoTracker point counts as valid (it tracks through occlusions).

Conventions: frames are (F, H, W, 3) RGB, float in [0, 1] (ComfyUI IMAGE) or uint8. Positions are
(x, y) in pixels, the centre of the top-left pixel at (0, 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import cv2
import numpy as np
import torch

from ..errors import InputError
from ..settings import SCORE

BACKENDS = ("lk", "cotracker")
COTRACKER_INSTALL_HINT = (
    "The CoTracker backend needs Meta's `cotracker` package, which is not on PyPI: "
    "pip install git+https://github.com/facebookresearch/co-tracker.git "
    "and pass --cotracker-checkpoint PATH (cotracker_checkpoint=PATH in Python) pointing to a "
    "checkpoint you downloaded (the authors use cotracker_stride_4_wind_8.pth). "
    "Or use the default offline tracker: --backend lk."
)

# A normalised box (x0, y0, x1, y1): fractions of the frame width / height, x1/y1 exclusive.
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Tracks:
    """Tracked grid points of one video.

    Attributes:
        positions: (N, F, 2) float32, (x, y) in pixels. After a point is lost it keeps its last
            tracked position (so there is never a NaN), and ``valid`` is False.
        valid: (N, F) bool, True where the point is reliably tracked. For the LK backend, once
            False it stays False for the rest of the video.
        height, width: frame size in pixels (used to normalise coordinates).
        backend: "lk" or "cotracker".
    """

    positions: torch.Tensor
    valid: torch.Tensor
    height: int
    width: int
    backend: str

    @property
    def num_points(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[1])

    @property
    def complete(self) -> torch.Tensor:
        """(N,) bool: points valid in every frame (the tracklets the score uses)."""
        return self.valid.all(dim=1)

    @property
    def num_complete(self) -> int:
        return int(self.complete.sum())

    def normalized(self, complete_only: bool = True) -> torch.Tensor:
        """Positions in frame units, (x / W, y / H): (N', F, 2) float32, N' = kept points."""
        pos = self.positions[self.complete] if complete_only else self.positions
        return pos / pos.new_tensor([self.width, self.height])


def as_uint8_frames(frames: torch.Tensor | np.ndarray, name: str = "frames") -> np.ndarray:
    """Convert (F, H, W, C) frames (torch/numpy, float in [0, 1] or uint8) to uint8 RGB numpy.

    C may be 3 (RGB), 4 (alpha dropped) or 1 (grey, repeated). Raises InputError (a ValueError) otherwise.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        frames = frames.numpy() if frames.dtype == torch.uint8 else frames.float().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise InputError(
            f"The {name} must be a frame batch of shape (F, H, W, 3) (ComfyUI IMAGE layout); "
            f"got shape {tuple(frames.shape)}."
        )
    if frames.dtype != np.uint8:
        frames = (np.clip(frames.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames[..., :3])


def load_mask(path: str | Path) -> np.ndarray:
    """Read a mask image (PNG etc.; white = foreground) as an (H, W) uint8 array.

    An image with a non-trivial alpha channel uses the alpha; otherwise the grey value.
    Raises InputError (a ValueError) when the file is missing or not an image.
    """
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if Path(path).is_file() else None
    if img is None:
        raise InputError(
            f"Cannot read mask image '{path}': give a PNG/JPEG with the object in white on black."
        )
    if img.dtype != np.uint8:  # 16-bit PNG
        img = (img.astype(np.float32) * 255.0 / max(float(img.max()), 1.0)).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4 and img[..., 3].min() < 255:
        return img[..., 3]
    if img.ndim == 3:
        return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    return img


def mask_box(mask: torch.Tensor | np.ndarray) -> Box:
    """Bounding box of a foreground mask, in normalised frame units.

    Args:
        mask: (H, W) mask (bool, uint8 0..255 or float 0..1); a leading batch dim (ComfyUI MASK
            (B, H, W)) or a trailing channel dim is allowed, the first mask / channel is used.
            Pixels above half intensity are foreground.
    Returns:
        (x0, y0, x1, y1) as fractions of width / height (x1, y1 exclusive), so the same box
        applies to videos of any size (the authors take the box of a first-frame mask).
    Raises:
        InputError (a ValueError): the mask has no foreground pixel.
    """
    m = mask.detach().cpu().float().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    while m.ndim > 2:
        m = m[0] if m.shape[0] <= m.shape[-1] else m[..., 0]
    if m.dtype == np.uint8:
        fg = m > 127
    else:
        fg = m.astype(np.float32) > 0.5
    ys, xs = np.nonzero(fg)
    if xs.size == 0:
        raise InputError(
            "The foreground mask is empty (no pixel above half intensity): draw the object in "
            "white on black, or leave the mask out to score the whole frame."
        )
    h, w = fg.shape
    return (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)


def grid_points(grid: int, height: int, width: int, box: Box | None = None) -> np.ndarray:
    """A grid × grid lattice of cell centres over the frame, optionally only those in ``box``.

    Returns:
        (N, 2) float32 (x, y) pixel positions, row-major (top row first); N ≤ grid².
    """
    SCORE["grid"].check(grid)
    xs = (np.arange(grid) + 0.5) * width / grid - 0.5
    ys = (np.arange(grid) + 0.5) * height / grid - 0.5
    pts = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)
    if box is not None:
        u, v = (pts[:, 0] + 0.5) / width, (pts[:, 1] + 0.5) / height
        inside = (u >= box[0]) & (u < box[2]) & (v >= box[1]) & (v < box[3])
        pts = pts[inside]
        if len(pts) == 0:
            raise InputError(
                f"No point of the {grid}x{grid} grid lies inside the mask's bounding box: "
                "use a larger grid or a larger mask."
            )
    return pts


def _inside(p: np.ndarray, height: int, width: int) -> np.ndarray:
    return (
        np.isfinite(p).all(axis=-1)
        & (p[..., 0] >= 0) & (p[..., 0] <= width - 1)
        & (p[..., 1] >= 0) & (p[..., 1] <= height - 1)
    )


def _track_lk(
    frames: np.ndarray, start: np.ndarray, fb_threshold: float, window: int, levels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frame-to-frame pyramidal LK with a forward–backward check.

    frames: (F, H, W, 3) uint8; start: (N, 2) float32 pixels.
    Returns positions (N, F, 2) float32 and valid (N, F) bool.
    """
    num_frames, height, width = frames.shape[:3]
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    params = dict(
        winSize=(window, window),
        maxLevel=levels,
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01),
    )
    pos = np.repeat(start[:, None, :], num_frames, axis=1).astype(np.float32)
    valid = np.zeros((len(start), num_frames), dtype=bool)
    valid[:, 0] = _inside(start, height, width)
    for f in range(num_frames - 1):
        pos[:, f + 1] = pos[:, f]  # lost points keep their last position
        idx = np.flatnonzero(valid[:, f])
        if idx.size == 0:
            break
        p0 = pos[idx, f].reshape(-1, 1, 2)
        p1, st_fwd, _ = cv2.calcOpticalFlowPyrLK(grey[f], grey[f + 1], p0, None, **params)
        back, st_bwd, _ = cv2.calcOpticalFlowPyrLK(grey[f + 1], grey[f], p1, None, **params)
        p1, back = p1.reshape(-1, 2), back.reshape(-1, 2)
        fb_error = np.linalg.norm(back - p0.reshape(-1, 2), axis=-1)
        ok = (
            (st_fwd.ravel() == 1) & (st_bwd.ravel() == 1)
            & (fb_error < fb_threshold) & _inside(p1, height, width)
        )
        pos[idx[ok], f + 1] = p1[ok]
        valid[idx[ok], f + 1] = True
    return pos, valid


def _track_cotracker(
    frames: np.ndarray, grid: int, box: Box | None, checkpoint: str | Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """CoTracker on a grid (its own grid layout, like the authors). Returns (N, F, 2), (N, F)."""
    try:
        from cotracker.predictor import CoTrackerPredictor
    except ImportError as err:
        raise InputError(COTRACKER_INSTALL_HINT) from err
    if checkpoint is None or not Path(checkpoint).is_file():
        raise InputError(
            f"CoTracker checkpoint not found: {checkpoint!r}. Pass --cotracker-checkpoint PATH "
            "(cotracker_checkpoint=PATH) to a local checkpoint file; nothing is downloaded."
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = CoTrackerPredictor(checkpoint=str(checkpoint)).to(device)
    height, width = frames.shape[1:3]
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float().to(device)  # (1,F,3,H,W) 0..255
    segm = None
    if box is not None:
        segm = torch.zeros(1, 1, height, width, device=device)
        x0, y0 = int(round(box[0] * width)), int(round(box[1] * height))
        x1, y1 = int(round(box[2] * width)), int(round(box[3] * height))
        segm[..., y0:y1, x0:x1] = 1.0
    with torch.no_grad():
        tracks, _visible = model(video, grid_size=grid, segm_mask=segm)
    pos = tracks[0].permute(1, 0, 2).float().cpu().numpy()  # (N, F, 2)
    if pos.shape[0] == 0:
        raise InputError("No CoTracker grid point lies inside the mask box: use a larger grid or mask.")
    return pos, np.ones(pos.shape[:2], dtype=bool)


def track_points(
    frames: torch.Tensor | np.ndarray,
    grid: int = 55,
    mask: torch.Tensor | np.ndarray | Box | None = None,
    backend: str = "lk",
    *,
    fb_threshold: float = 1.0,
    window: int = 21,
    levels: int = 3,
    cotracker_checkpoint: str | Path | None = None,
) -> Tracks:
    """Track a grid of points through every frame.

    Args:
        frames: (F, H, W, 3) float in [0, 1] or uint8, F ≥ 2.
        grid: points per side; grid² points over the whole frame (authors: 55).
        mask: optional foreground mask (H', W') (any size, see ``mask_box``) or a normalised
            box (x0, y0, x1, y1); only grid points inside its bounding box are tracked.
        backend: "lk" (OpenCV Lucas–Kanade, offline) or "cotracker" (needs a local checkpoint).
        fb_threshold: LK only — forward–backward round-trip error (pixels) above which a point
            is lost.
        window, levels: LK only — search window side (pixels) and pyramid levels.
        cotracker_checkpoint: path of a CoTracker checkpoint (backend "cotracker").
    Returns:
        Tracks with positions (N, F, 2) pixels and valid (N, F).
    Raises:
        InputError (a ValueError): bad frame layout, fewer than 2 frames, empty mask, unknown backend,
            CoTracker missing.
    """
    data = as_uint8_frames(frames)
    if data.shape[0] < 2:
        raise InputError(
            f"Tracking needs at least 2 frames, got {data.shape[0]}: pass a video, not a single image."
        )
    if backend not in BACKENDS:
        raise InputError(f"Unknown tracking backend {backend!r}: use one of {', '.join(BACKENDS)}.")
    height, width = data.shape[1:3]
    box = None
    if mask is not None:
        box = tuple(float(v) for v in mask) if isinstance(mask, tuple) else mask_box(mask)
    if backend == "lk":
        pos, valid = _track_lk(data, grid_points(grid, height, width, box), fb_threshold, window, levels)
    else:
        pos, valid = _track_cotracker(data, grid, box, cotracker_checkpoint)
    return Tracks(
        positions=torch.from_numpy(np.ascontiguousarray(pos, dtype=np.float32)),
        valid=torch.from_numpy(valid),
        height=height,
        width=width,
        backend=backend,
    )
