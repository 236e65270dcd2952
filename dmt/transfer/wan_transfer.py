"""The Wan branch of `dmt.transfer.pipeline.transfer`: encode, invert (when the init needs it),
AMF targets, initial latent, AMF-guided sampling, decode.

Initial latent (`init`, transfer()'s `wan_init`; default "low_frequency"):
- "low_frequency": the reference's flow inversion at the first sampling sigma, low-passed, with
  fresh high frequencies from the seed: LF(x_inv) + (ε − LF(ε)) (ZeroScope's init, by the same
  `low_pass`; `downsample_factor` 1 gives x_inv). The coarse layout follows the reference, the
  details vary with the seed.
- "inversion": the inverted latent itself (deterministic: the seed has no effect).
- "noise": seeded Gaussian noise, as DiTFlow samples (no inversion is run).
The inversion is plain Euler up the sampling schedule with the source prompt, no CFG
(dmt.transfer.flow_matching.invert_flow).

Guidance (AMFSettings.guidance): "amf" reads its targets from the clean reference latent
(dmt.transfer.amf_guidance); "smm" from the inverted latents at the guided steps, which the
inversion then keeps (FlowInversion.trajectory; dmt.transfer.wan_smm), so SMM guidance runs the
inversion whatever the init (unless nothing is guided).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import InputError, InversionMismatchError
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..models.grad_modes import evaluation
from ..models.wan import TEMPORAL_FACTOR, Wan
from ..models.memory import on_device
from ..settings import WAN_GUIDANCE_SCALE
from ..models.wan_ops import (decode_latents, encode_prompt, encode_prompts, encode_video, predict_velocity,
                              prompt_embeddings)
from .amf_guidance import AMFSettings, amf_guided_sample, check_made_with, check_same_windows, extract_amf_targets
from .context import ContextOptions, fused_prediction, latent_context
from .flow_matching import FlowSchedule, flow_schedule, invert_flow
from .wan_smm import check_inversion_schedule, extract_smm_targets
from .noise_init import DEFAULT_DOWNSAMPLE_FACTOR, check_downsample_factor, low_pass, seeded_noise

__all__ = ["FlowInversion", "WAN_INITS", "DEFAULT_WAN_INIT", "invert_wan", "flow_init", "transfer_wan",
           "refuse_zeroscope_options", "refuse_wan_options"]

WAN_INITS = ("low_frequency", "inversion", "noise")
DEFAULT_WAN_INIT = "low_frequency"

#: transfer() keywords that only ZeroScope's pipeline reads, and what to do instead on Wan
_ZEROSCOPE_ONLY = {
    "num_steps": "set the steps with amf=AMFSettings(num_steps=...)",
    "num_inversion_steps": "Wan inverts along its sampling schedule (AMFSettings.num_steps)",
    "guidance_window": "set the guided share with amf=AMFSettings(guided_fraction=...)",
    "settings": "GuidanceSettings is ZeroScope's SMM guidance; pass amf=AMFSettings(...)",
    "prompt_prefix": "Wan uses the prompts as given",
    "vae_slice_size": "Wan's VAE decodes the whole latent at once",
}


@dataclass
class FlowInversion:
    """A reference video's Wan latent and, when run, its flow inversion.

    x0: (1, 16, F', h, w) float32 clean normalised latent (encode_video).
    noisiest: (1, 16, F', h, w) float32 latent at sigmas[0] from Euler inversion with the source
        prompt, or None when no inversion was run (init "noise").
    sigmas: (N + 1,) the schedule inverted along (None without inversion).
    source_prompt: the prompt the inversion used. model_fingerprint / model_name: the Wan that made it.
    trajectory: (K, 1, 16, F', h, w) float32 on the CPU: the inverted latents at sigmas[0 … K-1]
        (trajectory[0] equals noisiest), kept for SMM targets (invert_wan's keep_steps), or None.
    context: the temporal context windows (video frames) the inversion ran with (None: one pass);
        targets and sampling follow them.
    """

    x0: torch.Tensor
    noisiest: torch.Tensor | None = None
    sigmas: torch.Tensor | None = None
    source_prompt: str = ""
    model_fingerprint: str = ""
    model_name: str = ""
    trajectory: torch.Tensor | None = None
    context: ContextOptions | None = None
    #: the base model this inversion belongs to (ZeroScope's is dmt.Inversion)
    kind: ClassVar[str] = "wan"

    @property
    def num_frames(self) -> int:
        """Latent frames F' (the video has 4(F' − 1) + 1)."""
        return int(self.x0.shape[2])


def invert_wan(model: Wan, x0: torch.Tensor, source_prompt: str, schedule: FlowSchedule, *,
               keep_steps: int = 0, context: ContextOptions | None = None, on_step: OnStep = no_progress,
               check_interrupt: CheckInterrupt = never_interrupt) -> FlowInversion:
    """Euler inversion of `x0` (1, 16, F', h, w) up `schedule` with the source prompt (no CFG).

    keep_steps: K, 0 to N: also keep the latents at sigmas[0 … K-1] (the first K sampling steps'
        starting points) as `trajectory` on the CPU, for SMM targets; 0 keeps none.
    context: temporal context windows (video frames; None: one pass): each velocity is the
        windows' velocities fused per latent frame (dmt.transfer.context).
    on_step: ("inversion", i, N, latent) per step. Returns FlowInversion with x0 and the latent
    at schedule.sigmas[0], both float32 on the model's device.
    """
    if isinstance(keep_steps, bool) or not isinstance(keep_steps, int) or not 0 <= keep_steps <= schedule.num_steps:
        raise InputError(f"keep_steps must be a whole number from 0 to {schedule.num_steps}; got {keep_steps!r}.")
    windows = latent_context(context, TEMPORAL_FACTOR)  # refuses a window shorter than 2 latent frames
    text = encode_prompt(model, source_prompt)
    scale = float(schedule.num_train_timesteps)
    x0 = x0.detach().to(model.device, torch.float32)

    def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return fused_prediction(lambda xw: predict_velocity(model, xw, sigma * scale, text), x, windows)

    with evaluation():
        path = invert_flow(velocity, x0, schedule, on_step=on_step, check_interrupt=check_interrupt)
    kept = torch.stack([x.cpu() for x in path[:keep_steps]]) if keep_steps else None
    return FlowInversion(x0=x0, noisiest=path[0], sigmas=schedule.sigmas.clone(), source_prompt=source_prompt,
                         model_fingerprint=model.fingerprint, model_name=model.name, trajectory=kept,
                         context=context)


def flow_init(inversion: FlowInversion, init: str = DEFAULT_WAN_INIT, seed: int = 0,
              downsample_factor: int = DEFAULT_DOWNSAMPLE_FACTOR) -> torch.Tensor:
    """The initial latent at the first sampling sigma (see the module docstring for `init`).

    Args:
        inversion: with `noisiest` set unless init is "noise".
        seed: seeds ε (torch.Generator on the latent's device), unused by "inversion".
        downsample_factor: the low-pass factor of "low_frequency" (1 to min(h, w)).
    Returns:
        (1, 16, F', h, w) float32 on the inversion's device.
    """
    x0 = inversion.x0
    if init == "noise":
        return seeded_noise(tuple(x0.shape), seed, x0.device)
    if inversion.noisiest is None:
        raise InputError(f"The init '{init}' needs the reference's flow inversion; this one holds only its latent.")
    x_inv = inversion.noisiest.to(x0.device, torch.float32)
    if init == "inversion":
        return x_inv.clone()
    check_downsample_factor(downsample_factor, tuple(x0.shape))
    if downsample_factor == 1:
        return x_inv.clone()
    noise = seeded_noise(tuple(x0.shape), seed, x0.device)
    return low_pass(x_inv, downsample_factor) + (noise - low_pass(noise, downsample_factor))


def refuse_zeroscope_options(changed: dict[str, Any]) -> None:
    """Raise InputError naming every ZeroScope-only transfer() keyword given a non-default value
    (`changed`: name → value) for a Wan model, with what to do instead."""
    if changed:
        lines = "; ".join(f"{name}={value!r} ({_ZEROSCOPE_ONLY.get(name, 'ZeroScope only')})"
                          for name, value in changed.items())
        raise InputError(f"These transfer options are ZeroScope's and do not apply to Wan: {lines}.")


def refuse_wan_options(amf: AMFSettings | None, wan_init: str | None, inversion: object) -> None:
    """Raise when Wan-only transfer() inputs are given for a ZeroScope model: AMF settings, a Wan
    init choice, or a Wan inversion."""
    if amf is not None:
        raise InputError("amf (AMFSettings) is Wan's attention-flow guidance; ZeroScope's SMM guidance takes "
                         "settings=GuidanceSettings(...).")
    if wan_init is not None:
        raise InputError(f"wan_init={wan_init!r} is a Wan option; ZeroScope always starts from its low-frequency "
                         f"init (set its downsample_factor).")
    if getattr(inversion, "kind", None) == "wan":
        raise InversionMismatchError("This inversion was made with Wan, but the model is ZeroScope; invert the "
                                     "video with ZeroScope (or give no inversion).")


def check_wan_inversion(model: Wan, inversion: object,
                        remedy: str = "give no inversion, or one made with Wan") -> FlowInversion:
    """`inversion` when it is a FlowInversion made with `model`; otherwise InversionMismatchError
    naming both models and `remedy`."""
    if not isinstance(inversion, FlowInversion):
        made = getattr(inversion, "model_fingerprint", "")
        raise InversionMismatchError(
            f"This inversion was made with ZeroScope{f' (fingerprint {made})' if made else ''}, but the model is "
            f"Wan '{model.name}' (fingerprint {model.fingerprint}); {remedy}.")
    check_made_with(model, "This inversion", inversion.model_fingerprint, inversion.model_name,
                    "invert the video again with this model")
    return inversion


def transfer_wan(model: Wan, frames: torch.Tensor | None, source_prompt: str, target_prompt: str, *,
                 amf: AMFSettings | None, init: str | None, negative_prompt: str, seed: int,
                 downsample_factor: int, inversion: FlowInversion | None, on_step: OnStep,
                 check_interrupt: CheckInterrupt, low_memory: bool = False,
                 context: ContextOptions | None = None) -> dict[str, Any]:
    """Run the Wan transfer; returns the fields of a TransferResult (frames, inversion, targets,
    init_latent, sample). Arguments as `dmt.transfer.pipeline.transfer`.

    low_memory: the three components never share the device: the prompts are encoded first,
    with the transformer parked on the CPU (wan_ops.prompt_embeddings), then the text encoder
    waits on the CPU for the rest of the run and the VAE comes to the device only to encode and
    decode, and the guided step recomputes the transformer's blocks in its backward pass
    (AMFSettings.gradient_checkpointing). The same result (tested bit for bit); the weights move
    between devices a few times.
    Peak device memory is then the largest of the text encoder alone and the transformer with
    its guided step, instead of their sum (not yet measured on a GPU)."""
    if not low_memory:
        return _transfer_wan(model, frames, source_prompt, target_prompt, amf=amf, init=init,
                             negative_prompt=negative_prompt, seed=seed, downsample_factor=downsample_factor,
                             inversion=inversion, on_step=on_step, check_interrupt=check_interrupt,
                             context=context)
    compute, idle = model.device, torch.device("cpu")
    settings = AMFSettings() if amf is None else amf
    if isinstance(settings, AMFSettings):
        amf = dataclasses.replace(settings, gradient_checkpointing=True)
    prompts = [source_prompt, target_prompt] + ([negative_prompt] if getattr(settings, "guidance_scale", WAN_GUIDANCE_SCALE) != 1 else [])
    checkpoint(check_interrupt)
    with on_device(model.transformer, idle), on_device(model.text_encoder, compute):
        embeddings = encode_prompts(model, [p for p in prompts if isinstance(p, str)])
    with on_device(model.text_encoder, idle), on_device(model.vae, idle), prompt_embeddings(model, embeddings):
        return _transfer_wan(model, frames, source_prompt, target_prompt, amf=amf, init=init,
                             negative_prompt=negative_prompt, seed=seed, downsample_factor=downsample_factor,
                             inversion=inversion, on_step=on_step, check_interrupt=check_interrupt,
                             vae_device=compute, context=context)


def _transfer_wan(model: Wan, frames: torch.Tensor | None, source_prompt: str, target_prompt: str, *,
                  amf: AMFSettings | None, init: str | None, negative_prompt: str, seed: int,
                  downsample_factor: int, inversion: FlowInversion | None, on_step: OnStep,
                  check_interrupt: CheckInterrupt, vae_device: torch.device | None = None,
                  context: ContextOptions | None = None) -> dict[str, Any]:
    """transfer_wan's stages; vae_device: where the VAE works (None: where it is)."""
    def vae_at_work():
        return contextlib.nullcontext() if vae_device is None else on_device(model.vae, vae_device)

    settings = AMFSettings() if amf is None else amf
    if not isinstance(settings, AMFSettings):
        raise InputError(f"amf must be AMFSettings or None, not {type(settings).__name__}.")
    settings.validate()
    init = DEFAULT_WAN_INIT if init is None else init
    if init not in WAN_INITS:
        raise InputError(f"Unknown Wan init {init!r}; choose one of {', '.join(WAN_INITS)}.")
    if init != "low_frequency" and downsample_factor != DEFAULT_DOWNSAMPLE_FACTOR:
        raise InputError(f"downsample_factor applies to the 'low_frequency' init only, not to '{init}'.")
    if not isinstance(target_prompt, str) or not target_prompt.strip():
        raise InputError("The target prompt is empty: describe what the new video should show.")
    settings.check_blocks(model)  # a missing block is refused before the slow stages
    latent_context(context, TEMPORAL_FACTOR)  # and a context window too short for Wan
    schedule = flow_schedule(model.scheduler, settings.num_steps)
    if inversion is None:
        checkpoint(check_interrupt)
        if frames is None:
            raise InputError("Give the reference video's frames (or a Wan inversion of it).")
        with vae_at_work():
            x0 = encode_video(model, frames).to(model.device)
        on_step("encode", 1, 1, None)
        inversion = FlowInversion(x0=x0, source_prompt=source_prompt, model_fingerprint=model.fingerprint,
                                  model_name=model.name, context=context)
    else:
        inversion = check_wan_inversion(model, inversion)
        check_same_windows(inversion.context, context, inversion.num_frames, "inversion")
    keep = settings.num_guided() if settings.guidance == "smm" else 0
    if init != "noise" or keep:
        if inversion.noisiest is not None:
            check_inversion_schedule(inversion.sigmas, schedule)
        kept = 0 if inversion.trajectory is None else inversion.trajectory.shape[0]
        if inversion.noisiest is None or kept < keep:  # SMM needs the guided steps' latents: invert (again)
            inversion = invert_wan(model, inversion.x0, source_prompt, schedule, keep_steps=keep,
                                   context=inversion.context, on_step=on_step, check_interrupt=check_interrupt)
    if settings.guidance == "smm":
        targets = extract_smm_targets(model, inversion, settings, on_step=on_step, check_interrupt=check_interrupt)
    else:
        targets = extract_amf_targets(model, inversion.x0, source_prompt, settings, context=inversion.context,
                                      on_step=on_step, check_interrupt=check_interrupt)
    init_latent = flow_init(inversion, init, seed, downsample_factor)
    sample = amf_guided_sample(model, targets, init_latent, target_prompt, negative_prompt, settings,
                               on_step=on_step, check_interrupt=check_interrupt)
    checkpoint(check_interrupt)
    with vae_at_work():
        out = decode_latents(model, sample.latents)
    on_step("decode", 1, 1, None)
    return dict(frames=out, inversion=inversion, targets=targets, init_latent=init_latent, sample=sample)
