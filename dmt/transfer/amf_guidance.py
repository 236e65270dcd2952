"""Guided sampling on Wan 2.1: attention-motion-flow (AMF) guidance, as DiTFlow (CVPR 2025) guides
a video DiT, or the paper's SMM guidance (AMFSettings.guidance "smm", dmt.transfer.wan_smm).

1. `extract_amf_targets`: the reference video's clean latent (sigma 0, timestep 0) goes through
   the transformer with the source prompt up to one block's self-attention keys; the queries and
   keys give the reference AMF (dmt.transfer.attention_flow): for every chosen pair of latent
   frames, where each patch of the first frame moves in the second, in patch units.
2. `amf_guided_sample`: Euler sampling of the flow ODE with classifier-free guidance
   (v = v_uncond + scale · (v_cond − v_uncond)). Before each of the first `guided_fraction` of the
   steps, the latent itself is optimised with Adam for `iterations` iterations on the mean squared
   difference between its own AMF (current timestep, target prompt) and the reference's. The
   transformer is frozen throughout: only the latent receives gradients.
   With guidance "smm" the targets are WanSMMTargets (dmt.transfer.wan_smm.extract_smm_targets)
   and the loss of guided step k is the paper's SMM loss (dmt.transfer.loss.total_loss) between
   the chosen blocks' SMMs of the latent and the reference's at step k; all else is shared.

Latents are (1, 16, F', h, w) float32, normalised as dmt.models.wan_ops hands them to the
transformer; the patch grid is (F', h/2, w/2).

Temporal context windows (dmt.transfer.context; `context` of the targets, given in video frames,
acting on latent frames): the targets are extracted per window (each window's latent frames go
through the transformer on their own); the guidance loss is the sum of the windows' losses, each
window backpropagated on its own (one window's activations alive at a time), then one Adam step
on the whole latent; each sampling velocity is the windows' velocities fused per latent frame.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from ..errors import InputError, InversionMismatchError, explain_out_of_memory
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..models.grad_modes import evaluation
from ..models.memory import native_gradient_checkpointing
from ..models.unet import frozen
from ..models.wan import TEMPORAL_FACTOR, Wan
from ..models.wan_ops import encode_prompt, predict_velocity
from ..models.zeroscope import same_model
from ..settings import DEFAULT_NEGATIVE_PROMPT, WAN_GUIDANCE_SCALE
from .attention_flow import amf_loss, attention_flow, forward_qk, patch_grid
from .block_features import check_block_indices, default_smm_blocks, latent_smm_loss
from .context import ContextOptions, effective_windows, fused_prediction, latent_context, schedule_key
from .loss import LOSS_FORMS
from .flow_matching import FlowSchedule, euler_step, flow_schedule
from .rope_offsets import rope_offset, rope_shape

__all__ = ["AMFSettings", "AMFTargets", "WanSMMTargets", "AMFSampleResult", "GUIDANCES", "extract_amf_targets",
           "amf_guided_sample", "latent_amf_loss", "check_made_with", "require_wan", "latent_windows",
           "check_same_windows"]

#: Wan's guidance choices: attention motion flow (DiTFlow) or the paper's space-time feature SMMs
GUIDANCES: tuple[str, ...] = ("amf", "smm")
#: what the guided steps' Adam iterations move (AMFSettings.optimise)
OPTIMISED: tuple[str, ...] = ("latent", "positions")


def _is_whole(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _refuse(name: str, value, requirement: str, default) -> None:
    raise InputError(f"AMF setting {name} must be {requirement} (default {default!r}); got {value!r}.")


@dataclass(frozen=True)
class AMFSettings:
    """Settings of guided sampling on Wan (defaults: attention motion flow with DiTFlow's schedule,
    Wan's CFG). The public name stays AMFSettings; `guidance` chooses the loss.

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
    guidance: "amf" (attention motion flow: block_index, temperature, window, chunk) or "smm" (the
        paper's space-time feature loss: smm_blocks, smm_loss). Everything else is shared. The
        defaults above are DiTFlow's schedule for both; the paper's own on ZeroScope is
        iterations 10, lr_range (0.007, 0.004), guided_fraction 0.4.
    smm_blocks: the transformer blocks whose hidden states give the SMMs (None: the middle block
        and the next, resolved at run time: (15, 16) of Wan2.1-T2V-1.3B's 30; see
        dmt.transfer.block_features); distinct whole numbers from 0 to len(blocks) - 1.
    smm_loss: "cosine" (the authors' code) or "l2" (the paper's equation), as dmt.transfer.loss.
    optimise: what the Adam iterations move: "latent" (default; DiTFlow's main mode) or
        "positions" (DiTFlow's positional-embedding mode on Wan's rotary positions: an angle offset
        per token and rotation pair, shared by all blocks, kept for every later step; the result
        holds it (AMFSampleResult.positions) to reuse with other prompts; dmt.transfer.rope_offsets).
    gradient_checkpointing: recompute each transformer block in the guided step's backward pass
        instead of keeping its activations (diffusers' checkpointing; the same result, less memory,
        slower). False by default.
    """

    num_steps: int = 50
    guidance_scale: float = WAN_GUIDANCE_SCALE
    block_index: int | None = None
    temperature: float = 1.0
    window: int | None = None
    chunk: int = 1
    iterations: int = 5
    lr_range: tuple[float, float] = (0.002, 0.001)
    guided_fraction: float = 0.2
    guidance: str = "amf"
    smm_blocks: tuple[int, ...] | None = None
    smm_loss: str = "cosine"
    optimise: str = "latent"
    gradient_checkpointing: bool = False

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
        if not isinstance(self.guidance, str) or self.guidance not in GUIDANCES:
            _refuse("guidance", self.guidance, f"one of {', '.join(map(repr, GUIDANCES))}", d["guidance"].default)
        blocks = self.smm_blocks
        listed = isinstance(blocks, (tuple, list)) and len(blocks) > 0
        if blocks is not None and (not listed or len(set(blocks)) != len(blocks)
                                   or not all(_is_whole(b) and b >= 0 for b in blocks)):
            _refuse("smm_blocks", blocks, "None (the middle block and the next) or distinct whole numbers >= 0", None)
        if not isinstance(self.smm_loss, str) or self.smm_loss not in LOSS_FORMS:
            _refuse("smm_loss", self.smm_loss, f"one of {', '.join(map(repr, LOSS_FORMS))}", d["smm_loss"].default)
        if not isinstance(self.optimise, str) or self.optimise not in OPTIMISED:
            _refuse("optimise", self.optimise, f"one of {', '.join(map(repr, OPTIMISED))}", d["optimise"].default)
        if not isinstance(self.gradient_checkpointing, bool):
            _refuse("gradient_checkpointing", self.gradient_checkpointing, "True or False", False)

    def block_for(self, model: Wan) -> int:
        """The block index to use on `model`: block_index, or len(blocks) // 2 when None.
        Raises InputError when the model has no such block."""
        n = len(model.transformer.blocks)
        block = n // 2 if self.block_index is None else int(self.block_index)
        if block >= n:
            raise InputError(f"AMF setting block_index {block} does not exist: this transformer has {n} blocks, so "
                             f"use a whole number from 0 to {n - 1} (or None for the middle block, {n // 2}).")
        return block

    def smm_blocks_for(self, model: Wan) -> tuple[int, ...]:
        """The blocks SMM guidance reads on `model`: smm_blocks, or default_smm_blocks(len(blocks))
        when None. Raises InputError naming the valid range when the model lacks one."""
        if self.smm_blocks is None:
            return default_smm_blocks(len(model.transformer.blocks))
        return check_block_indices(model.transformer, self.smm_blocks)

    def check_blocks(self, model: Wan) -> None:
        """Refuse (InputError) a block the chosen guidance reads but `model` lacks."""
        if self.guidance == "smm":
            self.smm_blocks_for(model)
        else:
            self.block_for(model)

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
        frame g, for the P frame pairs `pairs` (see dmt.transfer.attention_flow). With context
        windows, the windows' flows one after another (each window's pairs in its own order).
    pairs: the P latent-frame pairs (f, g), in the flow's order (latent frames of the whole video).
    grid: (F', h', w') patch grid; latent_shape: (1, 16, F', h, w) of the reference latent.
    block_index, temperature, window: the AMF settings the flow was made with (block resolved).
    schedule: the flow schedule sampling follows (its num_steps); source_prompt: as encoded.
    model_fingerprint / model_name: the Wan that made them (other models' targets are refused).
    context: the temporal context windows (video frames) they were extracted with (None: one pass);
        sampling runs with the same windows.
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
    context: ContextOptions | None = None
    #: the base model these targets belong to (ZeroScope's SMM targets are dmt.Targets)
    kind: ClassVar[str] = "wan"
    #: the AMFSettings.guidance they serve
    guidance: ClassVar[str] = "amf"

    @property
    def num_steps(self) -> int:
        """Sampling steps of the schedule the targets were made for."""
        return self.schedule.num_steps


@dataclass
class WanSMMTargets:
    """The reference video's SMMs at every guided step, and what they were made with
    (dmt.transfer.wan_smm.extract_smm_targets).

    smms: block index → (G, F', D) float32 on the CPU: row k is the block's SMM of the reference's
        flow-inversion latent at sigmas[k] (timestep sigmas[k] · 1000), source prompt, no CFG.
        With context windows the rows hold the windows' SMMs one after another (Σ window lengths
        rows of frames instead of F').
    blocks: the blocks read (resolved), in the settings' order.
    grid: (F', h', w') patch grid; latent_shape: (1, 16, F', h, w) of the reference latent.
    schedule: the flow schedule sampling follows; source_prompt: as encoded.
    model_fingerprint / model_name: the Wan that made them (other models' targets are refused).
    context: the temporal context windows (video frames) they were extracted with (None: one pass).
    """

    smms: dict[int, torch.Tensor]
    blocks: tuple[int, ...]
    grid: tuple[int, int, int]
    latent_shape: tuple[int, ...]
    schedule: FlowSchedule = field(repr=False)
    source_prompt: str = ""
    model_fingerprint: str = ""
    model_name: str = ""
    context: ContextOptions | None = None
    kind: ClassVar[str] = "wan"
    guidance: ClassVar[str] = "smm"

    @property
    def num_steps(self) -> int:
        """Sampling steps of the schedule the targets were made for."""
        return self.schedule.num_steps

    @property
    def num_guided(self) -> int:
        """G: the guided steps the targets cover (the first G of the schedule)."""
        return int(next(iter(self.smms.values())).shape[0]) if self.smms else 0


@dataclass
class AMFSampleResult:
    """latents: final (1, 16, F', h, w) float32 clean latent. losses: guided step index → guidance
    loss before each Adam iteration (AMF: patch²; SMM: smm_loss summed over the blocks).
    timesteps: the model timestep of every sampling step. positions: with optimise "positions",
    the optimised rotary offsets (N, head_dim / 2) float32 on the CPU (else None)."""

    latents: torch.Tensor
    losses: dict[int, list[float]] = field(default_factory=dict)
    timesteps: list[float] = field(default_factory=list)
    positions: torch.Tensor | None = None


def require_wan(model, what: str = "Attention-motion-flow guidance") -> None:
    """Raise InputError unless `model` is a Wan (what: the feature that needs it)."""
    if getattr(model, "kind", None) != "wan":
        raise InputError(f"{what} runs on Wan (dmt.load_wan); got a "
                         f"{getattr(model, 'kind', type(model).__name__)} model.")


def latent_windows(context: ContextOptions | None, num_latent_frames: int) -> list[range] | None:
    """The latent-frame windows of `context` (video frames) on a Wan latent of `num_latent_frames`
    frames, or None when one pass covers it (dmt.transfer.context.latent_context)."""
    return effective_windows(latent_context(context, TEMPORAL_FACTOR), num_latent_frames)


def check_same_windows(made: ContextOptions | None, asked: ContextOptions | None, num_latent_frames: int,
                       what: str) -> None:
    """InversionMismatchError unless `made` and `asked` give the same latent windows and fuse."""
    def key(o):
        return schedule_key(latent_context(o, TEMPORAL_FACTOR), num_latent_frames)

    def name(o):
        wins = latent_windows(o, num_latent_frames)
        if wins is None:
            return "no context windows (one pass)"
        return (f"context windows of {o.length} frames, overlap {o.overlap}, {o.fuse} fuse ({len(wins)} windows of "
                f"{len(wins[0])} latent frames)")

    if key(made) != key(asked):
        raise InversionMismatchError(
            f"The {what} was made with {name(made)}, but {name(asked)} were asked for. Use the same context options "
            f"for inversion, targets and sampling (or invert again with the new ones).")



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
                        settings: AMFSettings = AMFSettings(), *, context: ContextOptions | None = None,
                        on_step: OnStep = no_progress,
                        check_interrupt: CheckInterrupt = never_interrupt) -> AMFTargets:
    """The reference AMF from the reference video's clean latent at sigma 0 (timestep 0).

    Args:
        x0: (1, 16, F', h, w) clean normalised latent of the reference (encode_video), F' >= 2.
        source_prompt: what the reference shows (may be empty).
        settings: block_index, temperature, window, chunk and num_steps are used.
        context: temporal context windows (video frames; None: one pass): each window's latent
            frames go through the transformer alone and give that window's flow.
        on_step: on_step("targets", i, n, None) after each of the n windows (one pass: n = 1).
        check_interrupt: called before each window.
    Returns:
        AMFTargets (flow on the CPU).
    Raises:
        InputError: a model that is not Wan, a latent of another layout or of fewer than 2 latent
            frames, or unusable settings.
    """
    require_wan(model)
    settings.validate()
    z_dim = int(model.vae.config.z_dim)
    if not isinstance(x0, torch.Tensor) or x0.ndim != 5 or tuple(x0.shape[:2]) != (1, z_dim):
        shape = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise InputError(f"The reference latent must have shape (1, {z_dim}, F', h, w) (encode_video); got {shape}.")
    block = settings.block_for(model)
    grid = patch_grid(x0.shape, model.patch_size)
    schedule = flow_schedule(model.scheduler, settings.num_steps)
    wins = latent_windows(context, grid[0]) or [range(grid[0])]
    checkpoint(check_interrupt)
    text = encode_prompt(model, source_prompt)
    flows, pairs = [], []
    with explain_out_of_memory("AMF target extraction"), evaluation():
        for i, w in enumerate(wins):
            checkpoint(check_interrupt)
            xw = x0[:, :, w.start:w.stop]
            q, k = forward_qk(model, xw.to(model.device, torch.float32), 0.0, text, block)
            flow, local = attention_flow(q, k, patch_grid(xw.shape, model.patch_size),
                                         int(model.transformer.config.num_attention_heads), settings.temperature,
                                         settings.window, settings.chunk)
            flows.append(flow.float().cpu())
            pairs += [(f + w.start, g + w.start) for f, g in local]
            del q, k, flow
            on_step("targets", i + 1, len(wins), None)
    return AMFTargets(flow=torch.cat(flows) if len(flows) > 1 else flows[0], pairs=pairs, grid=grid,
                      latent_shape=tuple(x0.shape), block_index=block, temperature=float(settings.temperature),
                      window=settings.window, schedule=schedule, source_prompt=source_prompt,
                      model_fingerprint=model.fingerprint, model_name=model.name, context=context)


def check_made_with(model: Wan, what: str, fingerprint: str, name: str, remedy: str) -> None:
    """Raise InversionMismatchError naming both models when data made with the model
    (`fingerprint`, `name`) does not belong to `model` (what: "These AMF targets", ...)."""
    if not same_model(fingerprint, model.fingerprint):
        raise InversionMismatchError(
            f"{what} were made with the model '{name}' (fingerprint {fingerprint}), but the model given is "
            f"'{model.name}' (fingerprint {model.fingerprint}); {remedy}.")


#: guidance → (what its targets are called, the function that extracts them)
_EXTRACTORS = {"amf": ("attention-flow", "extract_amf_targets"),
               "smm": ("SMM", "dmt.transfer.wan_smm.extract_smm_targets")}


def _check_targets(model: Wan, targets: AMFTargets | WanSMMTargets, settings: AMFSettings) -> None:
    name, extractor = _EXTRACTORS[settings.guidance]
    expected = WanSMMTargets if settings.guidance == "smm" else AMFTargets
    if not isinstance(targets, expected):
        if isinstance(targets, (AMFTargets, WanSMMTargets)):
            raise InputError(f"These are Wan targets for guidance {targets.guidance!r}, but the settings ask for "
                             f"guidance {settings.guidance!r}; use the same guidance for extraction and sampling.")
        kind = getattr(targets, "kind", None) or ("zeroscope" if hasattr(targets, "smms") else type(targets).__name__)
        raise InversionMismatchError(f"These targets are {kind} targets, not Wan {name} targets; extract "
                                     f"them with {extractor} on the Wan model.")
    check_made_with(model, f"These {'SMM' if settings.guidance == 'smm' else 'AMF'} targets",
                    targets.model_fingerprint, targets.model_name, "extract the targets again with this model")
    if settings.guidance == "smm":
        _check_smm_targets(model, targets, settings)
        return
    block = settings.block_for(model)
    made = (targets.block_index, targets.temperature, targets.window, targets.num_steps)
    asked = (block if settings.block_index is not None else targets.block_index, float(settings.temperature),
             settings.window, settings.num_steps)
    if made != asked:
        raise InputError(
            f"The targets were made with block_index {made[0]}, temperature {made[1]:g}, window {made[2]} and "
            f"{made[3]} steps, the settings ask for block_index {asked[0]}, temperature {asked[1]:g}, window "
            f"{asked[2]} and {asked[3]} steps. Use the same settings for extraction and sampling.")


def _check_smm_targets(model: Wan, targets: WanSMMTargets, settings: AMFSettings) -> None:
    blocks = settings.smm_blocks_for(model) if settings.smm_blocks is not None else targets.blocks
    if (tuple(targets.blocks), targets.num_steps) != (tuple(blocks), settings.num_steps):
        raise InputError(f"The targets were made with smm_blocks {tuple(targets.blocks)} and {targets.num_steps} "
                         f"steps, the settings ask for smm_blocks {tuple(blocks)} and {settings.num_steps} steps. "
                         f"Use the same settings for extraction and sampling.")
    if targets.num_guided < settings.num_guided():
        raise InputError(f"The targets cover {targets.num_guided} guided steps, the settings guide "
                         f"{settings.num_guided()}; extract them with the same guided_fraction and iterations.")


GuidanceLoss = Callable[[torch.Tensor, int, float], torch.Tensor]


def _guidance_losses(model: Wan, targets: AMFTargets | WanSMMTargets, settings: AMFSettings, cond: torch.Tensor,
                     guided: int) -> list[tuple[range | None, GuidanceLoss]]:
    """Per context window (None: the whole latent, one pass), its latent frames and loss(latent of
    those frames, step, t) of the chosen guidance at guided step `step` (model timestep t), with
    the targets of the `guided` steps moved to the model's device once (call inside the sampler's
    inference_mode(False) block)."""
    frames = int(targets.latent_shape[2])
    wins = latent_windows(targets.context, frames) or [None]
    parts: list[tuple[range | None, GuidanceLoss]] = []
    if settings.guidance == "smm":
        reference = {b: s[:guided].to(model.device).clone() for b, s in targets.smms.items()}
        start = 0
        for w in wins:
            n = frames if w is None else len(w)
            rows = {b: s[:, start:start + n] for b, s in reference.items()}
            start += n
            parts.append((w, lambda x, step, t, rows=rows: latent_smm_loss(
                model, {b: s[step] for b, s in rows.items()}, x, t, cond, settings.smm_loss)))
        return parts
    flow = targets.flow.to(model.device).clone()
    per = flow.shape[0] // len(wins)
    for i, w in enumerate(wins):
        window = targets if w is None else dataclasses.replace(
            targets, grid=(len(w),) + tuple(targets.grid[1:]), context=None,
            latent_shape=tuple(targets.latent_shape[:2]) + (len(w),) + tuple(targets.latent_shape[3:]))
        window = dataclasses.replace(window, flow=flow[i * per:(i + 1) * per])
        parts.append((w, lambda x, step, t, window=window: latent_amf_loss(model, window, x, t, cond, settings.chunk)))
    return parts


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
    targets: AMFTargets | WanSMMTargets,
    init: torch.Tensor,
    target_prompt: str,
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
    settings: AMFSettings = AMFSettings(),
    *,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
) -> AMFSampleResult:
    """Sample a video whose attention motion flow (guidance "amf") or space-time feature SMMs
    (guidance "smm") follow `targets`.

    Args:
        targets: guidance "amf": AMFTargets from extract_amf_targets with the same model and
            settings (block, temperature, window, num_steps); guidance "smm": WanSMMTargets from
            extract_smm_targets (same smm_blocks and num_steps, covering the guided steps). Their
            schedule gives the sigmas.
        init: (1, 16, F', h, w) latent at the schedule's first sigma (≈ 1; see
            dmt.transfer.wan_transfer.flow_init), of the targets' latent shape.
        target_prompt: what the new video shows (not empty). negative_prompt: CFG's unconditional prompt.
        settings: guidance, guidance_scale, iterations, lr_range, guided_fraction, and chunk
            (AMF) or smm_loss (SMM) are used here.
        on_step: ("guidance", i, total, latent) after each Adam iteration and ("sampling", i,
            total, latent) after each Euler step; total counts both.
        check_interrupt: called before every Adam iteration and every step (dmt.io.progress).
    Returns:
        AMFSampleResult. Sampling is deterministic: the randomness is all in `init`.
    Works inside torch.inference_mode(). The transformer gets no gradients and is not changed:
    its requires_grad flags are restored on every exit path (cancel and errors included).
    """
    require_wan(model)
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

    context = latent_context(targets.context, TEMPORAL_FACTOR)
    if settings.optimise == "positions" and latent_windows(targets.context, int(init.shape[2])) is not None:
        raise InputError("optimise 'positions' runs without context windows (its rotary offsets belong to one "
                         "window's positions): extract the targets without context, or optimise the latent.")
    cond = encode_prompt(model, target_prompt)
    uncond = None if settings.guidance_scale == 1 else encode_prompt(model, negative_prompt)
    result = AMFSampleResult(latents=init, timesteps=timesteps)
    what = f"{settings.guidance.upper()}-guided sampling"
    with torch.inference_mode(False), explain_out_of_memory(what), frozen(model.transformer):
        x = init.detach().to(model.device, torch.float32).clone()
        parts = _guidance_losses(model, targets, settings, cond, guided)
        delta = None  # positions mode: the rotary offsets, optimised in the guided steps, kept after
        if settings.optimise == "positions":
            shape = rope_shape(model.transformer, patch_grid(x.shape, model.patch_size))
            delta = torch.zeros(shape, dtype=torch.float32, device=model.device, requires_grad=True)
        for step, t in enumerate(timesteps):
            if step < guided:
                x_opt = x.detach().clone().requires_grad_(delta is None)
                optimiser = torch.optim.Adam([x_opt if delta is None else delta], lr=lrs[step])
                losses = []
                for _ in range(settings.iterations):
                    checkpoint(check_interrupt)
                    optimiser.zero_grad(set_to_none=True)
                    summed = None
                    with torch.enable_grad(), rope_offset(model.transformer, delta), \
                            native_gradient_checkpointing(model.transformer, settings.gradient_checkpointing):
                        for w, part_loss in parts:  # each window's graph freed before the next
                            loss = part_loss(x_opt if w is None else x_opt[:, :, w.start:w.stop], step, t)
                            loss.backward()
                            summed = loss.detach() if summed is None else summed + loss.detach()
                            del loss
                    optimiser.step()
                    losses.append(summed)
                    tick("guidance", x_opt.detach())
                result.losses[step] = [float(v) for v in torch.stack(losses).cpu()]
                x = x_opt.detach()
                del x_opt, optimiser
            checkpoint(check_interrupt)
            with torch.no_grad(), rope_offset(model.transformer, None if delta is None else delta.detach()):
                v = fused_prediction(lambda xw: _cfg_velocity(model, xw, t, cond, uncond, settings.guidance_scale),
                                     x, context)
                x = euler_step(x, v, sigmas[step], sigmas[step + 1])
            tick("sampling", x)
    result.latents = x
    result.positions = None if delta is None else delta.detach().cpu()
    return result
