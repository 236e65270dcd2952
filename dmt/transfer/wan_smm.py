"""SMM targets on Wan 2.1: the paper's space-time feature targets, read from transformer blocks.

For every guided step k (the first G = AMFSettings.num_guided() of the schedule), the reference's
flow-inversion latent at sigmas[k] goes through the transformer with the source prompt (no CFG)
at timestep sigmas[k] · 1000, up to the last chosen block; each chosen block's SMM
(dmt.transfer.block_features) is the target of step k. This is the paper's recipe (features of
the DDIM-inverted x_t at every guided t) with Wan's Euler flow inversion in place of DDIM's.

Where the latents at sigmas[k] come from: `invert_wan(..., keep_steps=G)` keeps the first G
latents of the inversion path it computes anyway (FlowInversion.trajectory, on the CPU), so the
targets cost G truncated transformer calls and G latents of host memory, and no extra inversion.
Re-noising the clean latent along the straight line (1 − σ)·x0 + σ·ε with the inverted noise
would cost as little but gives latents off the inverted path (Euler inversion is not a straight
line), i.e. not the latents the features of the paper's targets are read from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import InputError, InversionMismatchError, explain_out_of_memory
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..models.grad_modes import evaluation
from ..models.wan import Wan
from ..models.wan_ops import encode_prompt
from .amf_guidance import AMFSettings, WanSMMTargets, check_made_with, latent_windows, require_wan
from .attention_flow import patch_grid
from .block_features import latent_smms
from .flow_matching import FlowSchedule, flow_schedule

if TYPE_CHECKING:
    from .wan_transfer import FlowInversion

__all__ = ["extract_smm_targets", "check_inversion_schedule"]

SMM_DEFAULTS = AMFSettings(guidance="smm")


def check_inversion_schedule(made: torch.Tensor | None, schedule: FlowSchedule) -> None:
    """Raise InversionMismatchError unless an inversion's sigmas `made` ((N + 1,) or None) are the
    sampling schedule's."""
    if made is None or made.shape != schedule.sigmas.shape or not torch.allclose(made, schedule.sigmas):
        raise InversionMismatchError(
            f"This inversion was made along {0 if made is None else made.numel() - 1} steps, sampling uses "
            f"{schedule.num_steps}; set AMFSettings(num_steps=...) to match or invert again.")


def _trajectory(model: Wan, inversion: FlowInversion, settings: AMFSettings) -> torch.Tensor | None:
    """The inversion's kept latents (K, 1, 16, F', h, w), checked against the model and schedule."""
    check_made_with(model, "This inversion", inversion.model_fingerprint, inversion.model_name,
                    "invert the video again with this model")
    guided = settings.num_guided()
    kept = inversion.trajectory
    if guided and (kept is None or kept.shape[0] < guided):
        raise InputError(f"SMM targets need the reference's flow-inversion latents at the {guided} guided steps; "
                         f"this inversion keeps {0 if kept is None else kept.shape[0]}. Invert with "
                         f"invert_wan(..., keep_steps={guided}) (dmt.transfer does this itself).")
    if guided:
        check_inversion_schedule(inversion.sigmas, flow_schedule(model.scheduler, settings.num_steps))
    return kept


def extract_smm_targets(model: Wan, inversion: FlowInversion, settings: AMFSettings = SMM_DEFAULTS, *,
                        on_step: OnStep = no_progress,
                        check_interrupt: CheckInterrupt = never_interrupt) -> WanSMMTargets:
    """The reference's SMMs at every guided step, from its kept flow-inversion latents.

    Args:
        inversion: a FlowInversion from invert_wan with keep_steps >= settings.num_guided(), along
            the schedule of settings.num_steps, made with this model; its source_prompt is used.
        settings: num_steps, guided_fraction, iterations (they fix G) and smm_blocks are used;
            `guidance` need not be "smm" here.
        The inversion's context windows (FlowInversion.context) are followed: each window's latent
        frames go through the transformer alone, and the rows hold the windows' SMMs in turn.
        on_step: ("targets", k, G, None) after each guided step's forward(s).
        check_interrupt: called before each forward (a cancel point).
    Returns:
        WanSMMTargets with smms block → (G, F', D) float32 on the CPU (G = 0: empty rows, no forward;
        with windows, Σ window lengths rows of frames instead of F').
    Raises:
        InputError: a model that is not Wan, unusable settings or blocks, an inversion that keeps
            too few latents. InversionMismatchError: an inversion of another model or schedule.
    """
    require_wan(model, "SMM guidance")
    settings.validate()
    blocks = settings.smm_blocks_for(model)
    kept = _trajectory(model, inversion, settings)
    schedule = flow_schedule(model.scheduler, settings.num_steps)
    grid = patch_grid(inversion.x0.shape, model.patch_size)
    guided = settings.num_guided()
    config = model.transformer.config
    width = int(config.num_attention_heads) * int(config.attention_head_dim)
    wins = latent_windows(inversion.context, grid[0]) or [range(grid[0])]
    rows: dict[int, list[torch.Tensor]] = {b: [] for b in blocks}
    if guided:
        checkpoint(check_interrupt)
        text = encode_prompt(model, inversion.source_prompt)
        with explain_out_of_memory("SMM target extraction"), evaluation():
            for k in range(guided):
                parts: dict[int, list[torch.Tensor]] = {b: [] for b in blocks}
                for w in wins:
                    checkpoint(check_interrupt)
                    smms = latent_smms(model, kept[k][:, :, w.start:w.stop].to(model.device, torch.float32),
                                       float(schedule.timesteps[k]), text, blocks)
                    for b in blocks:
                        parts[b].append(smms[b][0].cpu())
                    del smms
                for b in blocks:
                    rows[b].append(torch.cat(parts[b]) if len(parts[b]) > 1 else parts[b][0])
                on_step("targets", k + 1, guided, None)
    frames = sum(len(w) for w in wins)
    smms = {b: torch.stack(r) if r else torch.zeros(0, frames, width) for b, r in rows.items()}
    return WanSMMTargets(smms=smms, blocks=blocks, grid=grid, latent_shape=tuple(inversion.x0.shape),
                         schedule=schedule, source_prompt=inversion.source_prompt,
                         model_fingerprint=model.fingerprint, model_name=model.name, context=inversion.context)
