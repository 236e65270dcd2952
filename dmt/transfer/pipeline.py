"""The whole motion transfer in one call (what the CLI runs), built from the stage functions."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from dataclasses import dataclass

import torch

from ..transfer.context import ContextOptions, check_same_schedule
from ..transfer.inversion import DEFAULT_INVERSION_STEPS, DEFAULT_SAMPLING_STEPS, Inversion, invert_latents
from ..models.latents import decode_latents, encode_frames
from ..models.memory import low_memory_mode, on_device
from ..models.zeroscope import ZeroScope
from ..transfer.noise_init import DEFAULT_DOWNSAMPLE_FACTOR, low_frequency_init
from ..io.progress import CheckInterrupt, OnStep, never_interrupt, no_progress
from ..transfer.sampler import GuidanceSettings, SampleResult, guided_sample
from ..transfer.targets import Targets, extract_targets
from ..models.text import AUTHORS_PROMPT_PREFIX, DEFAULT_NEGATIVE_PROMPT, with_prefix
from ..models.wan import Wan
from ..transfer.amf_guidance import AMFSampleResult, AMFSettings, AMFTargets, WanSMMTargets
from ..transfer.wan_transfer import FlowInversion, refuse_wan_options, refuse_zeroscope_options, transfer_wan


@dataclass
class TransferResult:
    """frames: (F, H, W, 3) float32 in [0, 1]. The intermediate results are kept as data.

    ZeroScope: inversion is an Inversion (DDIM), targets the SMM Targets, init_latent the
    (1, 4, F, h, w) low-frequency init, sample a SampleResult.
    Wan: inversion is a FlowInversion (the reference latent and, unless wan_init "noise", its flow
    inversion), targets the AMFTargets (guidance "amf") or WanSMMTargets (guidance "smm"),
    init_latent (1, 16, F', h, w), sample an AMFSampleResult.
    """

    frames: torch.Tensor
    inversion: Inversion | FlowInversion
    targets: Targets | AMFTargets | WanSMMTargets
    init_latent: torch.Tensor
    sample: SampleResult | AMFSampleResult


def transfer(
    model: ZeroScope | Wan,
    frames: torch.Tensor,
    source_prompt: str,
    target_prompt: str,
    *,
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
    seed: int = 0,
    num_steps: int = DEFAULT_SAMPLING_STEPS,
    num_inversion_steps: int = DEFAULT_INVERSION_STEPS,
    guidance_window: tuple[float, float] = (0.6, 1.0),
    downsample_factor: int = DEFAULT_DOWNSAMPLE_FACTOR,
    settings: GuidanceSettings = GuidanceSettings(),
    prompt_prefix: str = AUTHORS_PROMPT_PREFIX,
    inversion: Inversion | None = None,
    vae_slice_size: int = 1,
    low_memory: bool = False,
    context: ContextOptions | None = None,
    amf: AMFSettings | None = None,
    wan_init: str | None = None,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
) -> TransferResult:
    """Invert (unless `inversion` is given), extract targets, init the latent, sample, decode.

    frames: (F, H, W, 3) in [0, 1], already cut and resized (latents.prepare_frames).
    The seed drives both the low-frequency init noise and the restart-sampling noise.
    low_memory: opt-in memory saving with the same result (see dmt.models.memory): gradient
        checkpointing of the guided step, the text encoder and the VAE kept on the CPU except
        while they run, VAE slicing of 1 frame. Slower (recomputation, host↔device copies of the
        text encoder and VAE weights). The model is left exactly as it was, on every exit path.
    context: temporal context windows for long videos (dmt.transfer.context; video frames, on
        Wan acting on its latent frames); None, or one window covering the video, runs today's
        one-pass path unchanged. A given `inversion` must have been made with the same windows.

    Wan (model.kind == "wan", dmt.load_wan): frames (4k + 1, H, W, 3), H and W multiples of 16;
    encode → flow inversion with the source prompt (unless wan_init "noise") → attention-motion-flow
    targets from the clean reference latent (or, with amf=AMFSettings(guidance="smm"), SMM targets
    from the inverted latents at the guided steps) → initial latent → guided Euler sampling → decode
    (dmt.transfer.wan_transfer, dmt.transfer.amf_guidance, dmt.transfer.wan_smm).
    amf: Wan's settings (AMFSettings; None: its defaults). wan_init: Wan's initial latent (None:
        "low_frequency", which uses downsample_factor and the seed; "inversion"; "noise").
    Shared by both models: negative_prompt, seed, downsample_factor, context, inversion (a FlowInversion for
    Wan), low_memory (on Wan: prompts encoded first, text encoder and VAE parked; see
    dmt.transfer.wan_transfer.transfer_wan), on_step, check_interrupt. The other keywords are ZeroScope's: given a non-default value
    with Wan they are refused (InputError), as amf, wan_init or a Wan inversion are with ZeroScope.
    """
    if getattr(model, "kind", "zeroscope") == "wan":
        zeroscope_only = dict(num_steps=num_steps, num_inversion_steps=num_inversion_steps,
                              guidance_window=guidance_window, settings=settings, prompt_prefix=prompt_prefix,
                              vae_slice_size=vae_slice_size)
        refuse_zeroscope_options({n: v for n, v in zeroscope_only.items() if v != _DEFAULTS[n]})
        return TransferResult(**transfer_wan(
            model, frames, source_prompt, target_prompt, amf=amf, init=wan_init, negative_prompt=negative_prompt,
            seed=seed, downsample_factor=downsample_factor, inversion=inversion, on_step=on_step,
            check_interrupt=check_interrupt, low_memory=low_memory, context=context))
    refuse_wan_options(amf, wan_init, inversion)
    if inversion is not None:
        check_same_schedule(inversion.context, context, inversion.num_frames, "inversion")
    if low_memory:
        settings = dataclasses.replace(settings, gradient_checkpointing=True)
        vae_slice_size = 1
    # low memory: the VAE waits on the CPU and comes to the UNet's device only to encode/decode.
    vae_in_use = (lambda: on_device(model.vae, model.device)) if low_memory else contextlib.nullcontext
    with low_memory_mode(model) if low_memory else contextlib.nullcontext():
        if inversion is None:
            with vae_in_use():
                x0 = encode_frames(model, frames, slice_size=vae_slice_size, on_step=on_step,
                                   check_interrupt=check_interrupt)
            inversion = invert_latents(model, x0, with_prefix(source_prompt, prompt_prefix), num_inversion_steps,
                                       num_steps, on_step=on_step, check_interrupt=check_interrupt,
                                       context=context, guidance_window=guidance_window)
        targets = extract_targets(model, inversion, guidance_window, num_steps,
                                  on_step=on_step, check_interrupt=check_interrupt)
        init = low_frequency_init(inversion, seed, downsample_factor, start_timestep=targets.schedule.timesteps[0])
        sample = guided_sample(model, targets, init, target_prompt, negative_prompt, settings, seed=seed,
                               prompt_prefix=prompt_prefix, on_step=on_step, check_interrupt=check_interrupt)
        with vae_in_use():
            out = decode_latents(model, sample.latents, slice_size=vae_slice_size, on_step=on_step,
                                 check_interrupt=check_interrupt)
    return TransferResult(frames=out, inversion=inversion, targets=targets, init_latent=init, sample=sample)


#: transfer()'s keyword defaults (what "not given" means when a ZeroScope-only keyword reaches Wan)
_DEFAULTS = {name: p.default for name, p in inspect.signature(transfer).parameters.items()}
