"""The toy world: one coloured shape moving over a plain background along a known trajectory.

Clips are (F, H, W, 3) float32 RGB in [0, 1] (the library's frame layout). Positions are object
centres in pixels, (F, 2) as (x, y) with x to the right and y downwards.

Two kinds of motion:
* **vocabulary** motions, named by the captions: a direction (left, right, up, down) and a speed
  (slowly: a quarter of the frame over the clip, quickly: half of it). These are the training data.
* **held-out** motions (circle, zigzag, uturn, stopgo, bounce): never named by a caption and never
  trained on; transferring or learning one is evidence of the method, not of the training set.
* **wander** motions: a random walk with inertia (each frame turns by a random angle and changes
  speed by a random factor), captioned by the subject only ("a red ball"): optional training
  data for a broader motion prior (`toyworld train --wander-clips N`; none in the bundled model).
  Not one of the held-out families: no constant turning (circle), no period-2 reversal (zigzag),
  no parabola (bounce), no stop; each wander step draws a new turn and speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.15, 0.80, 0.20),
    "blue": (0.20, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.15),
}
SHAPES = ("ball", "square", "triangle")
BACKGROUND = (0.12, 0.12, 0.12)
DIRECTIONS: dict[str, tuple[float, float]] = {"left": (-1.0, 0.0), "right": (1.0, 0.0),
                                              "up": (0.0, -1.0), "down": (0.0, 1.0)}
#: the direction a clip played backwards moves in
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
#: total travel over the clip, as a fraction of the frame size
SPEEDS: dict[str, float] = {"slowly": 0.25, "quickly": 0.5}
HELD_OUT = ("circle", "zigzag", "uturn", "stopgo", "bounce")
WANDER = "wander"
#: wander motions: speed per frame (fraction of the frame) drawn from this range at the start,
#: then multiplied by exp(N(0, WANDER_SPEED_JITTER)) each frame; heading turns by N(0, WANDER_TURN)
#: radians each frame; the path reflects off the borders (MARGIN).
WANDER_SPEED = (0.03, 0.14)
WANDER_SPEED_JITTER = 0.3
WANDER_TURN = 0.6
#: object radius as a fraction of the frame's smaller side
RADIUS = 0.13
#: the centre stays this far (fraction of the frame) from the borders
MARGIN = 0.16
#: trail (optional, `trail=True`): a grey comet tail behind the object, pointing against its
#: velocity (central difference of the positions), so that one frame shows which way the object
#: moves. Its grey is below the segmentation threshold of `measure.track_object` (0.25 from the
#: background), so centroids, colour and shape classes ignore it. Length from the centre in object
#: radii; width tapers from TRAIL_WIDTH radii at the centre to 0.4 of it at the end; no tail
#: where the object moves less than TRAIL_MIN_SPEED pixels per frame.
TRAIL_GREY = 0.32
TRAIL_LENGTH = 2.6
TRAIL_WIDTH = 1.4
TRAIL_MIN_SPEED = 0.3
#: clock (optional, `clock=True`): a grey bar along the bottom CLOCK_ROWS rows that grows with the
#: frame index (frame i of F covers (i + 1) / F of the width, anti-aliased end), the same in every
#: clip, in TRAIL_GREY (so the measure ignores it), shown only where the frame is plain background
#: (the object, its edge included, covers it). Every frame shows when in the clip it is, which
#: ZeroScope's UNet can otherwise learn only through its temporal convolutions (its temporal
#: attention has no positions).
CLOCK_ROWS = 6


@dataclass
class Clip:
    """frames: (F, H, W, 3) float32 in [0, 1]. positions: (F, 2) float32 pixel centres (x, y).
    caption: the training caption (names the motion only for vocabulary motions).
    motion: "left/quickly"-style name for vocabulary motions, else the held-out name."""

    frames: torch.Tensor
    positions: torch.Tensor
    caption: str
    colour: str
    shape: str
    motion: str
    info: dict = field(default_factory=dict)


def subject(colour: str, shape: str) -> str:
    """'a red ball'."""
    return f"a {colour} {shape}"


def vocabulary_caption(colour: str, shape: str, direction: str, speed: str) -> str:
    """'a red ball moving left quickly'."""
    return f"{subject(colour, shape)} moving {direction} {speed}"


# ---- trajectories, in normalised coordinates (0..1), shape (F, 2) -------------------------------

def vocabulary_path(direction: str, speed: str, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Straight motion at constant speed, placed at random so the whole path stays inside."""
    d = np.array(DIRECTIONS[direction])
    travel = SPEEDS[speed]
    t = np.linspace(0.0, 1.0, num_frames)[:, None]
    lo, hi = MARGIN, 1.0 - MARGIN
    start = rng.uniform(lo, hi, size=2)
    for axis in (0, 1):
        if d[axis] > 0:
            start[axis] = rng.uniform(lo, hi - travel)
        elif d[axis] < 0:
            start[axis] = rng.uniform(lo + travel, hi)
    return start + t * d * travel


def held_out_path(name: str, num_frames: int, rng: np.random.Generator, *, canonical: bool = False,
                  cycles: int = 1) -> np.ndarray:
    """One of HELD_OUT, with a random placement, orientation and phase.

    canonical: fixed orientation and phase (clockwise circle starting at the right, zigzag to the
    right, ...), only the placement random: one well-defined motion to teach or compare against.
    cycles: revolutions of the circle over the clip (long videos); 1 for the others."""
    t = np.linspace(0.0, 1.0, num_frames)
    sign = 1.0 if canonical else rng.choice([-1.0, 1.0])
    if cycles != 1 and name != "circle":
        raise ValueError("Only the circle repeats smoothly (cycles > 1); the other motions would jump.")
    if name == "circle":  # `cycles` revolutions, cw or ccw, radius 0.22
        path = _circle(num_frames, rng, sign, 0.0 if canonical else rng.uniform(0, 2 * math.pi), cycles)
    elif name == "zigzag":  # across the frame, up and down on alternate frames
        x = 0.5 + sign * (t - 0.5) * 0.5
        y = 0.5 + rng.uniform(-0.05, 0.05) + 0.12 * (-1.0) ** np.arange(num_frames)
        path = np.stack([x, y], 1)
    elif name == "uturn":  # out and back along a U
        s = np.sin(math.pi * t)
        x = 0.5 + sign * (0.45 * s - 0.2)
        y = 0.3 + rng.uniform(-0.03, 0.03) + 0.4 * t
        path = np.stack([x, y], 1)
    elif name == "stopgo":  # move, stop, move on
        prof = np.concatenate([np.linspace(0, 0.5, 4), [0.5, 0.5], np.linspace(0.5, 1.0, num_frames - 4)[1:]])
        prof = np.interp(np.linspace(0, len(prof) - 1, num_frames), np.arange(len(prof)), prof)
        x = 0.5 + sign * (prof - 0.5) * 0.55
        y = 0.5 + rng.uniform(-0.15, 0.15) + 0 * t
        path = np.stack([x, y], 1)
    elif name == "bounce":  # drift sideways while bouncing on a floor
        x = 0.5 + sign * (t - 0.5) * 0.4
        y = 0.78 - 0.5 * np.abs(np.sin(math.pi * 1.5 * t + 0.25))
        path = np.stack([x, y], 1)
    else:
        raise ValueError(f"Unknown held-out motion '{name}'; choose one of {', '.join(HELD_OUT)}.")
    return np.clip(path, MARGIN * 0.8, 1 - MARGIN * 0.8)


def wander_path(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random walk with inertia (see WANDER_*), reflected into [MARGIN, 1 - MARGIN]. (F, 2)."""
    lo, hi = MARGIN, 1.0 - MARGIN
    pos = rng.uniform(lo, hi, size=2)
    heading = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(*WANDER_SPEED)
    path = [pos.copy()]
    for _ in range(num_frames - 1):
        pos = pos + speed * np.array([math.cos(heading), math.sin(heading)])
        for axis in (0, 1):  # reflect off the borders
            if pos[axis] < lo:
                pos[axis] = 2 * lo - pos[axis]
            elif pos[axis] > hi:
                pos[axis] = 2 * hi - pos[axis]
        path.append(pos.copy())
        heading += rng.normal(0.0, WANDER_TURN)
        speed = float(np.clip(speed * math.exp(rng.normal(0.0, WANDER_SPEED_JITTER)), 0.5 * WANDER_SPEED[0],
                              1.5 * WANDER_SPEED[1]))
    return np.clip(np.array(path), lo, hi)


def _circle(num_frames: int, rng: np.random.Generator, sign: float, phase: float, cycles: int) -> np.ndarray:
    c = 0.5 + rng.uniform(-0.04, 0.04, size=2)
    ang = phase + sign * 2 * math.pi * cycles * np.arange(num_frames) / num_frames
    return np.stack([c[0] + 0.22 * np.cos(ang), c[1] + 0.22 * np.sin(ang)], 1)


# ---- rendering ----------------------------------------------------------------------------------

def velocities(positions: np.ndarray) -> np.ndarray:
    """Per-frame velocity (F, 2) in pixels per frame: central differences, one-sided at the ends."""
    p = np.asarray(positions, np.float64)
    if len(p) < 2:
        return np.zeros_like(p)
    return np.gradient(p, axis=0)


def _tail_alpha(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, v: np.ndarray, r: float) -> np.ndarray:
    """Coverage (H, W) in [0, 1] of the comet tail behind a centre moving with velocity v."""
    speed = float(np.hypot(*v))
    if speed < TRAIL_MIN_SPEED:
        return np.zeros_like(xs)
    u = -v / speed  # pointing backwards, along the way the object came
    along = (xs - cx) * u[0] + (ys - cy) * u[1]
    across = np.abs(-(xs - cx) * u[1] + (ys - cy) * u[0])
    length = TRAIL_LENGTH * r
    frac = np.clip(along / length, 0.0, 1.0)
    half = 0.5 * TRAIL_WIDTH * r * (1.0 - 0.6 * frac)
    d = np.maximum(across - half, np.maximum(-along, along - length))
    return np.clip(0.5 - d, 0.0, 1.0)


def render(positions: np.ndarray, colour: str, shape: str, height: int, width: int,
           trail: bool = False, clock: bool = False) -> torch.Tensor:
    """Draw the shape at each pixel position (F, 2) with an anti-aliased edge; trail: a grey tail
    behind it (see TRAIL_GREY); clock: the frame-index bar (see CLOCK_ROWS).

    Returns (F, H, W, 3) float32 in [0, 1]."""
    r = RADIUS * min(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    frames = np.empty((len(positions), height, width, 3), np.float32)
    bg, fg = np.array(BACKGROUND, np.float32), np.array(COLOURS[colour], np.float32)
    vel = velocities(positions)
    for i, (cx, cy) in enumerate(positions):
        if trail:
            t = _tail_alpha(xs, ys, cx, cy, vel[i], r)[..., None]
            base = bg * (1 - t) + np.float32(TRAIL_GREY) * t
        else:
            base = bg
        dx, dy = xs - cx, ys - cy
        if shape == "ball":
            d = np.hypot(dx, dy) - r
        elif shape == "square":
            d = np.maximum(np.abs(dx), np.abs(dy)) - 0.9 * r
        elif shape == "triangle":  # pointing up, circumradius 1.3 r
            rin = 0.65 * r
            d = np.maximum.reduce([dy - rin, -0.866 * dx - 0.5 * dy - rin, 0.866 * dx - 0.5 * dy - rin])
        else:
            raise ValueError(f"Unknown shape '{shape}'; choose one of {', '.join(SHAPES)}.")
        a = np.clip(0.5 - d, 0.0, 1.0)[..., None]
        frames[i] = base * (1 - a) + fg * a
        if clock:
            c = np.clip((i + 1) / len(positions) * width - xs[-CLOCK_ROWS:] + 0.5, 0.0, 1.0)[..., None]
            low = frames[i, -CLOCK_ROWS:]
            plain = np.abs(low - bg).max(-1, keepdims=True) <= 1e-3
            frames[i, -CLOCK_ROWS:] = np.where(plain, bg * (1 - c) + np.float32(TRAIL_GREY) * c, low)
    return torch.from_numpy(frames)


def make_clip(
    motion: str,
    colour: str,
    shape: str,
    *,
    num_frames: int = 8,
    height: int = 64,
    width: int = 64,
    seed: int = 0,
    canonical: bool = False,
    cycles: int = 1,
    trail: bool = False,
    clock: bool = False,
) -> Clip:
    """One clip. motion: "direction/speed" (e.g. "left/quickly"), "wander" or a held-out name
    ("circle"); canonical / cycles: see `held_out_path`; trail: draw the grey comet tail (a model
    trained with it, `ToyConfig.trail`, expects it in its sources); clock: the frame-index bar
    (`ToyConfig.clock`)."""
    rng = np.random.default_rng(seed)
    if "/" in motion:
        direction, speed = motion.split("/")
        path = vocabulary_path(direction, speed, num_frames, rng)
        caption = vocabulary_caption(colour, shape, direction, speed)
    elif motion == WANDER:
        path = wander_path(num_frames, rng)
        caption = subject(colour, shape)
    else:
        path = held_out_path(motion, num_frames, rng, canonical=canonical, cycles=cycles)
        caption = subject(colour, shape)
    pix = (path * np.array([width, height])).astype(np.float32)
    return Clip(frames=render(pix, colour, shape, height, width, trail, clock), positions=torch.from_numpy(pix),
                caption=caption, colour=colour, shape=shape, motion=motion, info={"trail": trail, "clock": clock})


VOCABULARY_MOTIONS = tuple(f"{d}/{s}" for d in DIRECTIONS for s in SPEEDS)


def random_vocabulary_clip(rng: np.random.Generator, num_frames: int = 8, height: int = 64,
                           width: int = 64, trail: bool = False, clock: bool = False) -> Clip:
    """A training clip: random colour, shape, vocabulary motion and placement."""
    return make_clip(str(rng.choice(VOCABULARY_MOTIONS)), str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)),
                     num_frames=num_frames, height=height, width=width, seed=int(rng.integers(2**31)), trail=trail,
                     clock=clock)


def random_wander_clip(rng: np.random.Generator, num_frames: int = 8, height: int = 64,
                       width: int = 64, trail: bool = False, clock: bool = False) -> Clip:
    """A training clip with a wander motion (random colour, shape and walk), captioned "a red ball"."""
    return make_clip(WANDER, str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)), num_frames=num_frames,
                     height=height, width=width, seed=int(rng.integers(2**31)), trail=trail, clock=clock)


def reversed_clip(clip: Clip, height: int, width: int) -> Clip:
    """The clip played backwards, re-rendered (a trail must point the other way, a clock must still
    run forwards; without either this equals flipping the frames). A vocabulary clip's caption names the opposite direction."""
    pos = clip.positions.flip(0)
    caption = clip.caption
    if "/" in clip.motion:
        d, sp = clip.motion.split("/")
        d = OPPOSITE[d]
        caption, motion = vocabulary_caption(clip.colour, clip.shape, d, sp), f"{d}/{sp}"
    else:
        motion = clip.motion
    trail, clock = bool(clip.info.get("trail", False)), bool(clip.info.get("clock", False))
    return Clip(frames=render(pos.numpy(), clip.colour, clip.shape, height, width, trail, clock), positions=pos,
                caption=caption, colour=clip.colour, shape=clip.shape, motion=motion, info=dict(clip.info))
