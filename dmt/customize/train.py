"""Training a motion: the plain diffusion objective on the example clips, only the motion layers
tuned (see trainable.py), optional prior preservation, resumable bit-exactly.

Per optimiser step and per gradient-accumulation micro-step, from one CPU generator seeded with
`seed` (so every draw is reproducible and restorable):
  example i ~ U{examples}, t ~ timestep_density(mode), ε ~ N(0, I) (drawn on the CPU);
  x_t = √ᾱ_t · x0 + √(1−ᾱ_t) · ε  (the DDPM forward process of the model's scheduler);
  L = ‖ε_θ(x_t, t, caption) − ε‖² (mean over elements);
  with regularization clips, one reg clip j with its own t and ε goes in the same UNet batch and
  L += λ · ‖ε_θ(x_t^reg, t, caption_j) − ε^reg‖².
On Wan the same loop runs the flow-matching objective instead (dmt.models.interface: σ from the
drawn step and the model's flow shift, x_t = (1 − σ)·x0 + σ·ε, the transformer's velocity
regressed onto ε − x0); everything else is shared. The loss divided by the accumulation count is back-propagated; AdamW (β 0.9/0.999, weight decay
0.01, constant lr: 5e-4 for lora, 1e-5 for full) steps once per step. fp16/bf16 models run under
autocast in their dtype (fp16 with a GradScaler); the trained tensors are fp32.

Work folder (optional, needed for checkpoints and resume):
  state.safetensors              latest resumable state (trained tensors, AdamW state, RNG, step)
  checkpoints/motion_step_000100.safetensors   the motion at that step
  checkpoints/validation_step_000100_<k>.mp4   validation clip k at that step (step 0 = before training)
  loss.jsonl                     one record per step; loss.png the curve (at the end)
A cancel (check_interrupt, an exception from on_step, Ctrl-C caught by the caller as
Interrupted) between steps writes the state first, so `resume=True` continues from that step with
the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DMTError, InputError, explain_out_of_memory
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..io.video import write_video
from ..models.memory import gradient_checkpointing, on_device
from ..models.text import DEFAULT_NEGATIVE_PROMPT
from ..models.unet import autocast_for
from ..models.interface import kind_of, model_ops
from ..models.wan import Wan
from ..models.zeroscope import ZeroScope
from ..settings import TRAIN
from .encode import EncodedExample, content_key, encode_text_cached
from .examples import DEFAULT_TOKEN, MotionExample, caption_has_token, check_token
from .generate import GenerateSettings, sample_latents
from .loss_curve import append_loss_log, draw_loss_curve, read_loss_log, save_loss_curve, write_loss_log
from .motion_file import Motion, save_motion
from .train_state import load_train_state, save_train_state, state_path as train_state_path
from .trainable import DEFAULT_RANK, TrainableSet, check_mode, trainable, trainable_modules

DEFAULT_LR = {"lora": 5e-4, "full": 1e-5}  # TRAIN["lr"]'s "not given"
DEFAULT_STEPS: int = TRAIN["steps"].default  # 400
DEFAULT_CHECKPOINT_EVERY: int = TRAIN["checkpoint_every"].default  # 100


@dataclass(frozen=True)
class TrainSettings:
    """Training settings (defaults in brackets; ranges and defaults in dmt.settings.TRAIN).

    mode: "lora" [default] or "full". rank [32], lora_alpha [= rank]: LoRA size and scale.
    steps [400]: optimiser steps. lr [None → 5e-4 lora, 1e-5 full]. weight_decay [0.01] (AdamW).
    gradient_accumulation [1]: micro-steps per optimiser step.
    timesteps: "coarse" [default] or "uniform" (see timesteps.py). reg_weight λ [1.0].
    seed [0]: data order, timesteps, noise and the LoRA init.
    checkpoint_every [100]: steps between checkpoints (0: only at the end).
    validation_every [None = checkpoint_every; 0 = never]: steps between validation clips; also at
        step 0 (before training) when on. validation_prompts [() = the first example caption].
    validation_steps [25], validation_guidance [9.0], validation_seed [0]: sampling of those clips.
    gradient_checkpointing [False]: recompute layer activations (dmt.models.memory), less memory.
    offload_encoders [True]: on a GPU, park the VAE and text encoder on the CPU while training.
    """

    mode: str = TRAIN["mode"].default
    rank: int = DEFAULT_RANK
    lora_alpha: float | None = None
    steps: int = DEFAULT_STEPS
    lr: float | None = TRAIN["lr"].default
    weight_decay: float = 1e-2
    gradient_accumulation: int = TRAIN["gradient_accumulation"].default
    timesteps: str = TRAIN["timesteps"].default
    reg_weight: float = TRAIN["reg_weight"].default
    seed: int = TRAIN["seed"].default
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    validation_every: int | None = TRAIN["validation_every"].default
    validation_prompts: tuple[str, ...] = ()
    validation_steps: int = TRAIN["validation_steps"].default
    validation_guidance: float = TRAIN["validation_guidance"].default
    validation_seed: int = 0
    gradient_checkpointing: bool = False
    offload_encoders: bool = True

    def learning_rate(self) -> float:
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.mode]

    def validation_interval(self) -> int:
        return self.checkpoint_every if self.validation_every is None else int(self.validation_every)

    def validate(self) -> None:
        """Raise InputError for any unusable value (before any heavy work); the ranges are
        dmt.settings.TRAIN's."""
        check_mode(self.mode, self.rank)
        for name in ("steps", "lr", "gradient_accumulation", "timesteps", "reg_weight", "seed", "checkpoint_every",
                     "validation_every"):
            TRAIN[name].check(getattr(self, name))
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise InputError(f"Weight decay must be >= 0; got {self.weight_decay}.")
        if self.lora_alpha is not None and (not math.isfinite(self.lora_alpha) or self.lora_alpha <= 0):
            raise InputError(f"LoRA alpha must be positive; got {self.lora_alpha}.")
        if self.validation_interval() > 0:
            TRAIN["validation_steps"].check(self.validation_steps)
            TRAIN["validation_guidance"].check(self.validation_guidance)

    def resume_key(self) -> str:
        """Hash of the settings that must not change between a run and its resume (steps,
        checkpoint and validation settings may)."""
        return content_key("train", self.mode, self.rank, self.lora_alpha, self.learning_rate(), self.weight_decay,
                           self.gradient_accumulation, self.timesteps, self.reg_weight, self.seed)


@dataclass
class TrainResult:
    """motion: the trained Motion. losses: one record per step ({"step", "loss", "example_loss",
    "reg_loss", "t"}). validation: step → list of clips (F, H, W, 3) in [0, 1] (CPU).
    loss_curve: (H, W, 3) uint8 RGB. resumed_from: the step training continued from (0: fresh).
    work_dir: the work folder (None without one)."""

    motion: Motion
    losses: list[dict]
    validation: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    loss_curve: np.ndarray | None = None
    resumed_from: int = 0
    work_dir: Path | None = None


def _check_data(examples: list[EncodedExample], regularization: list[EncodedExample], token: str) -> None:
    if not examples:
        raise InputError("No example clips: give at least one clip of the motion with a caption containing the token.")
    for ex in examples:
        if not caption_has_token(ex.caption, token):
            raise InputError(f"The caption of example '{ex.source or ex.caption}' does not contain the motion "
                             f"token '{token}': \"{ex.caption}\".")
    shape = tuple(examples[0].latents.shape)
    for ex in list(examples) + list(regularization):
        if tuple(ex.latents.shape) != shape or ex.latents.ndim != 5:
            raise InputError(
                f"Clip '{ex.source or ex.caption}' has latents {tuple(ex.latents.shape)} but the first example "
                f"{shape}: every example and regularization clip must have the same frame count and size."
            )


def data_key(examples: list[EncodedExample], regularization: list[EncodedExample]) -> str:
    """Hash of the training data (a resume must see the same clips and captions)."""
    parts = []
    for ex in list(examples) + ["|"] + list(regularization):
        parts += ["|"] if isinstance(ex, str) else [ex.latents, ex.text]
    return content_key("data", *parts)


def training_key(model: ZeroScope, examples: list[MotionExample], regularization: list[MotionExample], token: str,
                 settings: TrainSettings) -> str:
    """A name for a training run (32 hex chars) from what a resume must not change: the base model,
    the clips' pixels and captions (before encoding, so it is known before the VAE runs), the
    token and the settings' resume_key (steps, checkpoint and validation settings excluded). The
    ComfyUI node names its work folder with it, so a run finds its own state again and never
    another configuration's."""
    parts: list = [model.fingerprint, check_token(token), settings.resume_key()]
    for ex in list(examples) + ["|"] + list(regularization):
        parts += ["|"] if isinstance(ex, str) else [ex.frames, ex.caption]
    return content_key("run", *parts)


def _resume_mismatch(saved: dict, keys: dict) -> str | None:
    """What differs between a saved state's keys and this run's, in words (None: nothing). States
    written before the model fingerprint was recorded have no "model" key: not compared."""
    what = {"settings": "different settings", "data": "different example or regularization clips",
            "model": "a different base model"}
    differ = [what[k] for k in keys if (k in saved or k != "model") and saved.get(k) != keys[k]]
    return " and ".join(differ) or None


def build_motion(ts: TrainableSet, unet: torch.nn.Module, model: ZeroScope | Wan, token: str, settings: TrainSettings,
                 steps_done: int, latent_shape: tuple[int, ...], extra: dict | None = None) -> Motion:
    """A Motion from the current trainable tensors, with the training metadata (the base
    model's kind among it: a motion is refused by the other model)."""
    from .. import __version__

    shapes = dict(ts.base_shapes)
    kind = kind_of(model)
    frames, height, width = model_ops(model).pixel_size(model, latent_shape)
    info = {
        "steps": steps_done, "lr": settings.learning_rate(), "timesteps": settings.timesteps,
        "weight_decay": settings.weight_decay, "gradient_accumulation": settings.gradient_accumulation,
        "reg_weight": settings.reg_weight, "seed": settings.seed,
        "num_frames": frames, "height": height, "width": width,
        "trained_layers": trainable_modules(unet) if ts.mode == "full" else sorted({_root(t, kind) for t in ts.targets}),
        "base_model_kind": kind, "base_model_fingerprint": model.fingerprint, "base_model_name": model.name,
        "dmt_version": __version__, **(extra or {}),
    }
    return Motion(tensors=ts.state_tensors(), mode=ts.mode, token=token, rank=ts.rank, alpha=ts.alpha,
                  param_shapes=shapes, info=info)


def _root(module_name: str, kind: str = "zeroscope") -> str:
    from .trainable import is_trainable_module

    parts = module_name.split(".")
    for i in range(1, len(parts) + 1):
        if is_trainable_module(".".join(parts[:i]), kind):
            return ".".join(parts[:i])
    return module_name


def train_motion(
    model: ZeroScope | Wan,
    examples: list[EncodedExample],
    token: str = DEFAULT_TOKEN,
    settings: TrainSettings = TrainSettings(),
    *,
    regularization: list[EncodedExample] = (),
    work_dir: str | Path | None = None,
    resume: bool = False,
    out_path: str | Path | None = None,
    snapshots: bool = True,
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
    on_log=None,
    on_validation=None,
) -> TrainResult:
    """Teach `model` the motion of `examples` under `token`; return the trained Motion.

    Args:
        model: the shared ZeroScope or Wan; only its denoiser (UNet / transformer) runs during
            training, with the model's own objective (dmt.models.interface: ε on ZeroScope, the
            flow velocity on Wan), and it is left exactly as loaded on every exit path (adapters
            removed, weights bit-identical, flags restored).
        examples: encoded example clips (encode_examples); every caption must contain `token`.
        regularization: encoded prior clips (real: encode_examples(load_regularization(...));
            generated: generate_regularization), weighted by settings.reg_weight.
        work_dir: folder for checkpoints, validation clips and the loss log (None: none kept).
        resume: continue from work_dir/state.safetensors when it exists (same settings, data and
            base model required, else InputError; `steps` may be raised); when there is none, start
            fresh (result.resumed_from == 0). Without resume an existing state is replaced. (The
            CLI refuses --resume when there is nothing to resume; the ComfyUI node resumes when it can.)
        out_path: also write the final motion file there (atomically).
        snapshots: at every checkpoint also write work_dir/checkpoints/motion_step_N.safetensors
            (False: only the resumable state).
        on_step("train", step, steps, None) after every optimiser step (may raise to cancel);
        check_interrupt() before every step; on_log(record) with each step's loss record;
        on_validation(step, clips) with each set of validation clips.
    Raises:
        InputError for bad settings or data (before any training); Interrupted on cancel (after
        writing a resumable state when work_dir is set); DMTError when the loss becomes NaN.
    """
    ops = model_ops(model)
    settings.validate()
    token = check_token(token)
    regularization = list(regularization)
    _check_data(examples, regularization, token)
    work = Path(work_dir) if work_dir is not None else None
    if work is not None:
        (work / "checkpoints").mkdir(parents=True, exist_ok=True)
    state_path = train_state_path(work) if work is not None else None
    log_path = work / "loss.jsonl" if work is not None else None
    keys = {"settings": settings.resume_key(), "data": data_key(examples, regularization), "model": model.fingerprint}
    device, unet = model.device, ops.denoiser(model)
    amp = autocast_for(model)
    use_scaler = model.dtype == torch.float16
    latent_shape = tuple(examples[0].latents.shape)
    use_reg = bool(regularization) and settings.reg_weight > 0

    val_every = settings.validation_interval()
    val_prompts = list(settings.validation_prompts) or [examples[0].caption]
    val_texts: list[torch.Tensor] = []
    negative = None
    if val_every > 0:  # encode now: the text encoder may be parked during training
        cache: dict[str, torch.Tensor] = {ex.caption: ex.text for ex in examples}
        val_texts = [encode_text_cached(model, p, cache) for p in val_prompts]
        negative = encode_text_cached(model, negative_prompt, cache)
    val_settings = GenerateSettings(*ops.pixel_size(model, latent_shape), settings.validation_steps,
                                    settings.validation_guidance, settings.validation_seed)
    result = TrainResult(motion=None, losses=[], work_dir=work)  # type: ignore[arg-type]
    on_gpu = device.type != "cpu" and settings.offload_encoders

    def run_validation(step: int) -> None:
        clips = []
        for k, text in enumerate(val_texts):
            lat = sample_latents(model, text, negative, val_settings, check_interrupt=check_interrupt, stage="validation")
            with on_device(model.vae, device) if on_gpu else contextlib.nullcontext():
                frames = ops.decode(model, lat).cpu()
            clips.append(frames)
            if work is not None:
                write_video(work / "checkpoints" / f"validation_step_{step:06d}_{k}.mp4", frames, 8.0)
        result.validation[step] = clips
        if on_validation is not None:
            on_validation(step, clips)

    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(explain_out_of_memory("motion training"))
        if on_gpu:
            stack.enter_context(on_device(model.text_encoder, "cpu"))
            stack.enter_context(on_device(model.vae, "cpu"))
        ts = stack.enter_context(trainable(unet, settings.mode, settings.rank, settings.lora_alpha, settings.seed))
        stack.enter_context(gradient_checkpointing(unet, settings.gradient_checkpointing))
        params = list(ts.params.values())
        opt = torch.optim.AdamW(params, lr=settings.learning_rate(), betas=(0.9, 0.999), weight_decay=settings.weight_decay)
        scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        gen = torch.Generator().manual_seed(int(settings.seed))
        start = 0
        if resume and state_path is not None and state_path.is_file():
            st = load_train_state(state_path)
            what = _resume_mismatch(st["keys"], keys)
            if what is not None:
                raise InputError(
                    f"Cannot resume from '{state_path}': it was trained with {what}. Use the same "
                    f"ones (only the number of steps may change), or start again without resume (the old state "
                    f"is then replaced)."
                )
            if st["step"] > settings.steps:
                raise InputError(f"The checkpoint '{state_path}' is already at step {st['step']}, past the requested "
                                 f"{settings.steps} steps: ask for at least {st['step']} steps, or start again "
                                 f"without resume.")
            if list(st["params"]) != list(ts.params):
                raise InputError(f"Cannot resume from '{state_path}': its trained tensors are not this run's.")
            ts.load_state_tensors(st["params"])
            opt.load_state_dict(st["optimizer_state"])
            gen.set_state(st["rng"])
            if st["scaler"] and use_scaler:
                scaler.load_state_dict(st["scaler"])
            start = result.resumed_from = st["step"]
            result.losses = [r for r in read_loss_log(log_path) if int(r.get("step", 0)) <= start]
            write_loss_log(log_path, result.losses)
        elif log_path is not None:
            write_loss_log(log_path, [])

        saved_step = start if result.resumed_from else -1
        done, mid_step = start, False

        def save_state(step: int) -> None:
            nonlocal saved_step
            if state_path is not None and step != saved_step:
                save_train_state(state_path, step, ts.params, opt, gen, scaler, keys)
                saved_step = step

        try:
            if val_every > 0 and start == 0:
                run_validation(0)
            for step in range(start, settings.steps):
                checkpoint(check_interrupt)
                mid_step = True
                opt.zero_grad(set_to_none=True)
                ex_sum = reg_sum = 0.0
                ts_used = []
                for _ in range(settings.gradient_accumulation):
                    i = int(torch.randint(len(examples), (1,), generator=gen))
                    n = 2 if use_reg else 1
                    t = ops.draw_times(model, n, settings.timesteps, gen)
                    x0 = [examples[i].latents]
                    texts = [examples[i].text]
                    if use_reg:
                        j = int(torch.randint(len(regularization), (1,), generator=gen))
                        x0.append(regularization[j].latents)
                        texts.append(regularization[j].text)
                    x0 = torch.cat(x0).float()
                    eps = torch.randn(x0.shape, generator=gen, dtype=torch.float32)
                    x_t, t_model, target = ops.noisy(model, x0, eps, t)
                    x_t, target = x_t.to(device), target.to(device)
                    text = torch.cat(texts).to(device, model.dtype)
                    with amp:
                        pred = ops.predict(model, x_t, t_model, text)
                    per_item = (pred.float() - target).pow(2).flatten(1).mean(1)
                    loss = per_item[0] + (settings.reg_weight * per_item[1] if use_reg else 0.0)
                    scaler.scale(loss / settings.gradient_accumulation).backward()
                    ex_sum += float(per_item[0].detach())
                    reg_sum += float(per_item[1].detach()) if use_reg else 0.0
                    ts_used += [int(v) for v in t]
                    del pred, per_item, loss, x_t, eps, x0, target
                ga = settings.gradient_accumulation
                total = (ex_sum + settings.reg_weight * reg_sum) / ga
                if not math.isfinite(total) and not use_scaler:
                    raise DMTError(f"The training loss became {total} at step {step + 1}: lower the learning rate "
                                   f"(now {settings.learning_rate():g}) and train again.")
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                done, mid_step = step + 1, False
                record = {"step": done, "loss": total, "example_loss": ex_sum / ga,
                          "reg_loss": reg_sum / ga if use_reg else None, "t": ts_used}
                result.losses.append(record)
                if log_path is not None:
                    append_loss_log(log_path, record)
                if on_log is not None:
                    on_log(record)
                on_step("train", done, settings.steps, None)
                at_end = done == settings.steps
                if work is not None and ((settings.checkpoint_every and done % settings.checkpoint_every == 0) or at_end):
                    save_state(done)
                    if snapshots:
                        snap = build_motion(ts, unet, model, token, settings, done, latent_shape)
                        save_motion(work / "checkpoints" / f"motion_step_{done:06d}.safetensors", snap)
                if val_every > 0 and (done % val_every == 0 or at_end):
                    run_validation(done)
        except BaseException:
            if not mid_step:
                try:
                    save_state(done)
                except Exception as exc:  # never hide the original error
                    print(f"warning: could not save the training state: {exc}", file=sys.stderr)
            raise
        motion = build_motion(ts, unet, model, token, settings, done, latent_shape,
                              extra={"captions": [ex.caption for ex in examples],
                                     "num_regularization": len(regularization)})
    result.motion = motion
    result.loss_curve = draw_loss_curve([r["loss"] for r in result.losses],
                                        title=f"loss ({settings.mode}, {len(result.losses)} steps)")
    if work is not None:
        save_loss_curve(work / "loss.png", result.loss_curve)
    if out_path is not None:
        save_motion(out_path, motion)
    return result


