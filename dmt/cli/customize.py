"""The ``customize`` sub-command: teach ZeroScope (or Wan 2.1) a motion from a few example clips.

    python -m dmt customize --examples DIR --model PATH --out motion.safetensors [--caption TEXT]
        [--token sks] [--mode lora|full] [--rank 32] [--steps 400] [--lr LR] [--frames 16
        --height 256 --width 256] [--reg-videos DIR | --reg-generate N] [--reg-weight 1.0]
        [--timesteps coarse|uniform] [--checkpoint-every 100] [--resume] [--seed 0]

Ctrl-C stops after the current step and writes a resumable checkpoint (a second Ctrl-C aborts at
once); run the same command with --resume to continue from it. --resume with no training state in
the work folder is refused (exit code 2) rather than silently starting from step 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


from ..customize.train import TrainSettings
from ..errors import InputError, Interrupted
from ..models.text import DEFAULT_NEGATIVE_PROMPT
from ..models.zeroscope import DEFAULT_MODEL
from ..settings import TRAIN
from .common import HelpFormatter, add_setting, add_threads_option, check_args, load_base_model, start_threads, use_threads


def add_customize_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "customize",
        help="teach ZeroScope or Wan 2.1 a new motion from a few example clips (motion customization)",
        description="Motion customization (Materzyńska et al., 'Customizing Motion in Text-to-Video Diffusion "
        "Models'): fine-tune ZeroScope's temporal convolutions, temporal attentions and the key/value "
        "projections of the spatial cross-attention on example clips whose captions name the motion with a "
        "token, and save the result as a small motion file for `python -m dmt generate --motion`. A Wan 2.1 "
        "--model tunes its transformer's self-attention and cross-attention key/value with its flow-matching "
        "objective instead (--frames 4k + 1, sides multiples of 16); the motion then works on Wan only.",
        formatter_class=HelpFormatter,
    )
    S = TRAIN  # defaults, ranges and help: dmt.settings
    io = p.add_argument_group("data and output")
    io.add_argument("--examples", required=True, help="folder of example clips (videos or frame folders, caption "
                    "of clip.mp4 in clip.txt), or one clip")
    io.add_argument("--caption", default=None, help="caption for clips without a .txt (must contain the token)")
    add_setting(io, S["token"])
    io.add_argument("--out", required=True, help="motion file to write (.safetensors)")
    io.add_argument("--work-dir", default=None, help="checkpoints, validation clips, loss log (default: OUT "
                    "without suffix + '.training')")
    io.add_argument("--cache-dir", default=None, help="encoded clips cache (default: WORK_DIR/cache)")
    io.add_argument("--reg-videos", default=None, help="folder of regularization clips of related motions, with "
                    "captions (prior preservation; the paper prefers real clips)")
    io.add_argument("--reg-caption", default=None, help="caption for regularization clips without a .txt")
    add_setting(io, S["reg_generate"], help="instead of --reg-videos: " + S["reg_generate"].help.split(": ", 1)[1])
    m = p.add_argument_group("model")
    m.add_argument("--model", default=DEFAULT_MODEL, help="diffusers folder or hub repo id (CC BY-NC 4.0 weights)")
    m.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    m.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"],
                   help="weights dtype; training runs under autocast in it (default: float16 on GPU, float32 on CPU)")
    add_threads_option(m)
    t = p.add_argument_group("training")
    for key in ("mode", "rank", "steps", "lr", "gradient_accumulation", "frames", "height", "width", "stride",
                "reg_weight", "timesteps", "seed", "checkpoint_every", "validation_every", "validation_steps",
                "validation_guidance"):
        add_setting(t, S[key])
    t.add_argument("--validation-prompt", action="append", default=None,
                   help="validation prompt (repeatable; default: the first example caption)")
    t.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (less memory, slower)")
    t.add_argument("--resume", action="store_true",
                   help="continue from the training state in the work folder (WORK_DIR/state.safetensors, written at "
                   "every checkpoint and on Ctrl-C). Refused when there is none: run without --resume to start "
                   "fresh. Without --resume an earlier state in the work folder is replaced")
    p.set_defaults(func=run_customize)
    return p


def _settings(args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(
        mode=args.mode, rank=args.rank, steps=args.steps, lr=args.lr, gradient_accumulation=args.gradient_accumulation,
        timesteps=args.timesteps, reg_weight=args.reg_weight, seed=args.seed, checkpoint_every=args.checkpoint_every,
        validation_every=args.validation_every, validation_prompts=tuple(args.validation_prompt or ()),
        validation_steps=args.validation_steps, validation_guidance=args.validation_guidance,
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
    from ..customize.generate import DEFAULT_GUIDANCE, DEFAULT_STEPS, GenerateSettings
    from ..customize.regularization import generate_regularization, load_regularization
    from ..customize.train import train_motion
    from ..customize.train_state import read_train_state_info, state_path

    check_args(args, TRAIN)
    start_threads(args)
    settings = _settings(args)
    settings.validate()
    if args.reg_videos and args.reg_generate:
        raise InputError("Give --reg-videos or --reg-generate, not both.")
    out = Path(args.out)
    if out.suffix.lower() != ".safetensors":
        raise InputError(f"--out must be a .safetensors file, got '{out}'.")
    work = Path(args.work_dir) if args.work_dir else out.with_suffix(".training")
    cache = Path(args.cache_dir) if args.cache_dir else work / "cache"
    earlier = read_train_state_info(state_path(work))  # InputError for a damaged state file
    if args.resume and earlier is None:
        raise InputError(f"Nothing to resume in '{work}': no training state ({state_path(work).name}) was found. "
                         f"Run without --resume to start fresh.")
    if args.resume and earlier["step"] > settings.steps:
        raise InputError(f"The training state in '{work}' is already at step {earlier['step']}, past --steps "
                         f"{settings.steps}: give --steps {earlier['step']} or more to continue it.")
    if args.resume:
        print(f"resuming from step {earlier['step']} of {settings.steps} ({state_path(work)})", file=sys.stderr)
    elif earlier is not None:
        print(f"note: starting fresh; this replaces the training state of an earlier run in '{work}' (step "
              f"{earlier['step']}). Stop now and add --resume to continue that run instead.", file=sys.stderr)
    examples = load_examples(args.examples, args.caption, args.token, args.frames, args.height, args.width, args.stride)
    reg_clips = (load_regularization(args.reg_videos, args.reg_caption, args.frames, args.height, args.width, args.stride)
                 if args.reg_videos else [])
    print(f"{len(examples)} example clip(s), {len(reg_clips)} regularization clip(s): {args.frames} frames "
          f"{args.width}x{args.height}", file=sys.stderr)
    model = load_base_model(args.model, args.device, args.dtype)
    use_threads(args, model)
    encoded = encode_examples(model, examples, cache_dir=cache)
    regularization = encode_examples(model, reg_clips, cache_dir=cache) if reg_clips else []
    if args.reg_generate:
        bar = tqdm(total=args.reg_generate * DEFAULT_STEPS, desc="regularization clips", unit="step")
        regularization = generate_regularization(
            model, [e.caption for e in encoded], args.reg_generate, args.token,
            GenerateSettings(args.frames, args.height, args.width, DEFAULT_STEPS, DEFAULT_GUIDANCE, args.seed),
            DEFAULT_NEGATIVE_PROMPT,
            cache_dir=cache, on_step=lambda s, i, n, lat: (setattr(bar, "n", i), bar.refresh()))
        bar.close()
    bar = tqdm(total=settings.steps, initial=earlier["step"] if args.resume else 0, desc="training", unit="step")

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
    size = out.stat().st_size
    print(f"wrote {out} ({result.motion.mode}, {len(result.losses)} steps, {size / 2**20:.1f} MiB); loss curve "
          f"{work / 'loss.png'}")
    return 0
