"""`transfer` with a Wan 2.1 model (--model is a Wan folder or hub repo id): attention-motion-flow
guidance through the same `dmt.transfer` call. The ZeroScope options that have no Wan meaning
are refused when given another value than their default; the shared ones are passed on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ..settings import TRANSFER, WAN_GUIDANCE_SCALE, WAN_MAX_FRAMES

#: options that mean something only for ZeroScope (its SMM guidance schedule, DDIM inversion)
ZEROSCOPE_ONLY = ("inversion_steps", "guidance_window", "optimization_steps", "lr_range", "constant_lr", "no_restart",
                  "loss", "prompt_prefix", "gradient_checkpointing", "preset")


def is_wan_source(source: str) -> bool:
    """True for a local Wan folder (by its JSON files) or a hub repo id naming Wan."""
    from ..models.folders import identify_folder

    path = Path(source)
    if path.is_dir():
        return identify_folder(path).kind == "wan"
    return "/" in source and source.split("/")[-1].lower().startswith("wan")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def refuse_zeroscope_options(args: argparse.Namespace) -> None:
    """InputError naming every ZeroScope-only option given a non-default value, and the file options."""
    given = [_flag(k) for k in ZEROSCOPE_ONLY if hasattr(args, k) and getattr(args, k) != TRANSFER[k].default]
    if given:
        raise InputError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to ZeroScope only; the model is a Wan "
            f"2.1 model, which uses attention-motion-flow or SMM guidance (its options here: --guidance, --steps, --low-memory, "
            f"--guidance-scale, --seed, --negative-prompt, --downsample-factor, --save-/--load-inversion, "
            f"--context-*, sizes and frames). Leave {'it' if len(given) == 1 else 'them'} "
            f"out, or give a ZeroScope --model.")


def wan_frame_count(available: int, asked: int | None) -> int:
    """The frames to take: `asked` when given (it must be 4k + 1), else the largest 4k + 1 up to
    min(available, 33), or up to `available` for asked 0 ("all frames"). InputError when fewer
    than 5 frames are available."""
    from ..models.wan import check_wan_frames

    if asked:
        return check_wan_frames(asked)
    n = available if asked == 0 else min(available, WAN_MAX_FRAMES)
    if n < 5:
        raise InputError(f"The video has {available} frame(s); Wan needs at least 5 (4k + 1 frames).")
    return (n - 1) // 4 * 4 + 1


def run_wan_transfer(args: argparse.Namespace, device: str, dtype: str, context=None) -> int:
    """The Wan branch of `transfer` (after the shared checks of run_transfer); context: the
    --context-* options (None: one pass)."""
    from ..io.video import write_video
    from ..models.wan import check_wan_size, load_wan
    from ..transfer import pipeline
    from ..transfer.amf_guidance import AMFSettings
    from ..transfer.inversion_files import load_inversion, save_inversion
    from .common import progress_bar, read_input_video, use_threads
    from .transfer import GUIDANCE_CHOICES

    refuse_zeroscope_options(args)
    if context is None and (args.context_overlap != TRANSFER["context_overlap"].default
                            or args.context_fuse != TRANSFER["context_fuse"].default):
        raise InputError("--context-overlap and --context-fuse shape context windows, which on Wan are on only with "
                         "--context-length (in video frames, e.g. 33): give it too, or leave them out.")
    check_wan_size(args.width, args.height)
    frames, fps = read_input_video(args, lambda available: wan_frame_count(available, args.num_frames))
    print(f"loading {args.model} (Wan 2.1, {dtype}, {device})", file=sys.stderr)
    model = load_wan(args.model, dtype, device)
    use_threads(args, model)
    inversion = None
    if args.load_inversion:
        inversion, _ = load_inversion(args.load_inversion, device=model.device, model_fingerprint=model.fingerprint,
                                      context=context, model_kind="wan")
        if frames is not None and tuple(inversion.x0.shape) != model.latent_shape(frames.shape[0], *frames.shape[1:3]):
            raise InputError(f"--load-inversion holds a latent {tuple(inversion.x0.shape)}; the video as prepared "
                             f"({frames.shape[0]} frames {args.width}x{args.height}) gives another. Use the same "
                             f"frames and size, or leave out --video.")
    scale = args.guidance_scale if args.guidance_scale != TRANSFER["guidance_scale"].default else WAN_GUIDANCE_SCALE
    if args.save_positions and args.optimise != "positions":
        raise InputError("--save-positions needs --optimise positions (the latent mode optimises no positions).")
    amf = AMFSettings(num_steps=args.steps, guidance_scale=scale, guidance=GUIDANCE_CHOICES[args.guidance] or "amf",
                      optimise=args.optimise)
    result = pipeline.transfer(
        model, None if inversion is not None else frames,
        args.source_prompt or (inversion.source_prompt if inversion is not None else ""), args.target_prompt,
        negative_prompt=args.negative_prompt, seed=args.seed, downsample_factor=args.downsample_factor, amf=amf,
        inversion=inversion, low_memory=args.low_memory, context=context,
        on_step=progress_bar({"inversion": "inverting", "targets": "targets", "sampling": "sampling"}))
    if args.save_inversion:
        save_inversion(args.save_inversion, result.inversion)
        print(f"saved inversion to {args.save_inversion}", file=sys.stderr)
    if args.save_positions:
        from ..transfer.rope_offsets import position_motion, save_positions

        motion = position_motion(model, result.sample.positions, tuple(result.inversion.x0.shape), args.source_prompt,
                                 {"guidance": amf.guidance, "steps": amf.num_steps, "iterations": amf.iterations,
                                  "lr_range": list(amf.lr_range), "guided_fraction": amf.guided_fraction})
        save_positions(args.save_positions, motion)
        print(f"saved positions to {args.save_positions} (reuse: generate --positions)", file=sys.stderr)
    from ..transfer.amf_guidance import latent_windows

    if (wins := latent_windows(context, result.inversion.num_frames)) is not None:
        print(f"used {context.describe()} ({len(wins)} windows of {len(wins[0])} latent frames)", file=sys.stderr)
    out = write_video(args.out, result.frames, fps or 8.0, codec=args.codec)
    if args.frames_dir:
        write_video(Path(args.frames_dir), result.frames)
    print(f"wrote {out} ({result.frames.shape[0]} frames, {result.frames.shape[2]}x{result.frames.shape[1]})")
    return 0
