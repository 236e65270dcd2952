"""The ``transfer`` sub-command: motion transfer of one video to a target prompt.

    python -m dmt transfer --video IN.mp4 --source-prompt TEXT --target-prompt TEXT --out OUT.mp4
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from ..errors import InputError
from ..io.video import CODECS, choose_codec
from ..models.latents import DEFAULT_HEIGHT, DEFAULT_NUM_FRAMES, DEFAULT_WIDTH, UP_TO_NATIVE
from ..models.text import AUTHORS_PROMPT_PREFIX, DEFAULT_NEGATIVE_PROMPT
from ..models.zeroscope import DEFAULT_MODEL
from ..transfer.inversion import DEFAULT_INVERSION_STEPS, DEFAULT_SAMPLING_STEPS
from ..transfer.noise_init import DEFAULT_DOWNSAMPLE_FACTOR
from ..transfer.presets import PRESETS, get_preset
from ..transfer.sampler import GuidanceSettings
from .common import HelpFormatter, progress_bar

_G = GuidanceSettings()


def add_transfer_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "transfer",
        help="transfer the motion of a video to a new text prompt",
        description="Text-driven motion transfer (Yatim et al., CVPR 2024) on ZeroScope. The input is "
        "cut to --num-frames frames and resized to --width x --height (aspect ratio not kept), "
        "DDIM-inverted with the source prompt, and a new video is sampled with the target prompt "
        "while its space-time features are optimised to move like the input's. Defaults are the authors'.",
        formatter_class=HelpFormatter,
    )
    io = p.add_argument_group("input and output")
    io.add_argument("--video", help="input video file or folder of frames (not needed with --load-inversion)")
    io.add_argument("--source-prompt", default="", help="text describing the input video (may be empty; default: empty)")
    io.add_argument("--target-prompt", required=True, help="text describing the video to make")
    io.add_argument("--out", required=True, help="output video (.mp4/.avi) or folder for PNG frames")
    io.add_argument("--frames-dir", help="also write the output frames as PNGs into this folder")
    io.add_argument("--fps", type=float, default=None, help="output frame rate (default: the input's, 8 for frame folders)")
    io.add_argument("--codec", default=None, choices=list(CODECS),
                    help="video codec of --out (PyAV/FFmpeg): " + "; ".join(f"'{k}': {v}" for k, v in CODECS.items())
                    + " (default: h264; libvpx-vp9 for .webm)")
    io.add_argument("--save-inversion", metavar="FILE", help="save inversion + targets (.safetensors) for reuse")
    io.add_argument("--load-inversion", metavar="FILE", help="reuse a saved inversion instead of inverting again")
    m = p.add_argument_group("model")
    m.add_argument("--model", default=DEFAULT_MODEL, help="diffusers folder or hub repo id (CC BY-NC 4.0 weights)")
    m.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    m.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"],
                   help="weights dtype (default: float16 on GPU, float32 on CPU)")
    v = p.add_argument_group("video preparation")
    v.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="model input width (multiple of 8)")
    v.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="model input height (multiple of 8)")
    v.add_argument("--num-frames", type=int, default=None,
                   help=f"frames taken from the input (default: {DEFAULT_NUM_FRAMES}, or all of a shorter video; "
                   "a number larger than the video gives is refused)")
    v.add_argument("--start", type=int, default=0, help="first input frame used")
    v.add_argument("--stride", type=int, default=1, help="take every n-th input frame")
    a = p.add_argument_group("algorithm")
    a.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="settings preset: " + "; ".join(f"'{k}': {v.summary}" for k, v in sorted(PRESETS.items()))
                   + ". Options given explicitly override it")
    a.add_argument("--seed", type=int, default=0, help="seed of the init noise and the restart noise")
    a.add_argument("--steps", type=int, default=DEFAULT_SAMPLING_STEPS, help="DDIM sampling steps")
    a.add_argument("--inversion-steps", type=int, default=DEFAULT_INVERSION_STEPS,
                   help="DDIM inversion steps (must visit every guided timestep; the error lists valid values)")
    a.add_argument("--guidance-window", type=float, nargs=2, default=(0.6, 1.0), metavar=("MIN", "MAX"),
                   help="fraction of the schedule that is guided: (0.6, 1.0) = the first 40%% of the steps")
    a.add_argument("--negative-prompt", default=DEFAULT_NEGATIVE_PROMPT, help="unconditional prompt of CFG")
    a.add_argument("--guidance-scale", type=float, default=_G.guidance_scale, help="classifier-free guidance scale")
    a.add_argument("--optimization-steps", type=int, default=_G.optimization_steps, help="Adam iterations per guided step")
    a.add_argument("--lr-range", type=float, nargs=2, default=_G.lr_range, metavar=("FIRST", "LAST"),
                   help="learning rate decaying linearly over the guided steps")
    a.add_argument("--constant-lr", type=float, default=None, help="use this constant learning rate instead of --lr-range (authors' value: 0.01)")
    a.add_argument("--no-restart", action="store_true", help="disable restart sampling (faster, less faithful)")
    a.add_argument("--loss", choices=["cosine", "l2"], default=_G.loss, help="SMM loss form: cosine (authors' code) or l2 (paper's equation)")
    a.add_argument("--downsample-factor", type=int, default=DEFAULT_DOWNSAMPLE_FACTOR, help="low-frequency init factor xi (1 = no noise replacement)")
    a.add_argument("--prompt-prefix", default=AUTHORS_PROMPT_PREFIX, help="prepended to source and target prompts ('' to disable)")
    a.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in the backward pass (less memory, slower)")
    a.add_argument("--low-memory", action="store_true",
                   help="gradient checkpointing + text encoder and VAE on the CPU while idle (same result, slower)")
    p.set_defaults(func=run_transfer)
    return p


def preset_defaults(name: str) -> dict:
    """CLI defaults a preset sets (options given explicitly still win)."""
    preset = get_preset(name)
    return {"inversion_steps": preset.num_inversion_steps, "steps": preset.num_steps,
            "guidance_window": preset.guidance_window, "optimization_steps": preset.optimization_steps,
            "no_restart": not preset.restart_sampling}


def run_transfer(args: argparse.Namespace) -> int:
    """Run the `transfer` sub-command; returns the exit code."""
    from ..transfer import pipeline
    from ..models.latents import prepare_frames
    from ..models.zeroscope import load_zeroscope
    from ..transfer.inversion_files import load_inversion, save_inversion
    from ..io.video import read_video, write_video

    if not args.target_prompt.strip():
        raise InputError("--target-prompt is empty: describe what the new video should show.")
    if args.video is None and args.load_inversion is None:
        raise InputError("Give --video (or --load-inversion with a saved inversion).")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("float16" if torch.device(device).type == "cuda" else "float32")
    settings = GuidanceSettings(
        guidance_scale=args.guidance_scale, optimization_steps=args.optimization_steps,
        lr_range=tuple(args.lr_range), lr_decay=args.constant_lr is None,
        lr=args.constant_lr if args.constant_lr is not None else _G.lr,
        restart_sampling=not args.no_restart, loss=args.loss, gradient_checkpointing=args.gradient_checkpointing,
    )
    settings.validate()
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise InputError(f"--fps must be a positive number, got {args.fps}.")
    try:
        choose_codec(args.out, args.codec)
    except ValueError as exc:
        raise InputError(f"--out/--codec: {exc}") from None
    fps = args.fps
    frames = None
    if args.video is not None:
        clip = read_video(args.video)
        fps = fps or clip.fps
        count = UP_TO_NATIVE if args.num_frames is None else args.num_frames
        frames = prepare_frames(clip.frames, args.width, args.height, count, args.start, args.stride)
        print(f"input: {clip.frames.shape[0]} frames {clip.frames.shape[2]}x{clip.frames.shape[1]} -> "
              f"{frames.shape[0]} frames {args.width}x{args.height}", file=sys.stderr)
    print(f"loading {args.model} ({dtype}, {device})", file=sys.stderr)
    model = load_zeroscope(args.model, dtype, device)
    inversion = None
    if args.load_inversion:
        inversion, _ = load_inversion(args.load_inversion, device=model.device, model_fingerprint=model.fingerprint,
                                      num_inversion_steps=args.inversion_steps, num_sampling_steps=args.steps)
        if frames is not None and frames.shape[0] != inversion.num_frames:
            raise InputError(f"--load-inversion holds {inversion.num_frames} frames, the video gives {frames.shape[0]}.")
    result = pipeline.transfer(
        model, frames, args.source_prompt, args.target_prompt, negative_prompt=args.negative_prompt,
        seed=args.seed, num_steps=args.steps, num_inversion_steps=args.inversion_steps,
        guidance_window=tuple(args.guidance_window), downsample_factor=args.downsample_factor,
        settings=settings, prompt_prefix=args.prompt_prefix, inversion=inversion, low_memory=args.low_memory,
        on_step=progress_bar({"inversion": "inverting", "targets": "targets", "sampling": "sampling"}),
    )
    if args.save_inversion:
        save_inversion(args.save_inversion, result.inversion, result.targets)
        print(f"saved inversion to {args.save_inversion}", file=sys.stderr)
    out = write_video(args.out, result.frames, fps or 8.0, codec=args.codec)
    if args.frames_dir:
        write_video(Path(args.frames_dir), result.frames)
    print(f"wrote {out} ({result.frames.shape[0]} frames, {result.frames.shape[2]}x{result.frames.shape[1]})")
    return 0
