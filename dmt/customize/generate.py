"""Text-to-video sampling with ZeroScope's own scheduler (DDIM, eta 0) and classifier-free
guidance, optionally with customized motions applied for the duration of the call.

Defaults: 40 DDIM steps (leading spacing of the model's scheduler config: 976, 951, ..., 1),
guidance 9, 16 frames of 256x256, seed 0, the pack's negative prompt. The initial noise is drawn
on the CPU from `seed`, so a seed gives the same video on every device (up to kernel numerics).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError, explain_out_of_memory
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..models.grad_modes import evaluation
from ..models.latents import check_size
from ..models.text import DEFAULT_NEGATIVE_PROMPT, encode_prompt
from ..models.interface import kind_of, model_ops
from ..models.wan import Wan
from ..models.wan_ops import encode_prompt as encode_wan_prompt
from ..models.zeroscope import ZeroScope
from ..settings import GENERATE
from ..transfer.schedule import previous_timestep, scheduler_timesteps
from ..transfer.sampler import denoise_step
from .apply import apply_motions

DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_WIDTH = (GENERATE[k].default for k in ("frames", "height", "width"))
DEFAULT_STEPS, DEFAULT_GUIDANCE = GENERATE["steps"].default, GENERATE["guidance"].default  # 40, 9.0


@dataclass(frozen=True)
class GenerateSettings:
    """Sampling settings; ranges and defaults in dmt.settings.GENERATE: num_frames 2..256 (16);
    height/width multiples of 8, 8..2048 px (256); steps 1..1000 (40); guidance_scale 0..50 (9;
    1 = no guidance); seed: initial noise (0)."""

    num_frames: int = DEFAULT_FRAMES
    height: int = DEFAULT_HEIGHT
    width: int = DEFAULT_WIDTH
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    seed: int = 0

    def validate(self) -> None:
        """Raise InputError for a value outside its range (dmt.settings.GENERATE)."""
        check_size(self.width, self.height)
        for name, value in (("frames", self.num_frames), ("steps", self.steps), ("guidance", self.guidance_scale),
                            ("seed", self.seed)):
            GENERATE[name].check(value)


@dataclass
class GenerateResult:
    """frames: (F, H, W, 3) float32 in [0, 1] (None when not decoded). latents: (1, 4, F, H/8, W/8)."""

    frames: torch.Tensor | None
    latents: torch.Tensor


def initial_noise(settings: GenerateSettings, channels: int = 4) -> torch.Tensor:
    """(1, channels, F, H/8, W/8) standard normal noise from settings.seed (CPU, float32)."""
    g = torch.Generator().manual_seed(int(settings.seed))
    shape = (1, channels, settings.num_frames, settings.height // 8, settings.width // 8)
    return torch.randn(shape, generator=g, dtype=torch.float32)


def sample_latents(
    model: ZeroScope,
    text: torch.Tensor,
    negative_text: torch.Tensor,
    settings: GenerateSettings = GenerateSettings(),
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
    stage: str = "generate",
    positions=None,
) -> torch.Tensor:
    """DDIM + CFG sampling from precomputed prompt embeddings (no text encoder needed); on Wan,
    Euler flow sampling on the model's schedule with CFG on the velocity (`_sample_wan`).

    Args:
        text, negative_text: (1, 77, D) embeddings of the prompt and the negative prompt.
    Returns:
        (1, 4, F, H/8, W/8) float32 latents (scaled, as decode_latents expects).
    on_step(stage, i, steps, latent) after every step; check_interrupt before every step.
    positions: Wan only: a dmt.transfer.rope_offsets.PositionMotion whose rotary offsets every
        step runs with (a reference's motion, reused without optimisation: DiTFlow's zero-shot mode).
    """
    settings.validate()
    if kind_of(model) == "wan":
        return _sample_wan(model, text, negative_text, settings, on_step, check_interrupt, stage, positions)
    if positions is not None:
        positions.check_fits(model)  # refuses ZeroScope, naming why
    device = model.device
    x = initial_noise(settings, model.unet.config.in_channels).to(device)
    x = x * float(getattr(model.scheduler, "init_noise_sigma", 1.0))
    timesteps = scheduler_timesteps(model.scheduler, settings.steps)
    text_cfg = torch.cat([text.to(device), negative_text.to(device)])
    with evaluation(), explain_out_of_memory("text-to-video sampling"):
        for i, t in enumerate(timesteps):
            checkpoint(check_interrupt)
            t_prev = previous_timestep(model.scheduler, t, settings.steps)
            x = denoise_step(model, x, t, t_prev, text_cfg, settings.guidance_scale)
            on_step(stage, i + 1, len(timesteps), x)
    return x


def _sample_wan(model: Wan, text: torch.Tensor, negative_text: torch.Tensor, settings: GenerateSettings,
                on_step: OnStep, check_interrupt: CheckInterrupt, stage: str, positions=None) -> torch.Tensor:
    """Wan text-to-video: seeded CPU noise of model.latent_shape (4k + 1 frames, sides multiples
    of 16: refused naming the nearest valid ones), Euler steps down the model's flow schedule,
    v = v_uncond + scale · (v_cond − v_uncond) (scale 1: the conditional velocity alone)."""
    from ..models.wan_ops import predict_velocity
    from ..transfer.attention_flow import patch_grid
    from ..transfer.flow_matching import flow_schedule, sample_flow
    from ..transfer.rope_offsets import rope_offset

    shape = model.latent_shape(settings.num_frames, settings.height, settings.width)
    if positions is not None:
        positions.check_fits(model, patch_grid(shape, model.patch_size))
    g = torch.Generator().manual_seed(int(settings.seed))
    x = torch.randn(shape, generator=g, dtype=torch.float32).to(model.device)
    schedule = flow_schedule(model.scheduler, settings.steps)
    T = float(schedule.num_train_timesteps)
    cond, uncond = text.to(model.device), negative_text.to(model.device)
    scale = float(settings.guidance_scale)

    def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
        v = predict_velocity(model, x, sigma * T, cond)
        if scale == 1:
            return v
        v_uncond = predict_velocity(model, x, sigma * T, uncond)
        return v_uncond + scale * (v - v_uncond)

    def report(_stage: str, i: int, n: int, latent: torch.Tensor) -> None:
        on_step(stage, i, n, latent)

    delta = None if positions is None else positions.delta.to(model.device)
    with evaluation(), explain_out_of_memory("Wan text-to-video sampling"), rope_offset(model.transformer, delta):
        return sample_flow(velocity, x, schedule, on_step=report, check_interrupt=check_interrupt)


def generate_video(
    model: ZeroScope,
    prompt: str,
    *,
    motions=None,
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
    settings: GenerateSettings = GenerateSettings(),
    decode: bool = True,
    vae_slice_size: int = 1,
    positions=None,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
) -> GenerateResult:
    """Text-to-video with ZeroScope or Wan, optionally with customized motions.

    Args:
        prompt: what to show; name a motion by its token (e.g. "a bear doing the sks dance").
        motions: a Motion, or a list of Motions / (Motion, strength) pairs (strength in [0, 2]),
            applied only during this call (the shared model is restored bit-exactly after).
        negative_prompt: the unconditional prompt of CFG.
        settings: frames, size, steps (40), guidance (9), seed.
        decode: also VAE-decode the frames (False: latents only).
        positions: Wan only: a PositionMotion (dmt.transfer.rope_offsets.load_positions) made by a
            transfer with AMFSettings(optimise="positions"): the new video moves like that
            reference with no optimisation (same frame count and size as the reference).
    Returns:
        GenerateResult with frames (F, H, W, 3) in [0, 1] and latents (1, 4, F, h, w).
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("The prompt is empty: describe the video to make.")
    settings.validate()
    with apply_motions(model, motions):
        encode = encode_wan_prompt if kind_of(model) == "wan" else encode_prompt
        text = encode(model, prompt)
        negative = encode(model, negative_prompt or "")
        latents = sample_latents(model, text, negative, settings, on_step, check_interrupt, positions=positions)
    frames = model_ops(model).decode(model, latents, vae_slice_size) if decode else None
    return GenerateResult(frames=frames, latents=latents)
