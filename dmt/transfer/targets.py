"""Source SMM targets: the space-time features of the inverted video at every guided timestep."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models.grad_modes import evaluation
from ..errors import InputError, InversionMismatchError, explain_out_of_memory
from ..transfer.features import FEATURE_PATHS, spatial_marginal_mean, truncated_forward
from ..transfer.inversion import Inversion
from ..models.zeroscope import ZeroScope, same_model
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..transfer.schedule import Schedule, check_inversion_covers, make_schedule
from ..models.text import encode_prompt


@dataclass
class Targets:
    """Source SMMs φ per guided timestep and activation.

    smms: timestep → activation path → (F, D) float32.
    schedule: the sampling schedule (timesteps and guided timesteps) they were made for.
    feature_paths: the captured UNet submodules, in execution order.
    num_frames: frames of the inverted video.
    model_fingerprint: the model that made them.
    latent_shape: (1, 4, F, h, w) of the inversion they came from (None when unknown, e.g. an
        old saved file), so samplers can refuse a latent of another size before any work.
    """

    smms: dict[int, dict[str, torch.Tensor]]
    schedule: Schedule
    feature_paths: tuple[str, ...]
    num_frames: int
    model_fingerprint: str = ""
    latent_shape: tuple[int, ...] | None = None


def extract_targets(
    model: ZeroScope,
    inversion: Inversion,
    guidance_window: tuple[float, float] = (0.6, 1.0),
    num_steps: int | None = None,
    feature_paths: Sequence[str] = FEATURE_PATHS,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
) -> Targets:
    """Run the truncated UNet once per guided timestep on the inverted latent (source prompt,
    no CFG) and keep the SMMs of the three activations.

    Args:
        guidance_window: (min, max) fraction of the schedule that is guided; (0.6, 1.0) guides
            the first 40 % of the steps (t = 981 … 601 for 50 steps).
        num_steps: sampling steps (None: the inversion's num_sampling_steps, 50).
    Raises:
        InversionMismatchError: the inversion comes from another model or lacks a guided latent.
    """
    if not same_model(inversion.model_fingerprint, model.fingerprint):
        raise InversionMismatchError(
            "This inversion was made with a different model; invert the video again with this model."
        )
    num_steps = inversion.num_sampling_steps if num_steps is None else num_steps
    schedule = make_schedule(model.scheduler, num_steps, guidance_window)
    if not schedule.guided:
        raise InputError(f"Guidance window {guidance_window} guides no step; widen it (authors: (0.6, 1.0)).")
    check_inversion_covers(model.scheduler, inversion.num_inversion_steps, schedule.guided)
    lacking = [t for t in schedule.guided if t not in inversion.latents]
    if lacking:
        raise InversionMismatchError(
            f"Sampling steps do not match: the inversion was made for {inversion.num_sampling_steps} sampling "
            f"steps, the targets ask for {num_steps}. Use {inversion.num_sampling_steps} sampling steps for the "
            f"targets, or invert the video again with {num_steps} sampling steps."
        )
    text = encode_prompt(model, inversion.source_prompt)
    paths = tuple(feature_paths)
    smms: dict[int, dict[str, torch.Tensor]] = {}
    with explain_out_of_memory("target extraction"), evaluation():
        for k, t in enumerate(schedule.guided):
            checkpoint(check_interrupt)
            latent = inversion.latents[t].to(model.device).clone()
            feats = truncated_forward(model, latent, t, text, paths)
            smms[t] = {p: spatial_marginal_mean(feats[p], inversion.num_frames)[0] for p in paths}
            on_step("targets", k + 1, len(schedule.guided), None)
    return Targets(smms=smms, schedule=schedule, feature_paths=paths, num_frames=inversion.num_frames,
                   model_fingerprint=model.fingerprint, latent_shape=tuple(inversion.x0.shape))
