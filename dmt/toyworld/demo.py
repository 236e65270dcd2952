"""The newcomer's demo on the bundled toy model: a held-out motion (one the model never saw, named by
no caption: move, stop, move on) carried from a red ball onto a blue square, with the input | output video side by side
and the Motion-Fidelity score of the output against the input.

Used by `dmt-motion demo`, docs/make_readme_figure.py and the toy-world ComfyUI example's clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..io.progress import OnStep, no_progress
from ..metrics.motion_fidelity import motion_fidelity
from ..models.zeroscope import ZeroScope, load_zeroscope
from ..transfer.pipeline import transfer
from .card import BUNDLED_MODEL, world_options
from .evaluate import toy_transfer_kwargs
from .measure import track_object, trajectory_error
from .world import make_clip, subject

DEMO_MOTION, DEMO_SOURCE, DEMO_TARGET = "stopgo", ("red", "ball"), ("blue", "square")
DEMO_CLIP_SEED = 5_003  # a G2 source clip (see evaluate.transfer_pairs)
DEMO_CLIP_NAME = "dmt_toyworld_stopgo.mp4"


@dataclass
class DemoResult:
    """source, output: (F, H, W, 3) in [0, 1]; side_by_side: (F, H, 2W + 4, 3) input | output.
    fidelity: Motion-Fidelity (combined, [-1, 1]); error_px: mean distance between the two objects'
    centroids per frame; colour: the output object's colour class."""

    source: torch.Tensor
    output: torch.Tensor
    side_by_side: torch.Tensor
    fidelity: float
    error_px: float
    colour: str
    source_prompt: str
    target_prompt: str


def demo_source() -> tuple[torch.Tensor, str]:
    """The demo's input clip (a red ball that moves, stops and moves on, 8 frames of 64x64, drawn as
    the bundled model's world is) and its prompt."""
    clip = make_clip(DEMO_MOTION, *DEMO_SOURCE, seed=DEMO_CLIP_SEED, **world_options(BUNDLED_MODEL))
    return clip.frames, subject(*DEMO_SOURCE)


def side_by_side(a: torch.Tensor, b: torch.Tensor, gap: int = 4) -> torch.Tensor:
    """(F, H, W, 3) twice → (F, H, Wa + gap + Wb, 3) with a white gap."""
    bar = torch.ones(a.shape[0], a.shape[1], gap, 3)
    return torch.cat([a, bar, b.to(a.dtype)], 2)


def run_demo(model: ZeroScope | None = None, on_step: OnStep = no_progress, preset: str = "fast",
             seed: int = 0) -> DemoResult:
    """Transfer the demo clip's motion onto "a blue square" with the toy model's defaults."""
    model = model or load_zeroscope(BUNDLED_MODEL, "float32", "cpu")
    frames, source_prompt = demo_source()
    target = subject(*DEMO_TARGET)
    out = transfer(model, frames, source_prompt, target, seed=seed, on_step=on_step,
                   **toy_transfer_kwargs(preset)).frames
    ts, to = track_object(frames), track_object(out)
    return DemoResult(source=frames, output=out, side_by_side=side_by_side(frames, out),
                      fidelity=motion_fidelity(frames, out, grid=16).combined,
                      error_px=trajectory_error(to.positions, ts.positions), colour=to.colour,
                      source_prompt=source_prompt, target_prompt=target)
