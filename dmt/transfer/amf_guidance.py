"""Attention-motion-flow (AMF) guidance on Wan 2.1, as DiTFlow (CVPR 2025) guides a video DiT.

1. `extract_amf_targets`: the reference video's clean latent (sigma 0, timestep 0) goes through
   the transformer with the source prompt up to one block's self-attention keys; the queries and
   keys give the reference AMF (dmt.transfer.attention_flow): for every chosen pair of latent
   frames, where each patch of the first frame moves in the second, in patch units.
2. `amf_guided_sample`: Euler sampling of the flow ODE with classifier-free guidance
   (v = v_uncond + scale · (v_cond − v_uncond)). Before each of the first `guided_fraction` of the
   steps, the latent itself is optimised with Adam for `iterations` iterations on the mean squared
   difference between its own AMF (current timestep, target prompt) and the reference's. The
   transformer is frozen throughout: only the latent receives gradients.

Latents are (1, 16, F', h, w) float32, normalised as dmt.models.wan_ops hands them to the
transformer; the patch grid is (F', h/2, w/2).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from ..errors import InputError, InversionMismatchError, explain_out_of_memory
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..models.grad_modes import evaluation
from ..models.unet import frozen
from ..models.wan import Wan
from ..models.wan_ops import encode_prompt, predict_velocity
from ..models.zeroscope import same_model
from ..settings import DEFAULT_NEGATIVE_PROMPT
from .attention_flow import amf_loss, attention_flow, forward_qk, patch_grid
from .flow_matching import FlowSchedule, euler_step, flow_schedule

__all__ = ["AMFSettings", "AMFTargets", "AMFSampleResult", "extract_amf_targets", "amf_guided_sample",
           "latent_amf_loss", "check_made_with"]


def _is_whole(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _refuse(name: str, value, requirement: str, default) -> None:
    raise InputError(f"AMF setting {name} must be {requirement} (default {default!r}); got {value!r}.")


@dataclass(frozen=True)
class AMFSettings:
    """Settings of attention-motion-flow guidance on Wan (defaults: DiTFlow's schedule, Wan's CFG).

    num_steps: Euler sampling steps on the model's flow schedule (50; 1 to 1000).
    guidance_scale: classifier-free guidance scale of the velocity (5.0, Wan's own; 1 to 30; 1
        runs the conditional prediction only).
    block_index: the transformer block whose self-attention gives the AMF (None: the middle block,
        len(blocks) // 2, resolved at run time: 15 of Wan2.1-T2V-1.3B's 30; 0 to len(blocks) - 1).
    temperature: divides the attention logits on top of 1/sqrt(head_dim) (1.0; > 0 to 100; lower
        is sharper).
    window: largest latent-frame distance of a compared pair (None: every ordered pair; else >= 1).
    chunk: frame pairs computed at once (1; >= 1): memory chunk × heads × (h'w')² floats.
    iterations: Adam iterations on the latent per guided step (5; 0 to 100; 0 turns guidance off).
    lr_range: (first, last) Adam learning rate, linear across the guided steps ((0.002, 0.001);
        each in (0, 1]).
    guided_fraction: the first ceil(guided_fraction · num_steps) steps are guided (0.2: 10 of 50;
        0 to 1).
    """

    num_steps: int = 50
    guidance_scale: float = 5.0
    block_index: int | None = None
    temperature: float = 1.0
    window: int | None = None
    chunk: int = 1
    iterations: int = 5
    lr_range: tuple[float, float] = (0.002, 0.001)
    guided_fraction: float = 0.2

    def validate(self) -> None:
        """Raise InputError, naming the setting, its range and default, for unusable values."""
        d = AMFSettings.__dataclass_fields__
        if not _is_whole(self.num_steps) or not 1 <= self.num_steps <= 1000:
            _refuse("num_steps", self.num_steps, "a whole number from 1 to 1000", d["num_steps"].default)
        if not _is_number(self.guidance_scale) or not 1 <= self.guidance_scale <= 30:
            _refuse("guidance_scale", self.guidance_scale, "a number from 1 to 30", d["guidance_scale"].default)
        if self.block_index is not None and (not _is_whole(self.block_index) or self.block_index < 0):
            _refuse("block_index", self.block_index, "None (the middle block) or a whole number >= 0", None)
        if not _is_number(self.temperature) or not 0 < self.temperature <= 100:
            _refuse("temperature", self.temperature, "a number above 0 and at most 100", d["temperature"].default)
        if self.window is not None and (not _is_whole(self.window) or self.window < 1):
            _refuse("window", self.window, "None (every frame pair) or a whole number >= 1", None)
        if not _is_whole(self.chunk) or self.chunk < 1:
            _refuse("chunk", self.chunk, "a whole number >= 1", d["chunk"].default)
        if not _is_whole(self.iterations) or not 0 <= self.iterations <= 100:
            _refuse("iterations", self.iterations, "a whole number from 0 to 100", d["iterations"].default)
        lrs = self.lr_range
        if not isinstance(lrs, (tuple, list)) or len(lrs) != 2 or not all(_is_number(v) and 0 < v <= 1 for v in lrs):
            _refuse("lr_range", lrs, "two learning rates (first, last), each above 0 and at most 1",
                    d["lr_range"].default)
        if not _is_number(self.guided_fraction) or not 0 <= self.guided_fraction <= 1:
            _refuse("guided_fraction", self.guided_fraction, "a number from 0 to 1", d["guided_fraction"].default)

    def block_for(self, model: Wan) -> int:
        """The block index to use on `model`: block_index, or len(blocks) // 2 when None.
        Raises InputError when the model has no such block."""
        n = len(model.transformer.blocks)
        block = n // 2 if self.block_index is None else int(self.block_index)
        if block >= n:
            raise InputError(f"AMF setting block_index {block} does not exist: this transformer has {n} blocks, so "
                             f"use a whole number from 0 to {n - 1} (or None for the middle block, {n // 2}).")
        return block

    def num_guided(self) -> int:
        """Guided steps: ceil(guided_fraction · num_steps) (at least one when the fraction is above
        0), or 0 when iterations is 0."""
        if self.iterations == 0:
            return 0
        return min(self.num_steps, math.ceil(self.guided_fraction * self.num_steps - 1e-9))

    def learning_rates(self) -> list[float]:
        """The Adam learning rate of each guided step: linspace(*lr_range, num_guided())."""
        return [float(v) for v in np.linspace(self.lr_range[0], self.lr_range[1], self.num_guided())]


@dataclass
class AMFTargets:
    """The reference video's attention motion flow, and what it was made with.

    flow: (P, h'w', 2) float32 on the CPU: (dx, dy) in patch units of each patch of frame f in
        frame g, for the P frame pairs `pairs` (see dmt.transfer.attention_flow).
    pairs: the P latent-frame pairs (f, g), in the flow's order.
    grid: (F', h', w') patch grid; latent_shape: (1, 16, F', h, w) of the reference latent.
    block_index, temperature, window: the AMF settings the flow was made with (block resolved).
    schedule: the flow schedule sampling follows (its num_steps); source_prompt: as encoded.
    model_fingerprint / model_name: the Wan that made them (other models' targets are refused).
    """

    flow: torch.Tensor
    pairs: list[tuple[int, int]]
    grid: tuple[int, int, int]
    latent_shape: tuple[int, ...]
    block_index: int
    temperature: float
    window: int | None
    schedule: FlowSchedule = field(repr=False)
    source_prompt: str = ""
    model_fingerprint: str = ""
    model_name: str = ""
    #: the base model these targets belong to (ZeroScope's SMM targets are dmt.Targets)
    kind: ClassVar[str] = "wan"

    @property
    def num_steps(self) -> int:
        """Sampling steps of the schedule the targets were made for."""
        return self.schedule.num_steps


@dataclass
class AMFSampleResult:
    """latents: final (1, 16, F', h, w) float32 clean latent. losses: guided step index → AMF loss
    (patch²) before each Adam iteration. timesteps: the model timestep of every sampling step."""

    latents: torch.Tensor
    losses: dict[int, list[float]] = field(default_factory=dict)
    timesteps: list[float] = field(default_factory=list)


def _check_model(model) -> None:
    if getattr(model, "kind", None) != "wan":
        raise InputError(f"Attention-motion-flow guidance runs on Wan (dmt.load_wan); got a "
                         f"{getattr(model, 'kind', type(model).__name__)} model.")


def latent_amf_loss(model: Wan, targets: AMFTargets, latent: torch.Tensor, t: float, text: torch.Tensor,
                    chunk: int = 1) -> torch.Tensor:
    """AMF loss of `latent` against the targets' flow, at model timestep `t` with prompt embeddings `text`.

    Args:
        latent: (1, 16, F', h, w) of the targets' latent shape; gradients flow to it when enabled.
        t: sigma · 1000. text: (1, L, D) from encode_prompt.
        chunk: frame pairs computed at once.
    Returns:
        0-d float32 tensor in patch² (see amf_loss).
    """
    q, k = forward_qk(model, latent, t, text, targets.block_index)
    flow, _ = attention_flow(q, k, targets.grid, int(model.transformer.config.num_attention_heads),
                             targets.temperature, targets.window, chunk)
    return amf_loss(flow, targets.flow)


def extract_amf_targets(model: Wan, x0: torch.Tensor, source_prompt: str,
                        settings: AMFSettings = AMFSettings(), *, on_step: OnStep = no_progress,
                        check_interrupt: CheckInterrupt = never_interrupt) -> AMFTargets:
    """The reference AMF from the reference video's clean latent at sigma 0 (timestep 0).

    Args:
        x0: (1, 16, F', h, w) clean normalised latent of the reference (encode_video), F' >= 2.
        source_prompt: what the reference shows (may be empty).
        settings: block_index, temperature, window, chunk and num_steps are used.
        on_step: called once as on_step("targets", 1, 1, None). check_interrupt: called first.
    Returns:
        AMFTargets (flow on the CPU).
    Raises:
        InputError: a model that is not Wan, a latent of another layout or of fewer than 2 latent
            frames, or unusable settings.
    """
    _check_model(model)
    settings.validate()
    z_dim = int(model.vae.config.z_dim)
    if not isinstance(x0, torch.Tensor) or x0.ndim != 5 or tuple(x0.shape[:2]) != (1, z_dim):
        shape = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise InputError(f"The reference latent must have shape (1, {z_dim}, F', h, w) (encode_video); got {shape}.")
    block = settings.block_for(model)
    grid = patch_grid(x0.shape, model.patch_size)
    schedule = flow_schedule(model.scheduler, settings.num_steps)
    checkpoint(check_interrupt)
    text = encode_prompt(model, source_prompt)
    with explain_out_of_memory("AMF target extraction"), evaluation():
        q, k = forward_qk(model, x0.to(model.device, torch.float32), 0.0, text, block)
        flow, pairs = attention_flow(q, k, grid, int(model.transformer.config.num_attention_heads),
                                     settings.temperature, settings.window, settings.chunk)
    on_step("targets", 1, 1, None)
    return AMFTargets(flow=flow.float().cpu(), pairs=pairs, grid=grid, latent_shape=tuple(x0.shape),
                      block_index=block, temperature=float(settings.temperature), window=settings.window,
                      schedule=schedule, source_prompt=source_prompt, model_fingerprint=model.fingerprint,
                      model_name=model.name)


def check_made_with(model: Wan, what: str, fingerprint: str, name: str, remedy: str) -> None:
    """Raise InversionMismatchError naming both models when data made with the model
    (`fingerprint`, `name`) does not belong to `model` (what: "These AMF targets", ...)."""
    if not same_model(fingerprint, model.fingerprint):
        raise InversionMismatchError(
            f"{what} were made with the model '{name}' (fingerprint {fingerprint}), but the model given is "
            f"'{model.name}' (fingerprint {model.fingerprint}); {remedy}.")


def _check_targets(model: Wan, targets: AMFTargets, settings: AMFSettings) -> None:
    if not isinstance(targets, AMFTargets):
        kind = getattr(targets, "kind", None) or ("zeroscope" if hasattr(targets, "smms") else type(targets).__name__)
        raise InversionMismatchError(f"These targets are {kind} targets, not Wan attention-flow targets; extract "
                                     f"them with extract_amf_targets on the Wan model.")
    check_made_with(model, "These AMF targets", targets.model_fingerprint, targets.model_name,
                    "extract the targets again with this model")
    block = settings.block_for(model)
    made = (targets.block_index, targets.temperature, targets.window, targets.num_steps)
    asked = (block if settings.block_index is not None else targets.block_index, float(settings.temperature),
             settings.window, settings.num_steps)
    if made != asked:
        raise InputError(
            f"The targets were made with block_index {made[0]}, temperature {made[1]:g}, window {made[2]} and "
            f"{made[3]} steps, the settings ask for block_index {asked[0]}, temperature {asked[1]:g}, window "
            f"{asked[2]} and {asked[3]} steps. Use the same settings for extraction and sampling.")


def _cfg_velocity(model: Wan, x: torch.Tensor, t: float, cond: torch.Tensor, uncond: torch.Tensor | None,
                  scale: float) -> torch.Tensor:
    """v_uncond + scale · (v_cond − v_uncond), one transformer call each (the cond one only when
    `uncond` is None). (1, 16, F', h, w) float32."""
    v_cond = predict_velocity(model, x, t, cond)
    if uncond is None:
        return v_cond
    v_uncond = predict_velocity(model, x, t, uncond)
    return v_uncond + scale * (v_cond - v_uncond)


def amf_guided_sample(
    model: Wan,
    targets: AMFTargets,
    init: torch.Tensor,
    target_prompt: str,
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
    settings: AMFSettings = AMFSettings(),
    *,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
) -> AMFSampleResult:
    """Sample a video whose attention motion flow follows `targets`.

    Args:
        targets: from extract_amf_targets with the same model and settings (block, temperature,
            window, num_steps); its schedule gives the sigmas.
        init: (1, 16, F', h, w) latent at the schedule's first sigma (≈ 1; see
            dmt.transfer.wan_transfer.flow_init), of the targets' latent shape.
        target_prompt: what the new video shows (not empty). negative_prompt: CFG's unconditional prompt.
        settings: guidance_scale, iterations, lr_range, guided_fraction and chunk are used here.
        on_step: ("guidance", i, total, latent) after each Adam iteration and ("sampling", i,
            total, latent) after each Euler step; total counts both.
        check_interrupt: called before every Adam iteration and every step (dmt.io.progress).
    Returns:
        AMFSampleResult. Sampling is deterministic: the randomness is all in `init`.
    Works inside torch.inference_mode(). The transformer gets no gradients and is not changed:
    its requires_grad flags are restored on every exit path (cancel and errors included).
    """
    _check_model(model)
    settings.validate()
    if not isinstance(target_prompt, str) or not target_prompt.strip():
        raise InputError("The target prompt is empty: describe what the new video should show.")
    _check_targets(model, targets, settings)
    if not isinstance(init, torch.Tensor) or tuple(init.shape) != tuple(targets.latent_shape):
        shape = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
        raise InputError(f"The initial latent {shape} does not match the targets' latent {tuple(targets.latent_shape)}: "
                         f"make both from the same video (same frame count, width and height).")
    schedule = targets.schedule
    sigmas = [float(s) for s in schedule.sigmas]
    timesteps = [float(t) for t in schedule.timesteps]
    guided, lrs = settings.num_guided(), settings.learning_rates()
    total = guided * settings.iterations + schedule.num_steps
    done = 0

    def tick(stage: str, latent: torch.Tensor) -> None:
        nonlocal done
        done += 1
        on_step(stage, done, total, latent)

    cond = encode_prompt(model, target_prompt)
    uncond = None if settings.guidance_scale == 1 else encode_prompt(model, negative_prompt)
    result = AMFSampleResult(latents=init, timesteps=timesteps)
    with torch.inference_mode(False), explain_out_of_memory("AMF-guided sampling"), frozen(model.transformer):
        x = init.detach().to(model.device, torch.float32).clone()
        reference = dataclasses.replace(targets, flow=targets.flow.to(model.device).clone())  # moved once
        for step, t in enumerate(timesteps):
            if step < guided:
                x_opt = x.detach().clone().requires_grad_(True)
                optimiser = torch.optim.Adam([x_opt], lr=lrs[step])
                losses = []
                for _ in range(settings.iterations):
                    checkpoint(check_interrupt)
                    optimiser.zero_grad(set_to_none=True)
                    with torch.enable_grad():
                        loss = latent_amf_loss(model, reference, x_opt, t, cond, settings.chunk)
                        loss.backward()
                    optimiser.step()
                    losses.append(loss.detach())
                    del loss
                    tick("guidance", x_opt.detach())
                result.losses[step] = [float(v) for v in torch.stack(losses).cpu()]
                x = x_opt.detach()
                del x_opt, optimiser
            checkpoint(check_interrupt)
            with torch.no_grad():
                x = euler_step(x, _cfg_velocity(model, x, t, cond, uncond, settings.guidance_scale),
                               sigmas[step], sigmas[step + 1])
            tick("sampling", x)
    result.latents = x
    return result
