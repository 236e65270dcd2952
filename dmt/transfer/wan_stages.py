"""The Wan transfer as separate stages, for callers that cache each stage's result (the ComfyUI
nodes): the same stages `transfer_wan` runs in one call, split where ZeroScope's are.

    invert_wan_video → extract_wan_targets → flow_init → wan_guided_sample → decode_latents
    (ZeroScope:  invert_video → extract_targets → low_frequency_init → guided_sample → decode_latents)

Differences from the one-call `transfer_wan`, both because a later stage may choose what an
earlier one has to provide:
- the inversion keeps every step's latent (FlowInversion.trajectory, N latents on the CPU), so the
  targets may guide any share of the steps;
- the targets hold both kinds (attention motion flow and SMM) so that the sampler chooses the
  guidance; the AMF targets cost one transformer pass, the SMM ones one truncated pass per guided
  step, a few per cent of the guided sampling that follows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import InputError, InversionMismatchError
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..models.wan import Wan
from ..models.wan_ops import decode_latents, encode_video
from ..models.wan import TEMPORAL_FACTOR
from .amf_guidance import (GUIDANCES, AMFSampleResult, AMFSettings, AMFTargets, WanSMMTargets, amf_guided_sample,
                           check_same_windows, extract_amf_targets, require_wan)
from .context import ContextOptions, latent_context
from .flow_matching import FlowSchedule, flow_schedule
from .wan_smm import check_inversion_schedule, extract_smm_targets
from .wan_transfer import FlowInversion, check_wan_inversion, invert_wan

#: the stages' context defaults: follow the inversion's (targets) or the targets' (sampling) windows
FROM_INVERSION, FROM_TARGETS = "from inversion", "from targets"

__all__ = ["WanTargets", "invert_wan_video", "extract_wan_targets", "wan_guided_sample", "decode_wan_latents"]


@dataclass
class WanTargets:
    """Both kinds of Wan guidance targets of one reference video, for a sampler that chooses.

    amf: the attention-motion-flow targets (settings' block_index, temperature, window).
    smm: the SMM targets of the first `smm.num_guided` steps (settings' smm_blocks).
    guided_fraction: the share of the schedule's steps guided (the settings' at extraction).
    """

    amf: AMFTargets
    smm: WanSMMTargets
    guided_fraction: float
    kind: ClassVar[str] = "wan"

    @property
    def schedule(self) -> FlowSchedule:
        return self.amf.schedule

    @property
    def num_steps(self) -> int:
        return self.amf.num_steps

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.amf.latent_shape)

    @property
    def num_frames(self) -> int:
        """Latent frames F' of the reference (the video has 4(F' - 1) + 1)."""
        return int(self.amf.latent_shape[2])

    @property
    def model_fingerprint(self) -> str:
        return self.amf.model_fingerprint

    def pick(self, guidance: str) -> AMFTargets | WanSMMTargets:
        """The targets of `guidance` ("amf" or "smm")."""
        if guidance not in GUIDANCES:
            raise InputError(f"Unknown Wan guidance {guidance!r}; choose one of {', '.join(GUIDANCES)}.")
        return self.smm if guidance == "smm" else self.amf


def _check_context(asked: ContextOptions | None | str, follow: str, made: ContextOptions | None,
                   num_latent_frames: int, what: str) -> None:
    """`asked` is `follow` (nothing to check) or windows equal to `made`'s (else InversionMismatchError)."""
    if isinstance(asked, str):
        if asked != follow:
            raise InputError(f"context must be ContextOptions, None or {follow!r}, got {asked!r}.")
        return
    check_same_windows(made, asked, num_latent_frames, what)


def invert_wan_video(model: Wan, frames: torch.Tensor, source_prompt: str, num_steps: int = 50, *,
                     context: ContextOptions | None = None, on_step: OnStep = no_progress,
                     check_interrupt: CheckInterrupt = never_interrupt) -> FlowInversion:
    """Encode the reference clip and Euler-invert it along the `num_steps`-step sampling schedule,
    keeping every step's latent (any guided share can be chosen later).

    Args:
        frames: (F, H, W, 3) float in [0, 1]; F = 4k + 1 >= 5, H and W multiples of 16.
        source_prompt: what the reference shows (may be empty).
        num_steps: the sampling steps the inversion serves (1 to 1000).
        context: temporal context windows (video frames; None: one pass); the targets and the
            sampling follow the inversion's.
        on_step: ("encode", 1, 1, None) then ("inversion", i, N, latent).
    Returns:
        FlowInversion with x0, noisiest and a trajectory of N latents (CPU, float32).
    Memory: the trajectory holds N latents on the CPU: 50 × 3.6 MB at 33 frames of 832×480.
    """
    require_wan(model, "Wan inversion")
    AMFSettings(num_steps=num_steps).validate()  # refuses a step count outside 1-1000, naming the range
    schedule = flow_schedule(model.scheduler, num_steps)
    latent_context(context, TEMPORAL_FACTOR)  # a window too short for Wan is refused before the slow stages
    checkpoint(check_interrupt)
    x0 = encode_video(model, frames)
    if x0.shape[2] < 2:
        raise InputError(f"The reference clip has {frames.shape[0]} frame(s), one latent frame: motion needs at least "
                         f"5 frames (two latent frames) on Wan.")
    on_step("encode", 1, 1, None)
    return invert_wan(model, x0.to(model.device), source_prompt, schedule, keep_steps=schedule.num_steps,
                      context=context, on_step=on_step, check_interrupt=check_interrupt)


def extract_wan_targets(model: Wan, inversion: FlowInversion, settings: AMFSettings = AMFSettings(), *,
                        context: ContextOptions | None | str = FROM_INVERSION, on_step: OnStep = no_progress,
                        check_interrupt: CheckInterrupt = never_interrupt) -> WanTargets:
    """Both guidance targets of `inversion` (from invert_wan_video with this model), with its
    context windows (`context`, when given, must give the same windows: InversionMismatchError).

    settings: num_steps (must be the inversion's), guided_fraction, block_index, temperature,
        window, chunk (AMF) and smm_blocks (SMM) are used; `guidance` is not (the sampler picks).
    on_step: ("targets", i, n, None) per transformer pass.
    Raises InversionMismatchError for a ZeroScope inversion or one of another Wan; InputError for
    unusable settings, a step count other than the inversion's, or an inversion whose kept
    latents do not cover the guided steps.
    """
    require_wan(model, "Wan target extraction")
    settings.validate()
    inversion = check_wan_inversion(model, inversion, "invert the video with the Wan model")
    _check_context(context, FROM_INVERSION, inversion.context, inversion.num_frames, "inversion")
    dataclasses.replace(settings, guidance="amf").check_blocks(model)
    dataclasses.replace(settings, guidance="smm").check_blocks(model)
    schedule = flow_schedule(model.scheduler, settings.num_steps)
    made = 0 if inversion.sigmas is None else inversion.sigmas.numel() - 1
    if made != settings.num_steps:
        raise InputError(f"The inversion was made for {made} sampling steps, the targets ask for {settings.num_steps}; "
                         f"use the same sampling steps in both (or invert again).")
    check_inversion_schedule(inversion.sigmas, schedule)
    # SMM targets for every step the guided share covers, whatever the sampler's iterations.
    smm_settings = dataclasses.replace(settings, iterations=max(settings.iterations, 1))
    amf = extract_amf_targets(model, inversion.x0, inversion.source_prompt, settings, context=inversion.context,
                              on_step=on_step, check_interrupt=check_interrupt)
    smm = extract_smm_targets(model, inversion, smm_settings, on_step=on_step, check_interrupt=check_interrupt)
    return WanTargets(amf=amf, smm=smm, guided_fraction=float(settings.guided_fraction))


def wan_guided_sample(model: Wan, targets: WanTargets, init: torch.Tensor, target_prompt: str,
                      negative_prompt: str, settings: AMFSettings, *,
                      context: ContextOptions | None | str = FROM_TARGETS, on_step: OnStep = no_progress,
                      check_interrupt: CheckInterrupt = never_interrupt) -> AMFSampleResult:
    """amf_guided_sample with the targets of settings.guidance; the targets fix num_steps and
    guided_fraction (settings' values for those two are replaced by the targets') and the context
    windows (`context`, when given, must give the same windows: InversionMismatchError)."""
    require_wan(model, "Wan guided sampling")
    if not isinstance(targets, WanTargets):
        kind = getattr(targets, "kind", None) or "ZeroScope"
        raise InversionMismatchError(f"These targets are {kind} targets, not the Wan targets of 'extract_wan_targets'; "
                                     f"extract them with the Wan model.")
    _check_context(context, FROM_TARGETS, targets.amf.context, targets.num_frames, "target set")
    chosen = dataclasses.replace(settings, num_steps=targets.num_steps, guided_fraction=targets.guided_fraction)
    return amf_guided_sample(model, targets.pick(chosen.guidance), init, target_prompt, negative_prompt, chosen,
                             on_step=on_step, check_interrupt=check_interrupt)


def decode_wan_latents(model: Wan, latent: torch.Tensor, *, on_step: OnStep = no_progress,
                       check_interrupt: CheckInterrupt = never_interrupt) -> torch.Tensor:
    """decode_latents of dmt.models.wan_ops with a cancel point before and ("decode", 1, 1, latent)
    after (Wan's VAE decodes the whole clip in one call). Returns (F, H, W, 3) float32 in [0, 1] on the CPU."""
    checkpoint(check_interrupt)
    frames = decode_latents(model, latent)
    on_step("decode", 1, 1, latent)
    return frames
