"""The SMM-guided sampler: per guided step, optimise the latent so its space-time features move
like the source's, then take a CFG DDIM step; restart sampling re-noises and denoises again."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..transfer.context import ContextOptions, check_same_schedule, fused_prediction
from ..transfer.ddim import ddim_step, renoise
from ..errors import InputError, InversionMismatchError, explain_out_of_memory
from ..transfer.features import spatial_marginal_mean, truncated_unet
from ..transfer.loss import total_loss
from ..models.memory import gradient_checkpointing
from ..models.zeroscope import ZeroScope, same_model
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..transfer.schedule import Schedule, previous_timestep
from ..transfer.targets import Targets
from ..models.text import AUTHORS_PROMPT_PREFIX, DEFAULT_NEGATIVE_PROMPT, encode_prompt, with_prefix
from ..models.unet import frozen, predict_noise
from ..settings import AUTHORS_CONSTANT_LR, TRANSFER


@dataclass(frozen=True)
class GuidanceSettings:
    """Sampler settings; the defaults are the authors' (defaults and ranges: dmt.settings.TRANSFER).

    guidance_scale: classifier-free guidance scale of the denoise steps (10).
    optimization_steps: Adam iterations per guided step (10); 0 disables guidance.
    lr_range: (first, last) learning rate, linearly spaced over the guided steps (0.007 → 0.004).
    lr_decay: use lr_range (True) or the constant `lr` (0.01).
    restart_sampling: after every denoise step but the last, re-noise and denoise again (True).
    loss: "cosine" (authors' code) or "l2" (the paper's printed form).
    gradient_checkpointing: recompute UNet activations in the backward pass (less memory, same
        gradients, slower). diffusers' UNet3D has no checkpointing of its own, so this is dmt's
        layer-by-layer one (dmt.models.memory). Off by default.
    """

    guidance_scale: float = TRANSFER["guidance_scale"].default
    optimization_steps: int = TRANSFER["optimization_steps"].default
    lr_range: tuple[float, float] = TRANSFER["lr_range"].default
    lr_decay: bool = True
    lr: float = AUTHORS_CONSTANT_LR
    restart_sampling: bool = not TRANSFER["no_restart"].default
    loss: str = TRANSFER["loss"].default
    gradient_checkpointing: bool = TRANSFER["gradient_checkpointing"].default

    def validate(self) -> None:
        """Raise InputError, naming the setting, its range and default, for unusable values."""
        TRANSFER["guidance_scale"].check(self.guidance_scale)
        TRANSFER["optimization_steps"].check(self.optimization_steps)
        TRANSFER["loss"].check(self.loss)
        if self.lr_decay:
            for i, which in enumerate(("first", "last")):
                TRANSFER["lr_range"].check(self.lr_range[i], f"The {which} learning rate (lr_range[{i}])", index=i)
        else:
            if self.lr is None:
                raise InputError(f"The constant learning rate (lr) is missing: give {TRANSFER['constant_lr'].requirement()} "
                                 f"(the authors use {AUTHORS_CONSTANT_LR:g}), or turn lr_decay on.")
            TRANSFER["constant_lr"].check(self.lr, "The constant learning rate (lr)")

    def learning_rates(self, num_guided: int) -> list[float]:
        """lr per guided step: linspace(*lr_range, num_guided) or the constant lr."""
        if self.lr_decay:
            return [float(v) for v in np.linspace(self.lr_range[0], self.lr_range[1], num_guided)]
        return [float(self.lr)] * num_guided


@dataclass
class SampleResult:
    """latents: final (1, 4, F, h, w) float32. losses: guided timestep → loss before each Adam
    step. intermediates: timestep → latent after that step (only when asked)."""

    latents: torch.Tensor
    losses: dict[int, list[float]] = field(default_factory=dict)
    intermediates: dict[int, torch.Tensor] = field(default_factory=dict)


def optimize_latent(
    model: ZeroScope,
    x: torch.Tensor,
    t: int,
    text: torch.Tensor,
    target_smms: dict[str, torch.Tensor],
    steps: int,
    lr: float,
    loss_form: str = "cosine",
    on_iteration=None,
    check_interrupt: CheckInterrupt = never_interrupt,
    windows: list[range] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The guided step: Adam on a float32 copy of x for `steps` iterations.

    Each iteration runs the UNet (conditional only, target prompt, truncated after up_blocks[1]),
    takes the SMMs of the captured activations and the summed SMM loss against `target_smms`.
    In fp16 the loss is scaled by a fresh GradScaler per step, as the authors (identical to plain
    Adam unless gradients overflow, when the step is skipped). The caller freezes the UNet.

    With context `windows` (a list of frame ranges), `target_smms` is a list of per-window
    targets (activation path → (n_k, D)); the loss is the sum of the windows' losses and each
    window is backpropagated on its own, so only one window's activations are alive at a time:
    the latent's gradient accumulates over the windows (= the gradient of the summed loss), then
    one Adam step is taken.
    Returns:
        (optimised latent detached, list of per-iteration loss tensors).
    """
    num_frames = x.shape[2]
    if windows is None:
        paths = tuple(target_smms)
    else:
        if len(windows) != len(target_smms):
            raise ValueError(f"{len(windows)} windows but {len(target_smms)} window targets.")
        paths = tuple(target_smms[0])
    x_opt = x.detach().float().clone().requires_grad_(True)
    opt = torch.optim.Adam([x_opt], lr=lr)
    scaler = torch.amp.GradScaler(model.device.type, enabled=model.dtype == torch.float16)
    losses = []
    with truncated_unet(model, paths) as forward:  # hooks and lookups once per guided step
        for it in range(steps):
            checkpoint(check_interrupt)
            opt.zero_grad(set_to_none=True)
            if windows is None:
                feats = forward(x_opt, t, text)
                smms = {p: spatial_marginal_mean(feats[p], num_frames)[0] for p in paths}
                loss = total_loss(smms, target_smms, loss_form)
                scaler.scale(loss).backward()
            else:  # one backward per window: only one window's activations alive at a time
                loss = torch.zeros((), device=x_opt.device)
                for w, target in zip(windows, target_smms):
                    feats = forward(x_opt[:, :, w.start:w.stop], t, text)
                    smms = {p: spatial_marginal_mean(feats[p], len(w))[0] for p in paths}
                    window_loss = total_loss(smms, target, loss_form)
                    scaler.scale(window_loss).backward()
                    loss = loss + window_loss.detach()
                    del feats, smms, window_loss
                feats = smms = None
            scaler.step(opt)
            scaler.update()
            losses.append(loss.detach())
            del feats, smms, loss
            if on_iteration is not None:
                on_iteration(it, x_opt)
    return x_opt.detach(), losses


@torch.no_grad()
def denoise_step(
    model: ZeroScope, x: torch.Tensor, t: int, t_prev: int, text_cfg: torch.Tensor, guidance_scale: float,
    context: ContextOptions | None = None,
) -> torch.Tensor:
    """CFG DDIM step t → t_prev: ε = ε_u + s·(ε_c − ε_u); text_cfg = cat[cond, uncond] (2, 77, D).

    context: temporal context windows; the cond and uncond predictions are each fused over the
    windows (one batched UNet call per window), then combined.
    """
    eps = fused_prediction(lambda xw: predict_noise(model, torch.cat([xw, xw]), t, text_cfg), x, context).float()
    cond, uncond = eps.chunk(2)
    return ddim_step(model.scheduler, x, uncond + guidance_scale * (cond - uncond), t, t_prev)


def _check_latent(latent: torch.Tensor, targets: Targets) -> None:
    if latent.ndim != 5 or latent.shape[0] != 1:
        raise InputError(f"The initial latent must be (1, 4, F, h, w); got {tuple(latent.shape)}.")
    check_latent_fits(tuple(latent.shape), targets)


def check_latent_fits(shape: tuple[int, ...], targets: Targets) -> None:
    """Raise InputError naming both shapes when a (1, 4, F, h, w) latent does not match the frame
    count (and, when the targets know it, the latent size) of the inversion the targets came from."""
    want = getattr(targets, "latent_shape", None)
    frames_ok = shape[2] == targets.num_frames
    size_ok = want is None or tuple(shape[-2:]) == tuple(want[-2:])
    if not (frames_ok and size_ok):
        made = f"{targets.num_frames} frames" + (
            f" of latent size {want[-2]}x{want[-1]} ({want[-1] * 8}x{want[-2] * 8} px)" if want is not None else "")
        raise InputError(
            f"The initial latent {tuple(shape)} ({shape[2]} frames of latent size {shape[-2]}x{shape[-1]}, "
            f"{shape[-1] * 8}x{shape[-2] * 8} px) does not match the targets, which were made from {made}. "
            f"Make the latent and the targets from the same inversion (same frame count, width and height)."
        )


def guided_sample(
    model: ZeroScope,
    targets: Targets,
    latent: torch.Tensor,
    target_prompt: str,
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
    settings: GuidanceSettings = GuidanceSettings(),
    seed: int = 0,
    generator: torch.Generator | None = None,
    prompt_prefix: str = AUTHORS_PROMPT_PREFIX,
    keep_intermediates: bool = False,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
    context: ContextOptions | None | str = "from targets",
) -> SampleResult:
    """Sample a video whose space-time features follow `targets`.

    Args:
        targets: from extract_targets; its schedule decides the timesteps and guided steps.
        latent: (1, 4, F, h, w) initial latent at targets.schedule.timesteps[0] (low_frequency_init).
        target_prompt: what the new video shows (the authors' prefix is prepended unless
            prompt_prefix is "").
        negative_prompt: the unconditional prompt of CFG.
        seed / generator: the restart-sampling noise (a generator on the model's device wins).
        keep_intermediates: return the latent after every sampling step.
        on_step: progress ("guidance" per Adam iteration, "denoise" per denoise pass), may raise.
        check_interrupt: cancellation (see dmt.io.progress).
        context: temporal context windows; by default the targets' (which are the inversion's).
            Given explicitly it must give the same windows (InversionMismatchError otherwise).
            Guided steps: per-window losses, backpropagated window by window; denoise steps:
            fused predictions. Restart re-noising acts on the whole video.
    Works inside torch.inference_mode() (it leaves inference mode for the guided step and
    clones incoming tensors); the UNet's requires_grad flags are restored on every exit path.
    """
    settings.validate()
    if not target_prompt or not target_prompt.strip():
        raise InputError("The target prompt is empty: describe what the new video should show.")
    if not same_model(targets.model_fingerprint, model.fingerprint):
        raise InversionMismatchError("These targets were made with a different model; extract them again.")
    _check_latent(latent, targets)
    if isinstance(context, str):
        if context != "from targets":
            raise InputError(f"context must be ContextOptions, None or 'from targets', got '{context}'.")
    else:
        check_same_schedule(targets.context, context, targets.num_frames, "SMM target set")
    context = targets.context
    windows = targets.windows()
    schedule: Schedule = targets.schedule
    device = model.device
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    lrs = settings.learning_rates(len(schedule.guided))
    guided_index = {t: k for k, t in enumerate(schedule.guided)}
    n = len(schedule.timesteps)
    total = len(schedule.guided) * settings.optimization_steps + n + (n - 1) * settings.restart_sampling
    done = 0

    def tick(stage: str, lat: torch.Tensor | None) -> None:
        nonlocal done
        done += 1
        on_step(stage, done, total, lat)

    text_target = encode_prompt(model, with_prefix(target_prompt, prompt_prefix))
    text_cfg = torch.cat([text_target, encode_prompt(model, negative_prompt)])
    result = SampleResult(latents=latent)
    with torch.inference_mode(False), explain_out_of_memory("guided sampling"), frozen(model.unet):
        x = latent.detach().to(device, torch.float32).clone()
        target_smms = {t: {p: v.to(device).clone() for p, v in s.items()} for t, s in targets.smms.items()}
        window_targets = {}
        if windows is not None:
            window_targets = {t: [{p: v.to(device).clone() for p, v in w.items()} for w in targets.window_smms(t)]
                              for t in targets.smms}
        for i, t in enumerate(schedule.timesteps):
            if t in guided_index and settings.optimization_steps > 0:
                with torch.enable_grad(), gradient_checkpointing(model.unet, settings.gradient_checkpointing):
                    x, losses = optimize_latent(
                        model, x, t, text_target, target_smms[t] if windows is None else window_targets[t],
                        settings.optimization_steps, lrs[guided_index[t]], settings.loss,
                        on_iteration=lambda _it, lat: tick("guidance", lat), check_interrupt=check_interrupt,
                        windows=windows,
                    )
                result.losses[t] = [float(v) for v in torch.stack(losses).cpu()]
            t_prev = previous_timestep(model.scheduler, t, schedule.num_steps)
            checkpoint(check_interrupt)
            x = denoise_step(model, x, t, t_prev, text_cfg, settings.guidance_scale, context)
            tick("denoise", x)
            if settings.restart_sampling and i < n - 1:
                checkpoint(check_interrupt)
                x = renoise(model.scheduler, x, schedule.timesteps[i + 1], schedule.num_steps, generator)
                x = denoise_step(model, x, t, t_prev, text_cfg, settings.guidance_scale, context)
                tick("denoise", x)
            if keep_intermediates:
                result.intermediates[t] = x.clone()
    result.latents = x
    return result
