"""The DMT nodes (ComfyUI V3 schema). Thin adapters: every computation is a dmt library call."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import folder_paths
import torch
from comfy_api.latest import io

from .. import dmt
from ..dmt.transfer.inversion import DEFAULT_GUIDANCE_WINDOW
from ..dmt.models.latents import DEFAULT_NUM_FRAMES, num_chunks
from ..dmt.models.text import with_prefix
from ..dmt.models.wan_ops import encode_prompts as encode_wan_prompts, prompt_embeddings
from ..dmt.transfer.rope_offsets import position_motion
from ..dmt.transfer.loss import LOSS_FORMS
from ..dmt.settings import TRANSFER as S
from ..dmt.transfer.schedule import check_inversion_covers
from ..dmt.toyworld.card import BUNDLED_MODEL, TOY_ENTRY

from . import model_management, validation
from .validation import widget_range
from .comfy_glue import (CATEGORY, DEFAULT_FOLDER, DOWNLOAD_ENTRY, DMTInversion, DMTModel, DMTPositions, DMTTargets,
                         Progress,
                         check_folder_name, check_interrupt, default_download_folder, find_chosen_folder, find_model_folder,
                         list_model_folders,
                         node_title, run_scope)
from .context_nodes import CONTEXT_TIP, DMTContext
from .motion_patch import applied_motions

SEED_MAX = S["seed"].max  # 0xFFFFFFFFFFFFFFFF
#: the sampler's 'guidance' choices → the library's Wan guidance (None: the model's default)
GUIDANCE_CHOICES = {"auto": None, "smm": "smm", "attention_flow": "amf"}
PROMPT_TIP = "The authors' prefix 'Amazing quality, masterpiece, ' is added in front automatically."


def _cpu(x):
    return x.detach().cpu()


def _ui_text(notes: list[str]) -> dict | None:
    """Notes for the node's UI text (ui "text", as core text nodes use); None when there are none."""
    return {"text": notes} if notes else None


def _is_wan(model) -> bool:
    """True for a model from 'Load Wan (DMT)' (the nodes then run Wan's stages)."""
    return getattr(model, "kind", "zeroscope") == "wan"


def _wan_frame_count(node: str, images, frame_count: int, start_frame: int, frame_stride: int) -> tuple[int, list[str]]:
    """The frame count to use on Wan (4k + 1) and notes: 0 ('all') takes the largest 4k + 1 the
    video gives (noted); an explicit count Wan cannot take is refused naming the nearest ones."""
    if frame_count > 0:
        try:
            return dmt.check_wan_frames(frame_count), []
        except dmt.InputError as exc:
            raise dmt.InputError(f"'frame_count' in '{node}': {exc}") from None
    available = len(range(start_frame, int(images.shape[0]), max(frame_stride, 1))) if isinstance(images, torch.Tensor) else 0
    usable = 4 * ((available - 1) // 4) + 1 if available >= 5 else 0
    if usable < 5:
        raise dmt.InputError(f"'{node}': Wan needs at least 5 frames (4k + 1: 5, 9, ..., 81); from 'start_frame' "
                             f"{start_frame} with 'frame_stride' {frame_stride} the video gives {available}.")
    notes = [] if usable == available else [
        f"'{node}': Wan takes 4k + 1 frames, so {usable} of the {available} frames were used (frame_count 0 = all)."]
    return usable, notes


def _encode_wan_prompts(model, prompts: list[str]) -> dict:
    """Wan's prompts, encoded before the transformer is loaded: ComfyUI loads the text encoder
    alone for this and may evict it when the transformer needs the room, so Wan's UMT5-XXL (about
    11 GB in bf16) never has to share the GPU with the transformer (see wan_ops.prompt_embeddings)."""
    with run_scope(model, ("text_encoder",)):
        return encode_wan_prompts(model, [p for p in prompts if isinstance(p, str)])


def _require_targets(targets) -> dmt.Targets:
    if targets is None:
        raise dmt.InputError(
            "No SMM targets: the loaded inversion file holds none. Connect 'Extract SMM Targets' instead."
        )
    return targets


class DMTLoadZeroScope(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        folders = list_model_folders()
        options = folders + [DOWNLOAD_ENTRY, TOY_ENTRY]
        return io.Schema(
            node_id="DMTLoadZeroScope",
            display_name="Load ZeroScope (DMT)",
            category=CATEGORY,
            description=(
                "Loads the ZeroScope v2 text-to-video model that motion transfer runs on, from a "
                "diffusers folder in ComfyUI/models/diffusers/. Pick the 'download' entry to fetch "
                f"{dmt.DEFAULT_MODEL} (about 3 GB) into models/diffusers/{DEFAULT_FOLDER} the first "
                "time; later runs load it from there. ZeroScope's weights are licensed CC BY-NC 4.0. The "
                "'dmt-toyworld' entry is the pack's own tiny toy model (64x64, coloured shapes; bundled, offline): "
                "the 'dmt_toyworld_demo' workflow shows the method working with it on a CPU."
            ),
            inputs=[
                io.Combo.Input(
                    "model_name", options=options,
                    default=DEFAULT_FOLDER if DEFAULT_FOLDER in folders else DOWNLOAD_ENTRY,
                    tooltip=(
                        "A ZeroScope diffusers folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/) "
                        f"under models/diffusers/, or the download entry, which fills models/diffusers/"
                        f"{DEFAULT_FOLDER} from the Hugging Face hub when it is missing or incomplete, or the "
                        "bundled toy-world demo model (offline; only knows coloured balls, squares and triangles)."
                    ),
                ),
                io.Combo.Input(
                    "dtype", options=["float16", "bfloat16", "float32"], default="float16",
                    tooltip="Weights precision. float16 is the authors' choice on a GPU; use float32 on a CPU.",
                ),
                io.Combo.Input(
                    "device", options=["auto", "cpu"], default="auto",
                    tooltip=("'auto' uses ComfyUI's main device (your GPU when there is one; the CPU under --cpu), "
                             "managed like ComfyUI's own models: loaded when a DMT node runs, offloaded to make room "
                             "for others and by 'Free model and node cache'. 'cpu' forces the CPU (very slow)."),
                ),
            ],
            outputs=[DMTModel.Output("model", display_name="model", tooltip="The loaded ZeroScope model (unet, vae, text encoder, scheduler).")],
        )

    @classmethod
    def execute(cls, model_name: str, dtype: str, device: str) -> io.NodeOutput:
        if model_name == TOY_ENTRY:
            folder = BUNDLED_MODEL
        elif model_name == DOWNLOAD_ENTRY:
            folder = find_model_folder(DEFAULT_FOLDER) or default_download_folder()
            if dmt.missing_files(folder):
                dmt.download_model(dmt.DEFAULT_MODEL, folder)
        else:
            folder = find_chosen_folder(model_name, "a ZeroScope diffusers folder", DOWNLOAD_ENTRY)
        return io.NodeOutput(model_management.load_managed(dmt.load_zeroscope, folder, model_name, dtype, device))


class DMTInvertVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTInvertVideo",
            display_name="DDIM Invert Video (DMT)",
            category=CATEGORY,
            description=(
                "Step 1 of motion transfer: cuts and resizes the input video, encodes it with the VAE and "
                "inverts it with a prompt describing the input video (DDIM inversion on ZeroScope, flow "
                "inversion on Wan). The result is reused by every later step, so it is computed only once "
                "per video (ComfyUI caches it)."
            ),
            inputs=[
                DMTModel.Input("model", tooltip="ZeroScope from 'Load ZeroScope (DMT)', or Wan from 'Load Wan (DMT)'."),
                io.Image.Input("images", tooltip="The input video as frames (e.g. from Get Video Components); at least 2 frames."),
                io.String.Input(
                    "source_prompt", multiline=True, default="",
                    tooltip="Describes the INPUT video (e.g. 'a dog jumping on the grass'). " + PROMPT_TIP,
                ),
                io.Int.Input(
                    "inversion_steps", **widget_range(S["inversion_steps"]),
                    tooltip=("DDIM inversion steps (authors: 999). Fewer is faster; the number must visit every "
                             "guided timestep (for 50 sampling steps: 50, 100, 200, 250, 500 or 999). ZeroScope only: "
                             "Wan inverts along its sampling steps."),
                ),
                io.Int.Input("width", **widget_range(S["width"]),
                             tooltip="Width the frames are resized to (multiple of 8; ZeroScope's native width is 576; Wan: multiple of 16, native 832)."),
                io.Int.Input("height", **widget_range(S["height"]),
                             tooltip="Height the frames are resized to (multiple of 8; ZeroScope's native 320; Wan: multiple of 16, native 480)."),
                io.Int.Input("frame_count", **widget_range(S["num_frames"], default=DEFAULT_NUM_FRAMES),
                             tooltip=("How many frames to use (ZeroScope's native length is 24; Wan takes 4k + 1: 33, 81, "
                                      "...; 0 = all, on Wan the most 4k + 1 there are). More frames need "
                                      "more memory. A count above what the video gives (after start_frame and "
                                      "frame_stride) is refused.")),
                io.Int.Input("start_frame", **widget_range(S["start"]),
                             tooltip="Index of the first input frame to use."),
                io.Int.Input("frame_stride", **widget_range(S["stride"]),
                             tooltip="Use every n-th frame (2 = every second frame, faster motion)."),
                io.Int.Input(
                    "sampling_steps", **widget_range(S["steps"]),
                    tooltip=("The sampling steps the inverted latents are kept for; use the same value as "
                             "'Extract SMM Targets' (authors: 50)."),
                ),
                DMTContext.Input("context", optional=True, tooltip=CONTEXT_TIP),
            ],
            outputs=[DMTInversion.Output("inversion", display_name="inversion", tooltip="The inverted video (clean and noisy latents, settings).")],
        )

    @classmethod
    def execute(cls, model, images, source_prompt: str, inversion_steps: int, width: int, height: int,
                frame_count: int, start_frame: int, frame_stride: int, sampling_steps: int,
                context=None) -> io.NodeOutput:
        title = node_title(cls)
        validation.check_frame_count(title, images, frame_count, start_frame, frame_stride)
        if _is_wan(model):
            return cls._execute_wan(model, title, images, source_prompt, width, height, frame_count, start_frame,
                                    frame_stride, sampling_steps, context)
        frames = dmt.prepare_frames(images, width, height, frame_count or None, start_frame, frame_stride)
        # Fail before the long inversion when its steps cannot serve the authors' guidance window.
        check_inversion_covers(model.scheduler, inversion_steps,
                               dmt.make_schedule(model.scheduler, sampling_steps).guided)
        notes = validation.prompt_notes(title, model, {"source_prompt": source_prompt}, prefixed=("source_prompt",))
        progress = Progress(num_chunks(frames.shape[0]), then={"inversion": inversion_steps})
        with run_scope(model) as low_memory, applied_motions(model):
            with model_management.vae_on_device(model, low_memory):
                x0 = dmt.encode_frames(model, frames, on_step=progress, check_interrupt=check_interrupt)
            # keep_all: 'Extract SMM Targets' may choose any guidance window after this node ran.
            inversion = dmt.invert_latents(model, x0, with_prefix(source_prompt), inversion_steps, sampling_steps,
                                           on_step=progress, check_interrupt=check_interrupt, context=context,
                                           keep_all=True)
        return io.NodeOutput(inversion, ui=_ui_text(notes))

    @classmethod
    def _execute_wan(cls, model, title: str, images, source_prompt: str, width: int, height: int, frame_count: int,
                     start_frame: int, frame_stride: int, sampling_steps: int, context) -> io.NodeOutput:
        """Wan: Euler flow inversion along the sampling steps (inversion_steps is ZeroScope's), in
        the context windows when connected (video frames, acting on latent frames)."""
        try:
            dmt.check_wan_size(width, height, model.patch_size)
        except dmt.InputError as exc:
            raise dmt.InputError(f"'width'/'height' in '{title}': {exc}") from None
        count, notes = _wan_frame_count(title, images, frame_count, start_frame, frame_stride)
        frames = dmt.prepare_frames(images, width, height, count, start_frame, frame_stride)
        notes += validation.prompt_notes(title, model, {"source_prompt": source_prompt})
        progress = Progress(1, then={"inversion": sampling_steps})
        embeddings = _encode_wan_prompts(model, [source_prompt])
        with run_scope(model, ("unet", "vae")) as low_memory, applied_motions(model), \
                prompt_embeddings(model, embeddings):
            with model_management.vae_on_device(model, low_memory):
                inversion = dmt.invert_wan_video(model, frames, source_prompt, sampling_steps, context=context,
                                                 on_step=progress, check_interrupt=check_interrupt)
        return io.NodeOutput(inversion, ui=_ui_text(notes))


class DMTExtractTargets(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTExtractTargets",
            display_name="Extract SMM Targets (DMT)",
            category=CATEGORY,
            description=(
                "Step 2: measures how the input video moves. For each guided denoising step it reads "
                "the model's space-time features of the inverted video and keeps their per-frame means "
                "(SMM); on Wan also the attention motion flow between frames. The sampler steers the new "
                "video to move the same way."
            ),
            inputs=[
                DMTModel.Input("model", tooltip="The same model (ZeroScope or Wan) that inverted the video."),
                DMTInversion.Input("inversion", tooltip="From 'DDIM Invert Video (DMT)'."),
                io.Float.Input("guidance_min", **widget_range(S["guidance_window"], index=0), step=0.05,
                               tooltip=("Guidance stops at this fraction of the schedule: 0.6 guides the first 40% "
                                        "of the steps (authors). Lower = stronger motion lock, slower. Wan: 0.8 guides "
                                        "the first 20% (DiTFlow).")),
                io.Float.Input("guidance_max", **widget_range(S["guidance_window"], index=1), step=0.05,
                               tooltip=("Where sampling starts (1.0 = from pure noise, authors). Below 1 the first "
                                        "steps are skipped, like img2img strength. Wan: always 1.0.")),
                io.Int.Input("sampling_steps", **widget_range(S["steps"]),
                             tooltip="DDIM sampling steps of the sampler (authors: 50). Must match the inversion's sampling steps."),
                DMTContext.Input("context", optional=True, tooltip=CONTEXT_TIP),
            ],
            outputs=[DMTTargets.Output("targets", display_name="targets", tooltip="Motion targets (SMMs; on Wan also attention motion flows) and the sampling schedule.")],
        )

    @classmethod
    def execute(cls, model, inversion, guidance_min: float, guidance_max: float, sampling_steps: int,
                context=None) -> io.NodeOutput:
        title = node_title(cls)
        window = S["guidance_window"].default
        validation.check_finite(title, {"guidance_min": guidance_min, "guidance_max": guidance_max},
                                {"guidance_min": window[0], "guidance_max": window[1]})
        for i, (widget, value) in enumerate((("guidance_min", guidance_min), ("guidance_max", guidance_max))):
            validation.check_setting(title, widget, S["guidance_window"], value, index=i)
        validation.check_setting(title, "sampling_steps", S["steps"], sampling_steps)
        if _is_wan(model):
            return cls._execute_wan(model, title, inversion, guidance_min, guidance_max, sampling_steps, context)
        validation.check_sampling_steps(title, node_title(DMTInvertVideo), inversion, sampling_steps)
        given = {} if context is None else {"context": context}  # unconnected: follow the inversion
        with run_scope(model, ("unet", "text_encoder")), applied_motions(model):
            targets = dmt.extract_targets(model, inversion, (guidance_min, guidance_max), sampling_steps,
                                          on_step=Progress(1), check_interrupt=check_interrupt, **given)
        return io.NodeOutput(targets)

    @classmethod
    def _execute_wan(cls, model, title: str, inversion, guidance_min: float, guidance_max: float,
                     sampling_steps: int, context) -> io.NodeOutput:
        """Wan: both attention-flow and SMM targets (the sampler's 'guidance' picks one); the first
        (1 - guidance_min) of the steps are guided (0.8: DiTFlow's 20 %)."""
        if guidance_max != 1.0:
            raise dmt.InputError(f"'guidance_max' in '{title}' is {guidance_max:g}; on Wan sampling always starts from "
                                 f"noise, so set it to 1.0 (and 'guidance_min' to 0.8 to guide the first 20 % of the "
                                 f"steps, as DiTFlow does).")
        if isinstance(inversion, dmt.FlowInversion):
            made = 0 if inversion.sigmas is None else inversion.sigmas.numel() - 1
            if made != sampling_steps:
                raise dmt.InputError(
                    f"'sampling_steps' is {sampling_steps} in '{title}' but {made} in '{node_title(DMTInvertVideo)}' "
                    f"(the inversion follows the sampling schedule). Use the same value in both.")
        settings = dmt.AMFSettings(num_steps=sampling_steps, guided_fraction=round(1.0 - guidance_min, 6))
        prompts = [inversion.source_prompt] if isinstance(inversion, dmt.FlowInversion) else []
        embeddings = _encode_wan_prompts(model, prompts)
        with run_scope(model, ("unet",)), applied_motions(model), prompt_embeddings(model, embeddings):
            given = {} if context is None else {"context": context}  # unconnected: follow the inversion
            targets = dmt.extract_wan_targets(model, inversion, settings, on_step=Progress(1),
                                              check_interrupt=check_interrupt, **given)
        return io.NodeOutput(targets)


class DMTLowFrequencyInit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTLowFrequencyInit",
            display_name="Low-Frequency Noise Init (DMT)",
            category=CATEGORY,
            description=(
                "Step 3: the starting noise of the new video. Keeps the coarse layout (low frequencies) "
                "of the inverted input video and replaces the fine detail with fresh noise from the seed, "
                "so the new video starts roughly where the input's objects are."
            ),
            inputs=[
                DMTInversion.Input("inversion", tooltip="From 'DDIM Invert Video (DMT)'."),
                DMTTargets.Input("targets", tooltip="From 'Extract SMM Targets (DMT)': sets the timestep sampling starts at."),
                io.Int.Input("seed", **widget_range(S["seed"]), control_after_generate=True,
                             tooltip="Seed of the fresh high-frequency noise; change it for a different variation."),
                io.Int.Input("downsample_factor", **widget_range(S["downsample_factor"]),
                             tooltip=("How coarse the kept layout is (authors: 4). Higher keeps less of the input's "
                                      "layout; 1 keeps the inverted noise unchanged. Valid: 1 to min(width, height) / 8 "
                                      "of the inverted video (40 at 576x320, 8 at 64x64): the downsampled latent must "
                                      "keep at least 1 pixel per side.")),
            ],
            outputs=[io.Latent.Output("latent", display_name="latent", tooltip="Initial video latent {'samples': (1, 4, frames, h, w)}.")],
        )

    @classmethod
    def execute(cls, inversion, targets, seed: int, downsample_factor: int) -> io.NodeOutput:
        targets = _require_targets(targets)
        title = node_title(cls)
        if isinstance(inversion, dmt.FlowInversion) or isinstance(targets, dmt.WanTargets):
            return cls._execute_wan(title, inversion, targets, seed, downsample_factor)
        validation.check_same_inversion(title, node_title(DMTInvertVideo), node_title(DMTExtractTargets), inversion, targets)
        validation.check_downsample_factor(title, inversion, downsample_factor)
        latent = dmt.low_frequency_init(inversion, seed, downsample_factor,
                                        start_timestep=targets.schedule.timesteps[0])
        return io.NodeOutput({"samples": _cpu(latent)})

    @classmethod
    def _execute_wan(cls, title: str, inversion, targets, seed: int, downsample_factor: int) -> io.NodeOutput:
        """Wan: the flow inversion's latent at the first sigma, low-passed, plus the seed's high frequencies."""
        if not (isinstance(inversion, dmt.FlowInversion) and isinstance(targets, dmt.WanTargets)):
            raise dmt.InversionMismatchError(
                f"'{title}' got a {'Wan' if isinstance(inversion, dmt.FlowInversion) else 'ZeroScope'} inversion and "
                f"{'Wan' if isinstance(targets, dmt.WanTargets) else 'ZeroScope'} targets; make both with the same "
                f"model (connect them to the same '{node_title(DMTInvertVideo)}').")
        validation.check_same_inversion(title, node_title(DMTInvertVideo), node_title(DMTExtractTargets), inversion,
                                        targets)
        validation.check_downsample_factor(title, inversion, downsample_factor)
        latent = dmt.flow_init(inversion, "low_frequency", seed, downsample_factor)
        return io.NodeOutput({"samples": _cpu(latent)})


class DMTGuidedSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTGuidedSampler",
            display_name="SMM-Guided Sampler (DMT)",
            category=CATEGORY,
            description=(
                "Step 4: generates the new video from the target prompt. In the first denoising steps it "
                "nudges the latent so its space-time features move like the input video's, then denoises "
                "with classifier-free guidance and decodes the frames. Changing only the prompt or seed "
                "re-runs only this node."
            ),
            inputs=[
                DMTModel.Input("model", tooltip="The same model (ZeroScope or Wan) used for the targets."),
                DMTTargets.Input("targets", tooltip="From 'Extract SMM Targets (DMT)'."),
                io.Latent.Input("latent", tooltip="From 'Low-Frequency Noise Init (DMT)'."),
                io.String.Input("target_prompt", multiline=True, default="",
                                tooltip="What the NEW video shows (e.g. 'a dolphin jumping in the ocean'). " + PROMPT_TIP),
                io.String.Input("negative_prompt", multiline=True, default=S["negative_prompt"].default,
                                tooltip="What to avoid (the unconditional prompt of classifier-free guidance)."),
                io.Float.Input("cfg", **widget_range(S["guidance_scale"]), step=0.5,
                               tooltip="Classifier-free guidance scale (authors: 10; Wan's own: 5). Higher follows the prompt more closely."),
                io.Int.Input("optimization_steps", **widget_range(S["optimization_steps"]),
                             tooltip=("Adam iterations per guided step (authors: 10; DiTFlow on Wan: 5). More = motion follows the input "
                                      "more closely, slower; 0 = no motion guidance.")),
                io.Float.Input("lr_start", **widget_range(S["lr_range"], index=0), step=0.0005, round=0.0001,
                               tooltip="Learning rate of the first guided step (authors: 0.007; DiTFlow on Wan: 0.002)."),
                io.Float.Input("lr_end", **widget_range(S["lr_range"], index=1), step=0.0005, round=0.0001,
                               tooltip="Learning rate of the last guided step (authors: 0.004; DiTFlow on Wan: 0.001); linear in between."),
                io.Boolean.Input("restart_sampling", default=not S["no_restart"].default,
                                 tooltip="Re-noise and denoise every step a second time (authors: on). Off is about 2x faster. ZeroScope only."),
                io.Combo.Input("loss", options=list(LOSS_FORMS), default=S["loss"].default,
                               tooltip="Motion loss: 'cosine' (authors' code, default) or 'l2' (the paper's printed form)."),
                io.Int.Input("seed", **widget_range(S["seed"]), control_after_generate=True,
                             tooltip="Seed of the restart-sampling noise."),
                io.Boolean.Input("gradient_checkpointing", default=S["gradient_checkpointing"].default, optional=True,
                                 tooltip=("Low-memory guided steps: recompute the UNet's activations in the backward "
                                          "pass instead of keeping them. Same result, less GPU memory, slower.")),
                DMTContext.Input("context", optional=True, tooltip=CONTEXT_TIP),
                io.Combo.Input("guidance", options=list(GUIDANCE_CHOICES), default="auto", optional=True,
                               tooltip=("What the motion guidance matches. 'smm': the paper's space-time feature "
                                        "means (ZeroScope's only choice; on Wan read from transformer blocks). "
                                        "'attention_flow': DiTFlow's attention motion flow, the patch-to-patch "
                                        "displacements a Wan self-attention block sees between frames (Wan only). "
                                        "'auto': smm on ZeroScope, attention_flow on Wan.")),
                io.Combo.Input("optimise", options=["latent", "positions"], default="latent", optional=True,
                               tooltip=("What the guided steps change. 'latent': the video's latent (the paper's and "
                                        "DiTFlow's main mode). 'positions' (Wan only): Wan's rotary positions instead "
                                        "(DiTFlow's positional mode); the 'positions' output then carries the input's "
                                        "motion to other prompts without guidance: Save Positions, or connect it to "
                                        "Text to Video.")),
            ],
            outputs=[
                io.Image.Output("images", display_name="images", tooltip="The new video's frames; connect to Create Video / Save Animated WEBP."),
                io.Latent.Output("final_latent", display_name="latent", tooltip="The final latent {'samples': (1, 4, frames, h, w)}."),
                DMTPositions.Output("positions", display_name="positions",
                                    tooltip="With optimise 'positions' (Wan): the optimised positional offsets; else empty."),
            ],
        )

    @classmethod
    def execute(cls, model, targets, latent, target_prompt: str, negative_prompt: str, cfg: float,
                optimization_steps: int, lr_start: float, lr_end: float, restart_sampling: bool, loss: str,
                seed: int, gradient_checkpointing: bool = False, context=None, guidance: str = "auto",
                optimise: str = "latent") -> io.NodeOutput:
        targets = _require_targets(targets)
        title = node_title(cls)
        if guidance not in GUIDANCE_CHOICES:
            raise dmt.InputError(f"'guidance' in '{title}' is {guidance!r}; choose one of {', '.join(GUIDANCE_CHOICES)}.")
        if optimise not in ("latent", "positions"):
            raise dmt.InputError(f"'optimise' in '{title}' is {optimise!r}; choose 'latent' or 'positions'.")
        if optimise == "positions" and not _is_wan(model):
            raise dmt.InputError(f"'optimise' in '{title}' is 'positions', which moves Wan's rotary positions; "
                                 f"ZeroScope has none: set 'optimise' to 'latent'.")
        if guidance == "attention_flow" and not _is_wan(model):
            raise dmt.InputError(f"'guidance' in '{title}' is 'attention_flow', which reads a Wan transformer's "
                                 f"attention; ZeroScope runs the paper's SMM guidance: set 'guidance' to 'smm' or 'auto'.")
        lrs = S["lr_range"].default
        validation.check_finite(title, {"cfg": cfg, "lr_start": lr_start, "lr_end": lr_end},
                                {"cfg": S["guidance_scale"].default, "lr_start": lrs[0], "lr_end": lrs[1]})
        validation.check_setting(title, "cfg", S["guidance_scale"], cfg)
        validation.check_setting(title, "optimization_steps", S["optimization_steps"], optimization_steps)
        for i, (widget, value) in enumerate((("lr_start", lr_start), ("lr_end", lr_end))):
            validation.check_setting(title, widget, S["lr_range"], value, index=i)
        if _is_wan(model):
            return cls._execute_wan(model, title, targets, latent, target_prompt, negative_prompt, cfg,
                                    optimization_steps, lr_start, lr_end, restart_sampling, loss,
                                    gradient_checkpointing, context, guidance, optimise)
        validation.check_latent_fits(title, node_title(DMTLowFrequencyInit), node_title(DMTInvertVideo),
                                     latent["samples"] if isinstance(latent, dict) else latent, targets)
        notes = validation.prompt_notes(title, model, {"target_prompt": target_prompt, "negative_prompt": negative_prompt},
                                        prefixed=("target_prompt",))
        settings = dmt.GuidanceSettings(guidance_scale=cfg, optimization_steps=optimization_steps,
                                        lr_range=(lr_start, lr_end), restart_sampling=restart_sampling, loss=loss,
                                        gradient_checkpointing=gradient_checkpointing)
        given = {} if context is None else {"context": context}  # unconnected: follow the targets
        progress = Progress(1, previews=True, then={"decode": num_chunks(latent["samples"].shape[2])})
        with run_scope(model) as low_memory, applied_motions(model):
            if low_memory:  # ComfyUI's --lowvram/--novram: the checkpointed guided step (same result)
                settings = dataclasses.replace(settings, gradient_checkpointing=True)
            result = dmt.guided_sample(model, targets, latent["samples"], target_prompt, negative_prompt,
                                       settings, seed=seed, on_step=progress, check_interrupt=check_interrupt, **given)
            with model_management.vae_on_device(model, low_memory):
                frames = dmt.decode_latents(model, result.latents, on_step=progress, check_interrupt=check_interrupt)
        return io.NodeOutput(_cpu(frames), {"samples": _cpu(result.latents)}, None, ui=_ui_text(notes))

    @classmethod
    def _execute_wan(cls, model, title: str, targets, latent, target_prompt: str, negative_prompt: str, cfg: float,
                     optimization_steps: int, lr_start: float, lr_end: float, restart_sampling: bool, loss: str,
                     gradient_checkpointing: bool, context, guidance: str, optimise: str = "latent") -> io.NodeOutput:
        """Wan: Euler sampling with attention-flow or SMM guidance (dmt.wan_guided_sample), then decode."""
        if not isinstance(targets, dmt.WanTargets):
            raise dmt.InversionMismatchError(f"'{title}' got ZeroScope targets but a Wan model; extract the targets "
                                             f"with the Wan model ('{node_title(DMTExtractTargets)}').")
        samples = latent["samples"] if isinstance(latent, dict) else latent
        if not isinstance(samples, torch.Tensor) or tuple(samples.shape) != targets.latent_shape:
            shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
            raise dmt.InputError(f"'{title}' got a latent {shape} but the targets were made from a latent "
                                 f"{targets.latent_shape}; connect 'latent' to the '{node_title(DMTLowFrequencyInit)}' "
                                 f"made from the same inversion.")
        notes = [f"'{title}': 'restart_sampling' is ZeroScope's; Wan's Euler sampler has no restart, so it was "
                 f"not used."] if restart_sampling else []
        notes += validation.prompt_notes(title, model, {"target_prompt": target_prompt, "negative_prompt": negative_prompt})
        settings = dmt.AMFSettings(num_steps=targets.num_steps, guidance_scale=cfg, iterations=optimization_steps,
                                   lr_range=(lr_start, lr_end), guided_fraction=targets.guided_fraction,
                                   guidance=GUIDANCE_CHOICES[guidance] or "amf", smm_loss=loss,
                                   gradient_checkpointing=gradient_checkpointing, optimise=optimise)
        try:
            settings.validate()
        except dmt.InputError as exc:  # the library names its settings: say which widget that is
            raise dmt.InputError(f"'{title}' on Wan: {exc} (widgets: cfg = guidance_scale, optimization_steps = "
                                 f"iterations, lr_start/lr_end = lr_range)") from None
        progress = Progress(1, then={"decode": 1})
        embeddings = _encode_wan_prompts(model, [target_prompt, negative_prompt])
        with run_scope(model, ("unet", "vae")) as low_memory, applied_motions(model), \
                prompt_embeddings(model, embeddings):
            if low_memory:  # ComfyUI's --lowvram/--novram: the checkpointed guided step (same result)
                settings = dataclasses.replace(settings, gradient_checkpointing=True)
            given = {} if context is None else {"context": context}  # unconnected: follow the targets
            result = dmt.wan_guided_sample(model, targets, samples, target_prompt, negative_prompt, settings,
                                           on_step=progress, check_interrupt=check_interrupt, **given)
            with model_management.vae_on_device(model, low_memory):
                frames = dmt.decode_wan_latents(model, result.latents, on_step=progress,
                                                check_interrupt=check_interrupt)
        positions = None if result.positions is None else position_motion(
            model, result.positions, targets.latent_shape, targets.amf.source_prompt,
            {"guidance": settings.guidance, "steps": settings.num_steps, "iterations": settings.iterations,
             "lr_range": list(settings.lr_range), "guided_fraction": settings.guided_fraction})
        return io.NodeOutput(_cpu(frames), {"samples": _cpu(result.latents)}, positions, ui=_ui_text(notes))


# --- saving and loading inversions ---------------------------------------------------------

INVERSION_SUFFIX = ".safetensors"


def _inversion_files() -> list[str]:
    """*.safetensors under input/ (plain names) and output/ (annotated '[output]')."""
    found = []
    for base, note in ((folder_paths.get_input_directory(), ""), (folder_paths.get_output_directory(), " [output]")):
        if not os.path.isdir(base):
            continue
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                if f.endswith(INVERSION_SUFFIX):
                    rel = os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/")
                    found.append(rel + note)
    return sorted(found)


def _resolve_inversion_file(name: str) -> Path:
    plain = name[: -len(" [output]")] if name.endswith(" [output]") else name
    base = folder_paths.get_output_directory() if plain != name else folder_paths.get_input_directory()
    rel = check_folder_name(plain)
    path = os.path.abspath(os.path.join(base, rel))
    if os.path.commonpath([path, os.path.abspath(base)]) != os.path.abspath(base):
        raise dmt.InversionMismatchError(f"'{name}' points outside ComfyUI's input/output folders.")
    return Path(path)


class DMTSaveInversion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTSaveInversion",
            display_name="Save Inversion (DMT)",
            category=CATEGORY,
            description=(
                "Saves an inversion (and optionally its SMM targets) to ComfyUI's output folder as a "
                ".safetensors file, so a long 999-step inversion can be reused later with 'Load Inversion (DMT)'. "
                "The file keeps only the latents later steps read: those of the targets' guidance window, or of "
                "the authors' window (0.6-1.0) when no targets are connected."
            ),
            is_output_node=True,
            inputs=[
                DMTInversion.Input("inversion", tooltip="From 'DDIM Invert Video (DMT)'."),
                io.String.Input("filename_prefix", default="dmt/inversion",
                                tooltip="File name prefix inside the output folder; a counter is appended."),
                DMTTargets.Input("targets", optional=True, tooltip="Optional: save the SMM targets in the same file."),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, inversion, filename_prefix: str, targets=None) -> io.NodeOutput:
        out_dir = folder_paths.get_output_directory()
        full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, out_dir)
        name = f"{filename}_{counter:05}_{INVERSION_SUFFIX}"
        ui = {"inversions": [{"filename": name, "subfolder": subfolder, "type": "output"}]}
        if isinstance(inversion, dmt.FlowInversion):  # Wan: the inversion alone (targets take seconds to redo)
            dmt.save_inversion(Path(full_folder) / name, inversion)
            if targets is not None:
                ui["text"] = [f"'{node_title(cls)}': Wan targets are not saved; the file holds the inversion. Connect "
                              f"'Load Inversion' to '{node_title(DMTExtractTargets)}' to make them again."]
            return io.NodeOutput(ui=ui)
        dmt.save_inversion(Path(full_folder) / name, inversion, targets,
                           guidance_window=None if targets is not None else DEFAULT_GUIDANCE_WINDOW)
        return io.NodeOutput(ui=ui)


class DMTLoadInversion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        files = _inversion_files()
        return io.Schema(
            node_id="DMTLoadInversion",
            display_name="Load Inversion (DMT)",
            category=CATEGORY,
            description=(
                "Loads an inversion saved by 'Save Inversion (DMT)' (a .safetensors file from ComfyUI's "
                "input folder, or output folder marked [output]) instead of inverting the video again. "
                "The file is checked against the model."
            ),
            inputs=[
                DMTModel.Input("model", tooltip="The model (ZeroScope or Wan) the inversion was made with (checked)."),
                io.Combo.Input("file", options=files, default=files[0] if files else None,
                               tooltip="A saved DMT inversion (.safetensors)."),
            ],
            outputs=[
                DMTInversion.Output("inversion", display_name="inversion", tooltip="The saved inversion."),
                DMTTargets.Output("targets", display_name="targets", tooltip="The saved SMM targets (only when the file holds them)."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, model, file: str):
        path = _resolve_inversion_file(file)
        return f"{file}:{path.stat().st_mtime_ns if path.exists() else 'missing'}"

    @classmethod
    def execute(cls, model, file: str) -> io.NodeOutput:
        path = _resolve_inversion_file(file)
        inversion, targets = dmt.load_inversion(path, device=model.device, model_fingerprint=model.fingerprint,
                                                model_kind=getattr(model, "kind", "zeroscope"))
        return io.NodeOutput(inversion, targets)


NODES: list[type[io.ComfyNode]] = [
    DMTLoadZeroScope, DMTInvertVideo, DMTExtractTargets, DMTLowFrequencyInit, DMTGuidedSampler,
    DMTSaveInversion, DMTLoadInversion,
]
