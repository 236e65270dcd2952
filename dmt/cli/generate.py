"""The ``generate`` sub-command: text-to-video with ZeroScope or Wan 2.1, optionally with trained motions.

    python -m dmt generate --model PATH --prompt TEXT [--motion FILE[:STRENGTH] ...]
        [--frames 16 --height 256 --width 256 --steps 40 --guidance 9 --seed 0] --out video.mp4
"""

from __future__ import annotations

import argparse
import sys


from ..customize.apply import check_strength
from ..models.text import DEFAULT_NEGATIVE_PROMPT
from ..models.zeroscope import DEFAULT_MODEL
from ..settings import GENERATE
from .common import (HelpFormatter, add_setting, add_threads_option, check_args, load_base_model, progress_bar,
                     start_threads, use_threads)


def add_generate_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="text-to-video with ZeroScope or Wan 2.1, optionally with customized motions",
        description="Sample a video from a prompt with ZeroScope's DDIM scheduler and classifier-free guidance. "
        "Each --motion FILE[:STRENGTH] (strength 0-2, default 1) applies a motion trained with `customize` for "
        "this run only; name it in the prompt by its token (e.g. 'a bear doing the sks dance'). A Wan 2.1 --model "
        "samples with Euler flow steps (--frames 4k + 1, sides multiples of 16) and takes motions trained on Wan.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--prompt", required=True, help="what the video shows")
    p.add_argument("--out", required=True, help="output video (.mp4/.avi) or folder for PNG frames")
    p.add_argument("--positions", metavar="FILE", default=None,
                   help="Wan only: rotary positional offsets saved by `transfer --optimise positions "
                   "--save-positions`; the video moves like that reference (same --frames and size)")
    p.add_argument("--motion", action="append", default=[], metavar="FILE[:STRENGTH]",
                   help="motion file and optional strength in [0, 2] (repeatable: motions add)")
    p.add_argument("--negative-prompt", default=DEFAULT_NEGATIVE_PROMPT, help="unconditional prompt of CFG")
    p.add_argument("--model", default=DEFAULT_MODEL, help="diffusers folder or hub repo id (CC BY-NC 4.0 weights)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"],
                   help="weights dtype (default: float16 on GPU, float32 on CPU)")
    add_threads_option(p)
    for setting in GENERATE.values():  # defaults, ranges and help: dmt.settings
        add_setting(p, setting)
    p.set_defaults(func=run_generate)
    return p


def parse_motion_arg(text: str) -> tuple[str, float]:
    """'FILE' → (FILE, 1.0); 'FILE:0.8' → (FILE, 0.8) (a suffix that is not a number stays in the path)."""
    path, sep, tail = text.rpartition(":")
    if sep and path:
        try:
            value = float(tail)
        except ValueError:
            return text, 1.0
        return path, check_strength(value)  # InputError outside [0, 2]
    return text, 1.0


def run_generate(args: argparse.Namespace) -> int:
    """Run the `generate` sub-command; returns the exit code."""
    from ..customize.examples import caption_has_token
    from ..customize.generate import GenerateSettings, generate_video
    from ..customize.motion_file import load_motion
    from ..errors import InputError
    from ..io.video import write_video
    from ..customize.apply import check_same_kind
    from ..models.interface import model_ops

    check_args(args, GENERATE)
    start_threads(args)
    if not args.prompt.strip():
        raise InputError("--prompt is empty: describe the video to make.")
    settings = GenerateSettings(args.frames, args.height, args.width, args.steps, args.guidance, args.seed)
    settings.validate()
    motions = []
    for item in args.motion:
        path, strength = parse_motion_arg(item)
        motion = load_motion(path)
        motions.append((motion, strength))
        if motion.token and not caption_has_token(args.prompt, motion.token):
            print(f"note: the prompt does not contain '{motion.token}', the token of {path}", file=sys.stderr)
    model = load_base_model(args.model, args.device, args.dtype)
    use_threads(args, model)
    for motion, _ in motions:
        check_same_kind(model, motion)
        motion.check_fits(model_ops(model).denoiser(model))
        if not motion.same_base(model.fingerprint):
            print("note: a motion was trained on different base weights (same shapes); results may differ",
                  file=sys.stderr)
    positions = None
    if args.positions:
        from ..transfer.rope_offsets import load_positions

        positions = load_positions(args.positions)
    result = generate_video(model, args.prompt, motions=motions, negative_prompt=args.negative_prompt,
                            settings=settings, positions=positions, on_step=progress_bar({"generate": "sampling"}))
    out = write_video(args.out, result.frames, args.fps)
    print(f"wrote {out} ({result.frames.shape[0]} frames, {args.width}x{args.height})")
    return 0
