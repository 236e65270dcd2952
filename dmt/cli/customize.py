"""The ``customize`` sub-command: teach ZeroScope a motion from a few example clips.

    python -m dmt customize --examples DIR --model PATH --out motion.safetensors [--caption TEXT]
        [--token sks] [--mode lora|full] [--rank 32] [--steps 400] [--lr LR] [--frames 16
        --height 256 --width 256] [--reg-videos DIR | --reg-generate N] [--reg-weight 1.0]
        [--timesteps coarse|uniform] [--checkpoint-every 100] [--resume] [--seed 0]

Ctrl-C stops after the current step and writes a resumable checkpoint (a second Ctrl-C aborts at
once); run the same command with --resume to continue from it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import torch

from ..customize.examples import DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_TOKEN, DEFAULT_WIDTH
from ..customize.timesteps import TIMESTEP_MODES
from ..customize.train import DEFAULT_CHECKPOINT_EVERY, DEFAULT_LR, DEFAULT_STEPS, TrainSettings
from ..customize.trainable import DEFAULT_RANK, MODES
from ..errors import InputError, Interrupted
from ..models.text import DEFAULT_NEGATIVE_PROMPT
from ..models.zeroscope import DEFAULT_MODEL
from .common import HelpFormatter


def add_customize_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "customize",
        help="teach ZeroScope a new motion from a few example clips (motion customization)",
        description="Motion customization (Materzyńska et al., 'Customizing Motion in Text-to-Video Diffusion "
        "Models'): fine-tune ZeroScope's temporal convolutions, temporal attentions and the key/value "
        "projections of the spatial cross-attention on example clips whose captions name the motion with a "
        "token, and save the result as a small motion file for `python -m dmt generate --motion`.",
        formatter_class=HelpFormatter,
    )
    io = p.add_argument_group("data and output")
    io.add_argument("--examples", required=True, help="folder of example clips (videos or frame folders, caption "
                    "of clip.mp4 in clip.txt), or one clip")
    io.add_argument("--caption", default=None, help="caption for clips without a .txt (must contain the token)")
    io.add_argument("--token", default=DEFAULT_TOKEN, help="the word that names the motion in captions and prompts")
    io.add_argument("--out", required=True, help="motion file to write (.safetensors)")
    io.add_argument("--work-dir", default=None, help="checkpoints, validation clips, loss log (default: OUT "
                    "without suffix + '.training')")
    io.add_argument("--cache-dir", default=None, help="encoded clips cache (default: WORK_DIR/cache)")
    io.add_argument("--reg-videos", default=None, help="folder of regularization clips of related motions, with "
                    "captions (prior preservation; the paper prefers real clips)")
    io.add_argument("--reg-caption", default=None, help="caption for regularization clips without a .txt")
    io.add_argument("--reg-generate", type=int, default=None, metavar="N",
                    help="instead of --reg-videos: generate N prior clips with the frozen model from the example "
                    "captions without the token (cached)")
    m = p.add_argument_group("model")
    m.add_argument("--model", default=DEFAULT_MODEL, help="diffusers folder or hub repo id (CC BY-NC 4.0 weights)")
    m.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    m.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"],
                   help="weights dtype; training runs under autocast in it (default: float16 on GPU, float32 on CPU)")
    t = p.add_argument_group("training")
    t.add_argument("--mode", choices=MODES, default="lora", help="lora (small file) or full (the paper's: the "
                   "chosen weights themselves; the file holds their deltas)")
    t.add_argument("--rank", type=int, default=DEFAULT_RANK, help="LoRA rank")
    t.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimiser steps")
    t.add_argument("--lr", type=float, default=None,
                   help=f"learning rate (default: {DEFAULT_LR['lora']:g} for lora, {DEFAULT_LR['full']:g} for full)")
    t.add_argument("--gradient-accumulation", type=int, default=1, help="micro-steps per optimiser step")
    t.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="training frames per clip")
    t.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="training height (multiple of 8)")
    t.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="training width (multiple of 8)")
    t.add_argument("--stride", type=int, default=1, help="take every n-th frame of the clips")
    t.add_argument("--reg-weight", type=float, default=1.0, help="weight lambda of the regularization loss")
    t.add_argument("--timesteps", choices=TIMESTEP_MODES, default="coarse",
                   help="timestep sampling: coarse = P(t) ~ 1 + 3t/999 (favours noisy steps) or uniform")
    t.add_argument("--seed", type=int, default=0, help="seed of data order, timesteps, noise and LoRA init")
    t.add_argument("--checkpoint-every", type=int, default=DEFAULT_CHECKPOINT_EVERY,
                   help="steps between checkpoints (0: only at the end)")
    t.add_argument("--validation-every", type=int, default=None,
                   help="steps between validation clips (default: at start and every checkpoint; 0: off)")
    t.add_argument("--validation-prompt", action="append", default=None,
                   help="validation prompt (repeatable; default: the first example caption)")
    t.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (less memory, slower)")
    t.add_argument("--resume", action="store_true", help="continue from the work folder's checkpoint")
    p.set_defaults(func=run_customize)
    return p


def _settings(args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(
        mode=args.mode, rank=args.rank, steps=args.steps, lr=args.lr, gradient_accumulation=args.gradient_accumulation,
        timesteps=args.timesteps, reg_weight=args.reg_weight, seed=args.seed, checkpoint_every=args.checkpoint_every,
        validation_every=args.validation_every, validation_prompts=tuple(args.validation_prompt or ()),
        gradient_checkpointing=args.gradient_checkpointing,
    )


class _StopOnCtrlC:
    """First Ctrl-C: ask the loop to stop after the current step (check_interrupt → True).
    Second Ctrl-C: the default handler (KeyboardInterrupt at once)."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\nstopping after this step (Ctrl-C again to abort at once)...", file=sys.stderr)

        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False

    def __call__(self) -> bool:
        return self.requested


def run_customize(args: argparse.Namespace) -> int:
    """Run the `customize` sub-command; returns the exit code (0 ok, 2 bad input, 130 stopped)."""
    from tqdm.auto import tqdm

    from ..customize.encode import encode_examples
    from ..customize.examples import load_examples
    from ..customize.generate import GenerateSettings
    from ..customize.regularization import generate_regularization, load_regularization
    from ..customize.train import train_motion
    from ..models.zeroscope import load_zeroscope

    settings = _settings(args)
    settings.validate()
    if args.reg_videos and args.reg_generate:
        raise InputError("Give --reg-videos or --reg-generate, not both.")
    if args.reg_generate is not None and args.reg_generate < 1:
        raise InputError(f"--reg-generate must be >= 1, got {args.reg_generate}.")
    out = Path(args.out)
    if out.suffix.lower() != ".safetensors":
        raise InputError(f"--out must be a .safetensors file, got '{out}'.")
    work = Path(args.work_dir) if args.work_dir else out.with_suffix(".training")
    cache = Path(args.cache_dir) if args.cache_dir else work / "cache"
    examples = load_examples(args.examples, args.caption, args.token, args.frames, args.height, args.width, args.stride)
    reg_clips = (load_regularization(args.reg_videos, args.reg_caption, args.frames, args.height, args.width, args.stride)
                 if args.reg_videos else [])
    print(f"{len(examples)} example clip(s), {len(reg_clips)} regularization clip(s): {args.frames} frames "
          f"{args.width}x{args.height}", file=sys.stderr)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("float16" if torch.device(device).type == "cuda" else "float32")
    print(f"loading {args.model} ({dtype}, {device})", file=sys.stderr)
    model = load_zeroscope(args.model, dtype, device)
    encoded = encode_examples(model, examples, cache_dir=cache)
    regularization = encode_examples(model, reg_clips, cache_dir=cache) if reg_clips else []
    if args.reg_generate:
        bar = tqdm(total=args.reg_generate * 40, desc="regularization clips", unit="step")
        regularization = generate_regularization(
            model, [e.caption for e in encoded], args.reg_generate, args.token,
            GenerateSettings(args.frames, args.height, args.width, 40, 9.0, args.seed), DEFAULT_NEGATIVE_PROMPT,
            cache_dir=cache, on_step=lambda s, i, n, lat: (setattr(bar, "n", i), bar.refresh()))
        bar.close()
    bar = tqdm(total=settings.steps, desc="training", unit="step")

    def on_log(record: dict) -> None:
        bar.n = record["step"]
        bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=True)

    with _StopOnCtrlC() as stop:
        try:
            result = train_motion(model, encoded, args.token, settings, regularization=regularization, work_dir=work,
                                  resume=args.resume, out_path=out, check_interrupt=stop, on_log=on_log)
        except Interrupted:
            bar.close()
            print(f"stopped; checkpoint in '{work}'. Run the same command with --resume to continue.", file=sys.stderr)
            return 130
    bar.close()
    if result.resumed_from:
        print(f"resumed from step {result.resumed_from}", file=sys.stderr)
    size = out.stat().st_size
    print(f"wrote {out} ({result.motion.mode}, {len(result.losses)} steps, {size / 2**20:.1f} MiB); loss curve "
          f"{work / 'loss.png'}")
    return 0
