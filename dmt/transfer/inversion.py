"""DDIM inversion of a video's latents with the source prompt (no CFG)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models.grad_modes import evaluation
from ..transfer.context import ContextOptions, fused_prediction
from ..transfer.ddim import ddim_step, inversion_step
from ..errors import explain_out_of_memory
from ..models.latents import encode_frames
from ..models.zeroscope import ZeroScope
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..transfer.schedule import inversion_timesteps, make_schedule, scheduler_timesteps
from ..models.text import AUTHORS_PROMPT_PREFIX, encode_prompt, with_prefix
from ..models.unet import predict_noise

from ..settings import TRANSFER

DEFAULT_INVERSION_STEPS: int = TRANSFER["inversion_steps"].default  # 999
DEFAULT_SAMPLING_STEPS: int = TRANSFER["steps"].default  # 50
#: The authors' guidance window (min, max): the first 40 % of the sampling steps are guided.
DEFAULT_GUIDANCE_WINDOW: tuple[float, float] = TRANSFER["guidance_window"].default


@dataclass
class Inversion:
    """What later stages need from a video's DDIM inversion.

    Only what later stages read is kept (earlier versions kept every sampling timestep):
    x0: (1, 4, F, h, w) float32 clean latent (scaling_factor · VAE posterior mean); read by
        low_frequency_init.
    latents: timestep → (1, 4, F, h, w) float32 inverted latent, kept at `noisiest_t` (read by
        low_frequency_init) and at the guided timesteps of the guidance window it was made for
        (read by extract_targets): 20 + 1 latents at the authors' defaults instead of 50 + 1.
        `invert_latents(keep_all=True)` keeps every sampling timestep the inversion visits.
    noisiest_t: the last inversion timestep (999 for 999 steps).
    source_prompt: the prompt as encoded (prefix included).
    num_inversion_steps, num_sampling_steps: the settings it was made with.
    scheduler_config: the model's DDIM scheduler config (data), so later stages need no model.
    model_fingerprint: ZeroScope.fingerprint of the model that made it.
    context: the temporal context windows the inversion ran with (None: one pass over all
        frames). Targets and sampling must use the same schedule (dmt.transfer.context).
    """

    x0: torch.Tensor
    latents: dict[int, torch.Tensor]
    noisiest_t: int
    source_prompt: str
    num_inversion_steps: int
    num_sampling_steps: int
    scheduler_config: dict = field(repr=False)
    model_fingerprint: str = ""
    context: ContextOptions | None = None

    @property
    def num_frames(self) -> int:
        return self.x0.shape[2]

    @property
    def noisiest(self) -> torch.Tensor:
        return self.latents[self.noisiest_t]


def invert_latents(
    model: ZeroScope,
    x0: torch.Tensor,
    source_prompt: str,
    num_inversion_steps: int = DEFAULT_INVERSION_STEPS,
    num_sampling_steps: int = DEFAULT_SAMPLING_STEPS,
    keep_timesteps: tuple[int, ...] | None = None,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
    context: ContextOptions | None = None,
    *,
    guidance_window: tuple[float, float] = DEFAULT_GUIDANCE_WINDOW,
    keep_all: bool = False,
) -> Inversion:
    """DDIM-invert x0 with the (already prefixed) source prompt, no CFG.

    Args:
        x0: (1, 4, F, h, w) clean latent (see latents.encode_frames).
        source_prompt: encoded as given (an empty prompt is allowed).
        num_inversion_steps: 999 as the authors (timesteps 1 … 999).
        num_sampling_steps: the sampling schedule the kept latents serve (50).
        keep_timesteps: timesteps to keep instead (overrides guidance_window and keep_all).
        guidance_window: the (min, max) window the targets will use (authors' (0.6, 1.0)): the
            latents at its guided timesteps are kept (t = 981 … 601 for 50 steps).
        keep_all: keep the latent at every sampling timestep the inversion visits (any guidance
            window can then be used later; 50 + 1 latents instead of 20 + 1 at the defaults).
        context: temporal context windows (None, or one window covering the video: the plain
            one-pass path); each step's noise prediction is then the fused one of the windows.
    Returns:
        Inversion (the noisiest latent is always kept). The numbers in the kept latents do not
        depend on what is kept.
    """
    sched = model.scheduler
    steps = inversion_timesteps(sched, num_inversion_steps)
    if keep_timesteps is not None:
        keep = set(keep_timesteps)
    elif keep_all:
        keep = set(scheduler_timesteps(sched, num_sampling_steps))
    else:  # validates the window before the long loop
        keep = set(make_schedule(sched, num_sampling_steps, guidance_window).guided)
    text = encode_prompt(model, source_prompt)
    x = x0.detach().float().clone()
    kept: dict[int, torch.Tensor] = {}
    with explain_out_of_memory("DDIM inversion"), evaluation():
        for i, t in enumerate(steps):
            checkpoint(check_interrupt)
            eps = fused_prediction(lambda xw: predict_noise(model, xw, t, text), x, context)
            x = inversion_step(sched, x, eps, steps[i - 1] if i > 0 else -1, t)
            if t in keep or i == len(steps) - 1:
                kept[t] = x.clone()
            on_step("inversion", i + 1, len(steps), x)
    return Inversion(
        x0=x0.detach().float().clone(), latents=kept, noisiest_t=steps[-1], source_prompt=source_prompt,
        num_inversion_steps=num_inversion_steps, num_sampling_steps=num_sampling_steps,
        scheduler_config=dict(sched.config), model_fingerprint=model.fingerprint, context=context,
    )


def ddim_reconstruct(
    model: ZeroScope, inversion: Inversion, on_step: OnStep = no_progress
) -> torch.Tensor:
    """Plain DDIM sampling (no CFG, the source prompt) back from the inversion's noisiest latent
    along the inversion's own timesteps — the authors' reconstruction check.

    Returns:
        (1, 4, F, h, w) float32: ≈ inversion.x0 when the inversion is good.
    """
    steps = inversion_timesteps(model.scheduler, inversion.num_inversion_steps)
    text = encode_prompt(model, inversion.source_prompt)
    x = inversion.noisiest.to(model.device).float().clone()
    with evaluation():
        for k in range(len(steps) - 1, -1, -1):
            t = steps[k]
            eps = fused_prediction(lambda xw: predict_noise(model, xw, t, text), x, inversion.context)
            x = ddim_step(model.scheduler, x, eps, steps[k], steps[k - 1] if k > 0 else -1)
            on_step("reconstruction", len(steps) - k, len(steps), x)
    return x


def invert_video(
    model: ZeroScope,
    frames: torch.Tensor,
    source_prompt: str,
    num_inversion_steps: int = DEFAULT_INVERSION_STEPS,
    num_sampling_steps: int = DEFAULT_SAMPLING_STEPS,
    prompt_prefix: str = AUTHORS_PROMPT_PREFIX,
    vae_slice_size: int = 1,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
    context: ContextOptions | None = None,
    *,
    guidance_window: tuple[float, float] = DEFAULT_GUIDANCE_WINDOW,
    keep_all: bool = False,
) -> Inversion:
    """Encode prepared frames (F, H, W, 3 in [0, 1], see latents.prepare_frames) and invert them.

    The source prompt gets the authors' prefix unless `prompt_prefix` is "". `context`: temporal
    context windows (see invert_latents); the VAE encodes one frame per call regardless.
    guidance_window and keep_all choose the kept latents (see invert_latents).
    """
    if not keep_all:  # a bad window fails before the VAE and the long loop
        make_schedule(model.scheduler, num_sampling_steps, guidance_window)
    x0 = encode_frames(model, frames, slice_size=vae_slice_size, on_step=on_step, check_interrupt=check_interrupt)
    return invert_latents(
        model, x0, with_prefix(source_prompt, prompt_prefix), num_inversion_steps, num_sampling_steps,
        on_step=on_step, check_interrupt=check_interrupt, context=context, guidance_window=guidance_window,
        keep_all=keep_all,
    )
