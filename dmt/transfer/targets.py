"""Source SMM targets: the space-time features of the inverted video at every guided timestep."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models.grad_modes import evaluation
from ..errors import InputError, InversionMismatchError, explain_out_of_memory
from ..transfer.context import ContextOptions, check_same_schedule, effective_windows
from ..transfer.features import FEATURE_PATHS, spatial_marginal_mean, truncated_unet
from ..transfer.inversion import Inversion
from ..models.zeroscope import ZeroScope, same_model
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..transfer.schedule import Schedule, check_inversion_covers, make_schedule
from ..models.text import encode_prompt


@dataclass
class Targets:
    """Source SMMs φ per guided timestep and activation.

    smms: timestep → activation path → (F, D) float32. With several context windows the SMMs
        are per window (each window's UNet pass sees only its frames), stacked along the frame
        axis in window order: (Σ_k n_k, D); `window_smms` splits them.
    schedule: the sampling schedule (timesteps and guided timesteps) they were made for.
    feature_paths: the captured UNet submodules, in execution order.
    num_frames: frames of the inverted video.
    model_fingerprint: the model that made them.
    context: the temporal context windows (the inversion's; None: one pass).
    latent_shape: (1, 4, F, h, w) of the inversion they came from (None when unknown, e.g. an
        old saved file), so samplers can refuse a latent of another size before any work.
    """

    smms: dict[int, dict[str, torch.Tensor]]
    schedule: Schedule
    feature_paths: tuple[str, ...]
    num_frames: int
    model_fingerprint: str = ""
    context: ContextOptions | None = None
    latent_shape: tuple[int, ...] | None = None

    def windows(self) -> list[range] | None:
        """The context windows in use, or None for one pass."""
        return effective_windows(self.context, self.num_frames)

    def window_smms(self, t: int) -> list[dict[str, torch.Tensor]]:
        """Per window (one entry for one pass), activation path → (n_k, D) source SMM at t."""
        wins = self.windows()
        if wins is None:
            return [self.smms[t]]
        out, start = [], 0
        for w in wins:
            out.append({p: v[start:start + len(w)] for p, v in self.smms[t].items()})
            start += len(w)
        return out


FROM_INVERSION = "from inversion"


def extract_targets(
    model: ZeroScope,
    inversion: Inversion,
    guidance_window: tuple[float, float] = (0.6, 1.0),
    num_steps: int | None = None,
    feature_paths: Sequence[str] = FEATURE_PATHS,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
    context: ContextOptions | None | str = FROM_INVERSION,
) -> Targets:
    """Run the truncated UNet once per guided timestep on the inverted latent (source prompt,
    no CFG) and keep the SMMs of the three activations.

    Args:
        guidance_window: (min, max) fraction of the schedule that is guided; (0.6, 1.0) guides
            the first 40 % of the steps (t = 981 … 601 for 50 steps).
        num_steps: sampling steps (None: the inversion's num_sampling_steps, 50).
        context: the temporal context windows; by default the inversion's. Given explicitly it
            must give the inversion's windows. With several windows the truncated UNet runs once
            per window and the SMMs are kept per window (see Targets).
    Raises:
        InversionMismatchError: the inversion comes from another model, lacks a guided latent or
            was made with other context windows.
    """
    if not same_model(inversion.model_fingerprint, model.fingerprint):
        raise InversionMismatchError(
            "This inversion was made with a different model; invert the video again with this model."
        )
    if isinstance(context, str):
        if context != FROM_INVERSION:
            raise InputError(f"context must be ContextOptions, None or '{FROM_INVERSION}', got '{context}'.")
    else:
        check_same_schedule(inversion.context, context, inversion.num_frames, "inversion")
    wins = effective_windows(inversion.context, inversion.num_frames)
    num_steps = inversion.num_sampling_steps if num_steps is None else num_steps
    schedule = make_schedule(model.scheduler, num_steps, guidance_window)
    if not schedule.guided:
        raise InputError(f"Guidance window {guidance_window} guides no step; widen it (authors: (0.6, 1.0)).")
    check_inversion_covers(model.scheduler, inversion.num_inversion_steps, schedule.guided)
    lacking = [t for t in schedule.guided if t not in inversion.latents]
    if lacking:
        if inversion.num_sampling_steps != num_steps:
            raise InversionMismatchError(
                f"Sampling steps do not match: the inversion was made for {inversion.num_sampling_steps} sampling "
                f"steps, the targets ask for {num_steps}. Use {inversion.num_sampling_steps} sampling steps for the "
                f"targets, or invert the video again with {num_steps} sampling steps."
            )
        kept = sorted((t for t in inversion.latents if t != inversion.noisiest_t), reverse=True)
        span = f"{kept[0]} … {kept[-1]}" if kept else "none"
        raise InversionMismatchError(
            f"The inversion kept no latent at guided timesteps {lacking[:5]}: it keeps only the latents its own "
            f"guidance window needs (guided timesteps {span}). Invert again with guidance window "
            f"{tuple(guidance_window)} (or keep_all=True, which keeps every sampling timestep), or use a window "
            f"inside the kept one."
        )
    text = encode_prompt(model, inversion.source_prompt)
    paths = tuple(feature_paths)
    smms: dict[int, dict[str, torch.Tensor]] = {}
    with explain_out_of_memory("target extraction"), evaluation(), truncated_unet(model, paths) as forward:
        for k, t in enumerate(schedule.guided):
            checkpoint(check_interrupt)
            latent = inversion.latents[t].to(model.device).clone()
            if wins is None:
                feats = forward(latent, t, text)
                smms[t] = {p: spatial_marginal_mean(feats[p], inversion.num_frames)[0] for p in paths}
            else:
                per_window = []
                for w in wins:
                    feats = forward(latent[:, :, w.start:w.stop], t, text)
                    per_window.append({p: spatial_marginal_mean(feats[p], len(w))[0] for p in paths})
                    del feats
                smms[t] = {p: torch.cat([pw[p] for pw in per_window]) for p in paths}
            on_step("targets", k + 1, len(schedule.guided), None)
    return Targets(smms=smms, schedule=schedule, feature_paths=paths, num_frames=inversion.num_frames,
                   model_fingerprint=model.fingerprint, context=inversion.context,
                   latent_shape=tuple(inversion.x0.shape))
