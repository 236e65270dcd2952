"""Motion customization nodes (ComfyUI V3 schema): teach ZeroScope or Wan a motion from a few example
clips, save/load it under models/dmt_motions, apply it to the model, and generate videos.
Thin adapters: every computation is a dmt.customize call."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import folder_paths
import torch
from comfy_api.latest import io

from .. import dmt
from ..dmt import customize
from ..dmt.models.interface import kind_of
from ..dmt.models.wan_ops import encode_prompts as encode_wan_prompts, prompt_embeddings
from ..dmt.settings import GENERATE, TRAIN

from . import model_management
from .comfy_glue import CATEGORY, DMTModel, DMTPositions, Progress, check_interrupt, check_relative_name, run_scope
from .motion_patch import motions_of, with_motion
from .validation import widget_range

log = logging.getLogger("dmt")

SEED_MAX = TRAIN["seed"].max  # 0xFFFFFFFFFFFFFFFF
MOTION_FOLDER = "dmt_motions"
TRAINING_FOLDER = "dmt_training"  # resumable training states, under ComfyUI's output folder
MOTION_SUFFIX = ".safetensors"

MotionExamplesType = io.Custom("DMT_MOTION_EXAMPLES")
MotionType = io.Custom("DMT_MOTION")


def register_motion_folder(folder: str = MOTION_FOLDER) -> None:
    """models/<folder> as ComfyUI model folder <folder> (extra_model_paths.yaml may add more):
    "dmt_motions" here, "dmt_positions" for Wan's positional offsets (positions_nodes.py)."""
    if folder not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[folder] = (
            [os.path.join(folder_paths.models_dir, folder)], {MOTION_SUFFIX})


register_motion_folder()


@dataclass(frozen=True)
class MotionExamples:
    """What DMT_MOTION_EXAMPLES carries: prepared clips (dmt.customize.MotionExample) and the motion
    token their captions contain (None for regularization clips, which need no token)."""

    items: tuple
    token: str | None


# --- motion files ------------------------------------------------------------------------------

def motion_roots(folder: str = MOTION_FOLDER) -> list[str]:
    return folder_paths.get_folder_paths(folder)


def check_motion_name(name: str, folder: str = MOTION_FOLDER) -> str:
    """A relative '/'-separated name inside models/<folder>; refuses absolute paths, drives and '..'."""
    return check_relative_name(name, "motion file name", f"models/{folder}", dmt.InputError)


def _inside(root: str, rel: str, folder: str = MOTION_FOLDER) -> Path:
    root_abs = os.path.abspath(root)
    path = os.path.abspath(os.path.join(root_abs, rel))
    if os.path.commonpath([path, root_abs]) != root_abs:
        raise dmt.InputError(f"Motion name '{rel}' points outside models/{folder}.")
    return Path(path)


def list_motion_files(folder: str = MOTION_FOLDER) -> list[str]:
    return sorted(f for f in folder_paths.get_filename_list(folder) if f.endswith(MOTION_SUFFIX))


def find_motion_file(name: str, folder: str = MOTION_FOLDER, saver: str = "Save Motion (DMT)") -> Path:
    """The file `name` in one of the models/<folder> roots (MotionFileError naming `saver` when absent)."""
    rel = check_motion_name(name, folder)
    for root in motion_roots(folder):
        path = _inside(root, rel, folder)
        if path.is_file():
            return path
    raise customize.MotionFileError(
        f"Motion file '{name}' was not found in {motion_roots(folder)}. Save one with '{saver}' or put a "
        f"DMT .safetensors file there, then refresh."
    )


def save_path(name: str, folder: str = MOTION_FOLDER) -> Path:
    rel = check_motion_name(name, folder)
    if not rel.endswith(MOTION_SUFFIX):
        rel += MOTION_SUFFIX
    return _inside(motion_roots(folder)[0], rel, folder)


def _frames(images) -> torch.Tensor:
    return images.detach().float().cpu()


# --- nodes ---------------------------------------------------------------------------------------

class DMTMotionExamples(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTMotionExamples",
            display_name="Motion Examples (DMT)",
            category=CATEGORY,
            description=(
                "One example clip of the motion to teach, with a caption that names the motion by its token "
                "(e.g. 'a person doing the sks dance'). The clip is cut to the training frame count, "
                "centre-cropped and resized to the training size. Chain several of these nodes (examples "
                "input) to collect a few clips; leave the token empty to make regularization clips instead."
            ),
            inputs=[
                io.Image.Input("images", tooltip="The clip as frames (e.g. Load Video → Get Video Components)."),
                io.String.Input("caption", multiline=True, default="a person doing the sks dance",
                                tooltip="What the clip shows, with the token naming the motion, e.g. 'a man doing the sks dance in a park'."),
                io.String.Input("token", default=customize.DEFAULT_TOKEN,
                                tooltip=("The rare word that names the new motion (default 'sks'); it must appear in the "
                                         "caption. Empty: a regularization clip (related motion, no token needed).")),
                io.Int.Input("frame_count", **widget_range(TRAIN["frames"]),
                             tooltip="Training frames per clip (default 16; Wan: 4k + 1, e.g. 17); the clip must have at least this many."),
                io.Int.Input("width", **widget_range(TRAIN["width"]), tooltip="Training width (multiple of 8, Wan: of 16; default 256)."),
                io.Int.Input("height", **widget_range(TRAIN["height"]), tooltip="Training height (multiple of 8, Wan: of 16; default 256)."),
                io.Int.Input("frame_stride", **widget_range(TRAIN["stride"]), tooltip="Use every n-th frame of the clip."),
                MotionExamplesType.Input("examples", optional=True,
                                        tooltip="Clips collected so far (from another Motion Examples node); this clip is added to them."),
            ],
            outputs=[MotionExamplesType.Output("collected", display_name="examples",
                                              tooltip="The collected clips with their captions; connect to 'Train Motion (DMT)'.")],
        )

    @classmethod
    def execute(cls, images, caption: str, token: str, frame_count: int, width: int, height: int,
                frame_stride: int, examples: MotionExamples | None = None) -> io.NodeOutput:
        tok = customize.examples.check_token(token) if token and token.strip() else None
        if examples is not None and examples.token != tok:
            raise dmt.InputError(
                f"This clip's token {tok!r} differs from the chained examples' token {examples.token!r}: "
                f"use one token for every clip of a motion (empty only for regularization clips)."
            )
        index = len(examples.items) + 1 if examples is not None else 1
        ex = customize.example_from_frames(_frames(images), caption, tok, frame_count, height, width, frame_stride,
                                           source=f"clip {index}")
        if examples is not None and examples.items and tuple(examples.items[0].frames.shape) != tuple(ex.frames.shape):
            raise dmt.InputError(
                f"Clip {index} is {tuple(ex.frames.shape)[:3]} (frames, height, width) but the chained clips are "
                f"{tuple(examples.items[0].frames.shape)[:3]}: use the same frame count and size on every Motion Examples node."
            )
        items = (*(examples.items if examples is not None else ()), ex)
        return io.NodeOutput(MotionExamples(items=items, token=tok))


class DMTTrainMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTTrainMotion",
            display_name="Train Motion (DMT)",
            category=CATEGORY,
            description=(
                "Teaches the model the motion of the example clips, bound to their token (motion customization, "
                "Materzyńska et al. 2023). ZeroScope: only the temporal layers and the key/value projections of the "
                "cross-attention are tuned; Wan: the self-attention and the cross-attention's key/value of every "
                "block, with Wan's flow-matching objective (clips of 4k + 1 frames). LoRA by default; the loaded "
                "model stays unchanged. Outputs the motion (save it or apply it; it works on the kind of model it "
                "was trained on), the loss curve and a validation clip made with the motion."
            ),
            inputs=[
                DMTModel.Input("model", tooltip="ZeroScope or Wan from its Load node (left exactly as loaded)."),
                MotionExamplesType.Input("examples", tooltip="Example clips from 'Motion Examples (DMT)' (every caption names the token)."),
                io.Combo.Input("mode", options=list(customize.MODES), default=TRAIN["mode"].default,
                               tooltip="'lora' (default: small file, less memory) or 'full' (the paper's: the same weights tuned directly)."),
                io.Int.Input("rank", **widget_range(TRAIN["rank"]), tooltip="LoRA rank (default 32; ignored in full mode)."),
                io.Int.Input("steps", **widget_range(TRAIN["steps"]),
                             tooltip=("Training steps (default 400). With 'resume', raising it continues a finished "
                                      "or stopped run of the same settings and clips.")),
                # 0 stands for the library's "not given" (the mode's default rate)
                io.Float.Input("learning_rate", **widget_range(TRAIN["lr"], default=0.0), step=0.00001, round=False,
                               tooltip="AdamW learning rate; 0 = the default of the mode (5e-4 for lora, 1e-5 for full)."),
                io.Combo.Input("timesteps", options=list(customize.TIMESTEP_MODES), default=TRAIN["timesteps"].default,
                               tooltip="Timestep sampling: 'coarse' (default) favours the noisy steps where motion forms; 'uniform' samples all equally."),
                io.Float.Input("reg_weight", **widget_range(TRAIN["reg_weight"]), step=0.1,
                               tooltip="Weight λ of the regularization clips' loss (used only when regularization is connected)."),
                io.Int.Input("seed", **widget_range(TRAIN["seed"]), control_after_generate=True,
                             tooltip="Seed of the data order, timesteps, noise and LoRA initialisation."),
                io.String.Input("validation_prompt", multiline=True, default="",
                                tooltip="Prompt of the validation clip made with the motion after training (empty = the first example caption)."),
                # 0 = no validation clip (the node's own switch; the library's range starts at 1)
                io.Int.Input("validation_steps", **widget_range(TRAIN["validation_steps"], min=0),
                             tooltip="Sampling steps of the validation clip (0 = no validation clip; a black frame is output)."),
                io.Float.Input("validation_guidance", **widget_range(TRAIN["validation_guidance"]), step=0.5,
                               tooltip="Classifier-free guidance of the validation clip."),
                io.Boolean.Input("gradient_checkpointing", default=False,
                                 tooltip="Recompute layer activations in the backward pass: less GPU memory, slower."),
                MotionExamplesType.Input("regularization", optional=True,
                                        tooltip=("Optional regularization clips of related motions with their own captions "
                                                 "(Motion Examples with an empty token): keeps the model from forgetting them.")),
                io.Int.Input("checkpoint_every", **widget_range(TRAIN["checkpoint_every"]), optional=True,
                             tooltip=(f"Save the resumable training state every N steps (default "
                                      f"{TRAIN['checkpoint_every'].default}; 0 = only at the end and on Cancel) in "
                                      f"ComfyUI/output/{TRAINING_FOLDER}/<run>/, where <run> is named from the model, "
                                      "clips, captions, token and settings. Cancel also saves it; a crash loses at "
                                      "most N steps.")),
                io.Boolean.Input("resume", default=True, optional=True,
                                 tooltip=("Continue a stopped (Cancel, crash, restart) or finished run of the same model, "
                                          "clips, token and settings from its saved state instead of starting over; "
                                          "'steps' may be raised. Off: start fresh (replaces that run's state).")),
            ],
            outputs=[
                MotionType.Output("motion", display_name="motion", tooltip="The trained motion; connect to 'Save Motion' or 'Apply Motion'."),
                io.Image.Output("loss_curve", display_name="loss curve", tooltip="The training loss per step (and its moving average)."),
                io.Image.Output("validation", display_name="validation frames",
                                tooltip="A clip generated from the validation prompt with the motion applied."),
            ],
        )

    @classmethod
    def execute(cls, model, examples: MotionExamples, mode: str, rank: int, steps: int, learning_rate: float,
                timesteps: str, reg_weight: float, seed: int, validation_prompt: str, validation_steps: int,
                validation_guidance: float, gradient_checkpointing: bool,
                regularization: MotionExamples | None = None,
                checkpoint_every: int = TRAIN["checkpoint_every"].default, resume: bool = True) -> io.NodeOutput:
        if not examples.items:
            raise dmt.InputError("No example clips: connect 'Motion Examples (DMT)'.")
        if examples.token is None:
            raise dmt.InputError("The examples have no motion token: give the token (e.g. 'sks') on 'Motion Examples (DMT)'.")
        settings = customize.TrainSettings(
            mode=mode, rank=rank, steps=steps, lr=learning_rate or None, timesteps=timesteps, reg_weight=reg_weight,
            seed=seed, checkpoint_every=checkpoint_every, validation_every=0, gradient_checkpointing=gradient_checkpointing)
        settings.validate()
        frames, height, width = examples.items[0].frames.shape[:3]
        gen = customize.GenerateSettings(int(frames), int(height), int(width), max(validation_steps, 1),
                                         validation_guidance, seed)
        if validation_steps:
            gen.validate()
        reg_items = list(regularization.items) if regularization is not None else []
        work = training_folder(model, examples, reg_items, settings)
        note = describe_start(work, resume, steps)
        log.info("DMT: Train Motion: %s", note)
        progress = Progress(steps, previews=kind_of(model) != "wan")

        def encode() -> tuple[list, list]:
            # the run's own encode cache: a resume trains on exactly the latents it started with
            encoded = customize.encode_examples(model, list(examples.items), work / "cache", on_step=progress,
                                                check_interrupt=check_interrupt)
            reg = customize.encode_examples(model, reg_items, work / "cache", on_step=progress,
                                            check_interrupt=check_interrupt) if reg_items else []
            return encoded, reg

        embeddings: dict = {}
        if kind_of(model) == "wan":
            # Wan: clips and prompts first, with only the VAE and the text encoder loaded, so that
            # ComfyUI can evict the UMT5-XXL text encoder (~11 GB) before the transformer trains.
            with run_scope(model, ("vae", "text_encoder")):
                encoded, reg = encode()
                if validation_steps:
                    prompt = validation_prompt.strip() or encoded[0].caption
                    embeddings = encode_wan_prompts(model, [prompt, dmt.DEFAULT_NEGATIVE_PROMPT])
        # Loaded through ComfyUI's model management; in low-VRAM mode the VAE still comes to the
        # device for this node (it encodes the clips and decodes the validation clip).
        parts = ("unet", "vae") if kind_of(model) == "wan" else ("unet", "vae", "text_encoder")
        with run_scope(model, parts) as low_memory, model_management.vae_on_device(model, low_memory), \
                prompt_embeddings(model, embeddings):
            if kind_of(model) != "wan":
                encoded, reg = encode()
            result = customize.train_motion(model, encoded, examples.token, settings, regularization=reg,
                                            work_dir=work, resume=resume, snapshots=False,
                                            on_step=progress, check_interrupt=check_interrupt)
            if validation_steps:
                prompt = validation_prompt.strip() or encoded[0].caption
                clip = customize.generate_video(model, prompt, motions=[(result.motion, 1.0)], settings=gen,
                                                on_step=progress, check_interrupt=check_interrupt).frames
            else:
                clip = torch.zeros(1, int(height), int(width), 3)
        done = (f"continued from step {result.resumed_from} to {steps}" if result.resumed_from
                else f"trained {steps} steps from the start")
        summary = f"{done}; training state in {work}"
        log.info("DMT: Train Motion: %s", summary)
        curve = torch.from_numpy(result.loss_curve).float().div(255).unsqueeze(0)
        return io.NodeOutput(result.motion, curve, clip.detach().float().cpu(), ui={"text": [note, summary]})


def training_folder(model, examples: MotionExamples, regularization: list, settings) -> Path:
    """ComfyUI/output/dmt_training/<token>-<mode>-<key>: the work folder (resumable state, encode
    cache, loss log) of this run, named by dmt.customize.train.training_key (model, clips,
    captions, token, settings; not the step count), so a run finds its own state again and a
    different configuration never reuses it."""
    from ..dmt.customize.train import training_key

    key = training_key(model, list(examples.items), regularization, examples.token, settings)
    return Path(folder_paths.get_output_directory()) / TRAINING_FOLDER / f"{examples.token}-{settings.mode}-{key[:16]}"


def describe_start(work: Path, resume: bool, steps: int) -> str:
    """What Train Motion is about to do with the state in `work`, in one line (log and node text)."""
    from ..dmt.customize.train_state import read_train_state_info, state_path

    info = read_train_state_info(state_path(work))
    if info is None:
        return f"no saved state for these settings and clips: training from step 0 of {steps}"
    if not resume:
        return f"'resume' is off: starting from step 0 of {steps} (replaces the saved state at step {info['step']})"
    if info["step"] > steps:
        raise dmt.InputError(
            f"The saved training state of this run is at step {info['step']}, past 'steps' {steps} in 'Train Motion "
            f"(DMT)': set 'steps' to {info['step']} or more to continue it, or turn 'resume' off to start again "
            f"(it is in {work})."
        )
    if info["step"] == steps:
        return f"this run already finished {steps} steps: using its saved state (no training)"
    return f"resuming from the saved state at step {info['step']} of {steps}"


class DMTSaveMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTSaveMotion",
            display_name="Save Motion (DMT)",
            category=CATEGORY,
            description=(
                f"Saves a trained motion to ComfyUI/models/{MOTION_FOLDER}/<name>.safetensors (only the trained "
                "tensors plus metadata: token, mode, training settings, base model). The file is written under a "
                "temporary name and renamed, so a failed or cancelled save never leaves a broken file."
            ),
            is_output_node=True,
            inputs=[
                MotionType.Input("motion", tooltip="From 'Train Motion (DMT)'."),
                io.String.Input("name", default="dmt_motion",
                                tooltip=(f"File name inside models/{MOTION_FOLDER} ('.safetensors' is added; sub-folders with '/'). "
                                         "An existing file of that name is replaced.")),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, motion, name: str) -> io.NodeOutput:
        path = save_path(name)
        customize.save_motion(path, motion)
        rel = os.path.relpath(path, motion_roots()[0]).replace(os.sep, "/")
        log.info("DMT: saved motion to %s", path)
        return io.NodeOutput(ui={"text": [f"saved models/{MOTION_FOLDER}/{rel}"], "motions": [{"filename": rel}]})


class DMTLoadMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        files = list_motion_files()
        return io.Schema(
            node_id="DMTLoadMotion",
            display_name="Load Motion (DMT)",
            category=CATEGORY,
            description=(
                f"Loads a motion saved by 'Save Motion (DMT)' from ComfyUI/models/{MOTION_FOLDER}. Files that are "
                "not DMT motions, truncated or damaged are refused with a message. Press 'R' (refresh) after saving a new one."
            ),
            inputs=[
                io.Combo.Input("motion_name", options=files, default=files[0] if files else None,
                               tooltip=f"A DMT motion file (.safetensors) in models/{MOTION_FOLDER}."),
            ],
            outputs=[MotionType.Output("motion", display_name="motion", tooltip="The loaded motion; connect to 'Apply Motion (DMT)'.")],
        )

    @classmethod
    def fingerprint_inputs(cls, motion_name: str):
        try:
            path = find_motion_file(motion_name)
            return f"{motion_name}:{path.stat().st_mtime_ns}"
        except dmt.DMTError:
            return f"{motion_name}:missing"

    @classmethod
    def execute(cls, motion_name: str) -> io.NodeOutput:
        return io.NodeOutput(customize.load_motion(find_motion_file(motion_name)))


class DMTApplyMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTApplyMotion",
            display_name="Apply Motion (DMT)",
            category=CATEGORY,
            description=(
                "Adds a motion to the model for the nodes that use it (Text to Video; the motion transfer nodes "
                "too). The loaded model itself stays unchanged: the motion is patched in only while those nodes "
                "run, and restored exactly afterwards. Chain two Apply Motion nodes to combine two motions, "
                "each with its own strength. Name the motion by its token in the prompt."
            ),
            inputs=[
                DMTModel.Input("model", tooltip="ZeroScope or Wan from its Load node or another Apply Motion node (the kind the motion was trained on)."),
                MotionType.Input("motion", tooltip="From 'Load Motion (DMT)' or 'Train Motion (DMT)'."),
                io.Float.Input("strength", default=1.0, min=0.0, max=customize.MAX_STRENGTH, step=0.05,
                               tooltip="1 = as trained, 0 = off, up to 2 = exaggerated."),
            ],
            outputs=[DMTModel.Output("patched_model", display_name="model", tooltip="The model with the motion to apply.")],
        )

    @classmethod
    def execute(cls, model, motion, strength: float) -> io.NodeOutput:
        if motion.base_fingerprint and not motion.same_base(model.fingerprint):
            log.warning("DMT: motion '%s' was trained on another base model (%s); applying it anyway.",
                        motion.token, motion.info.get("base_model_name"))
        return io.NodeOutput(with_motion(model, motion, strength))


class DMTTextToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTTextToVideo",
            display_name="Text to Video (DMT)",
            category=CATEGORY,
            description=(
                "Generates a video from a prompt with ZeroScope (DDIM) or Wan (Euler flow steps; 4k + 1 frames, "
                "sides multiples of 16), classifier-free guidance, with the motions "
                "of 'Apply Motion (DMT)' applied: write their token in the prompt, e.g. 'a bear doing the sks dance "
                "on the beach'. Outputs frames for the core video nodes (Create Video, Save Video)."
            ),
            inputs=[
                DMTModel.Input("model", tooltip="ZeroScope or Wan, usually through 'Apply Motion (DMT)'."),
                io.String.Input("prompt", multiline=True, default="a bear doing the sks dance on the beach",
                                tooltip="What the video shows; name a motion by its token."),
                io.String.Input("negative_prompt", multiline=True, default=dmt.DEFAULT_NEGATIVE_PROMPT,
                                tooltip="What to avoid (the unconditional prompt of classifier-free guidance)."),
                io.Int.Input("frame_count", **widget_range(GENERATE["frames"]),
                             tooltip="Frames to generate (default 16, as the motion was trained; Wan: 4k + 1, e.g. 17)."),
                io.Int.Input("width", **widget_range(GENERATE["width"]), tooltip="Width (multiple of 8, Wan: of 16; default 256)."),
                io.Int.Input("height", **widget_range(GENERATE["height"]), tooltip="Height (multiple of 8, Wan: of 16; default 256)."),
                io.Int.Input("steps", **widget_range(GENERATE["steps"]), tooltip="Sampling steps (default 40; DDIM on ZeroScope, Euler flow steps on Wan)."),
                io.Float.Input("guidance", **widget_range(GENERATE["guidance"]), step=0.5,
                               tooltip="Classifier-free guidance scale (default 9; 1 = none)."),
                io.Int.Input("seed", **widget_range(GENERATE["seed"]), control_after_generate=True,
                             tooltip="Seed of the initial noise (the same seed gives the same video on any device)."),
                DMTPositions.Input("positions", optional=True,
                                   tooltip=("Wan only: positional offsets from 'Load Positions (DMT)' or a sampler with "
                                            "optimise 'positions': the video moves like that reference (use its frame "
                                            "count and size).")),
            ],
            outputs=[io.Image.Output("images", display_name="images",
                                     tooltip="The video's frames; connect to Create Video / Save Animated WEBP.")],
        )

    @classmethod
    def execute(cls, model, prompt: str, negative_prompt: str, frame_count: int, width: int, height: int,
                steps: int, guidance: float, seed: int, positions=None) -> io.NodeOutput:
        settings = customize.GenerateSettings(frame_count, height, width, steps, guidance, seed)
        wan = kind_of(model) == "wan"
        embeddings: dict = {}
        if wan and isinstance(prompt, str) and prompt.strip():  # Wan: the prompts first (see Train Motion)
            with run_scope(model, ("text_encoder",)):
                embeddings = encode_wan_prompts(model, [prompt, negative_prompt or ""])
        parts = ("unet", "vae") if wan else ("unet", "vae", "text_encoder")
        with run_scope(model, parts) as low_memory, model_management.vae_on_device(model, low_memory), \
                prompt_embeddings(model, embeddings):
            result = customize.generate_video(model, prompt, motions=motions_of(model), negative_prompt=negative_prompt,
                                              settings=settings, positions=positions,
                                              on_step=Progress(steps, previews=kind_of(model) != "wan"),
                                              check_interrupt=check_interrupt)
        return io.NodeOutput(result.frames.detach().float().cpu())


NODES: list[type[io.ComfyNode]] = [
    DMTMotionExamples, DMTTrainMotion, DMTSaveMotion, DMTLoadMotion, DMTApplyMotion, DMTTextToVideo,
]
