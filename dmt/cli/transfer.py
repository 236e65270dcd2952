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
from ..transfer.context import DEFAULT_CONTEXT_LENGTH, DEFAULT_CONTEXT_OVERLAP, FUSE_MODES, MAX_CONTEXT_LENGTH, ContextOptions
from ..transfer.inversion import DEFAULT_INVERSION_STEPS, DEFAULT_SAMPLING_STEPS
from ..transfer.noise_init import DEFAULT_DOWNSAMPLE_FACTOR
from ..transfer.estimate import estimate_seconds, format_duration, matmul_flops, CPU_UNET_EFFICIENCY
from ..transfer.presets import PRESETS, get_preset, preset_work, unet_work
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
                   "0 = all frames, a video longer than --context-length then runs in windows; a number larger "
                   "than the video gives is refused)")
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
    c = p.add_argument_group(
        "long videos (temporal context windows)",
        "Every UNet call (inversion, targets, guided steps, denoising) runs on overlapping windows of "
        "--context-length frames whose results are fused, so memory is bounded by the window, not the video. "
        "Rule: a video of at most --context-length frames is one window, i.e. exactly the plain one-pass "
        "transfer; windows are used only when the video is longer. --context-length 0 turns windows off.",
    )
    c.add_argument("--context-length", type=int, default=DEFAULT_CONTEXT_LENGTH,
                   help=f"frames per window, 2-{MAX_CONTEXT_LENGTH} (ZeroScope was trained on 24); 0 = no windows")
    c.add_argument("--context-overlap", type=int, default=DEFAULT_CONTEXT_OVERLAP,
                   help="frames shared by neighbouring windows (less than --context-length)")
    c.add_argument("--context-fuse", choices=FUSE_MODES, default="pyramid",
                   help="how overlapping windows are blended: pyramid (weights fall off toward a window's edges) or flat")
    p.set_defaults(func=run_transfer)
    return p


def preset_defaults(name: str) -> dict:
    """CLI defaults a preset sets (options given explicitly still win)."""
    preset = get_preset(name)
    return {"inversion_steps": preset.num_inversion_steps, "steps": preset.num_steps,
            "guidance_window": preset.guidance_window, "optimization_steps": preset.optimization_steps,
            "no_restart": not preset.restart_sampling}


def context_from_args(args: argparse.Namespace) -> ContextOptions | None:
    """The --context-* options (None for --context-length 0). Raises InputError on bad values."""
    if args.context_length == 0:
        return None
    return ContextOptions(length=args.context_length, overlap=args.context_overlap, fuse=args.context_fuse)


# Warn when the estimated UNet work on the CPU exceeds this (seconds).
LONG_RUN_SECONDS = 30 * 60
SMALL_CLIP = {"num_frames": 8, "width": 288, "height": 160}  # the hint's smaller size
FULL_UNET_PARAMETERS = 1.41e9  # ZeroScope v2 576w's UNet, the model the FLOP counts are for


def dtype_warning(device: str, dtype: str) -> str | None:
    """A warning for half precision on a CPU, where it is slower, not faster."""
    if torch.device(device).type == "cpu" and dtype in ("float16", "bfloat16"):
        return (f"warning: --dtype {dtype} on a CPU is much slower than float32 (most CPUs have no fast "
                f"{dtype} kernels: a 512x512 matmul ran about 50x slower than in float32 on an AMD EPYC "
                "test machine) and saves no time; use --dtype float32 (the CPU default).")
    return None


def runtime_warning(args: argparse.Namespace, device: str, num_frames: int, unet_parameters: float = FULL_UNET_PARAMETERS,
                    flops_per_second: float | None = None) -> str | None:
    """A warning with the estimated time when this run's UNet work on a CPU is long (> 30 min).

    The estimate (dmt.transfer.estimate) scales the FLOPs counted for ZeroScope's UNet by
    `unet_parameters` / 1.41e9 (a smaller test model costs proportionally less) and divides by
    the CPU's timed matmul rate × 0.5. GPUs get no estimate (none measured). `flops_per_second`
    replaces the timed rate (tests).
    """
    if torch.device(device).type != "cpu":
        return None
    rate = flops_per_second or matmul_flops("cpu") * CPU_UNET_EFFICIENCY
    scale = unet_parameters / FULL_UNET_PARAMETERS
    inversion_steps = 0 if args.load_inversion else args.inversion_steps
    work = unet_work(inversion_steps, args.steps, tuple(args.guidance_window), args.optimization_steps,
                     not args.no_restart)
    seconds = scale * estimate_seconds(work, num_frames, args.height, args.width, rate)
    if seconds <= LONG_RUN_SECONDS:
        return None
    fast = preset_work("fast")
    if args.load_inversion:
        fast = dict(fast, inversion=0)
    fast_s = scale * estimate_seconds(fast, num_frames, args.height, args.width, rate)
    small = SMALL_CLIP
    small_s = scale * estimate_seconds(fast, min(num_frames, small["num_frames"]), small["height"], small["width"], rate)
    return (
        f"warning: this run is long on a CPU: about {format_duration(seconds)} of UNet work estimated for "
        f"{num_frames} frames at {args.width}x{args.height} ({rate / 1e9:.0f} GFLOP/s effective on this CPU; "
        "a rough estimate, see dmt/transfer/estimate.py). A GPU is much faster. To try it on a CPU, use "
        f"--preset fast (about {format_duration(fast_s)}) and a smaller clip, e.g. --preset fast "
        f"--num-frames {small['num_frames']} --width {small['width']} --height {small['height']} "
        f"(about {format_duration(small_s)})."
    )


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
    if (msg := dtype_warning(device, dtype)) is not None:
        print(msg, file=sys.stderr)
    settings = GuidanceSettings(
        guidance_scale=args.guidance_scale, optimization_steps=args.optimization_steps,
        lr_range=tuple(args.lr_range), lr_decay=args.constant_lr is None,
        lr=args.constant_lr if args.constant_lr is not None else _G.lr,
        restart_sampling=not args.no_restart, loss=args.loss, gradient_checkpointing=args.gradient_checkpointing,
    )
    settings.validate()
    context = context_from_args(args)
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
        count = UP_TO_NATIVE if args.num_frames is None else (args.num_frames or None)
        frames = prepare_frames(clip.frames, args.width, args.height, count, args.start, args.stride)
        print(f"input: {clip.frames.shape[0]} frames {clip.frames.shape[2]}x{clip.frames.shape[1]} -> "
              f"{frames.shape[0]} frames {args.width}x{args.height}", file=sys.stderr)
    print(f"loading {args.model} ({dtype}, {device})", file=sys.stderr)
    model = load_zeroscope(args.model, dtype, device)
    inversion = None
    if args.load_inversion:
        inversion, _ = load_inversion(args.load_inversion, device=model.device, model_fingerprint=model.fingerprint,
                                      num_inversion_steps=args.inversion_steps, num_sampling_steps=args.steps, context=context)
        if frames is not None and frames.shape[0] != inversion.num_frames:
            raise InputError(f"--load-inversion holds {inversion.num_frames} frames, the video gives {frames.shape[0]}.")
    num_frames = frames.shape[0] if frames is not None else inversion.num_frames
    parameters = sum(p.numel() for p in model.unet.parameters())
    if (msg := runtime_warning(args, str(model.device), num_frames, parameters)) is not None:
        print(msg, file=sys.stderr)
    result = pipeline.transfer(
        model, frames, args.source_prompt, args.target_prompt, negative_prompt=args.negative_prompt,
        seed=args.seed, num_steps=args.steps, num_inversion_steps=args.inversion_steps,
        guidance_window=tuple(args.guidance_window), downsample_factor=args.downsample_factor,
        settings=settings, prompt_prefix=args.prompt_prefix, inversion=inversion, low_memory=args.low_memory,
        context=context, on_step=progress_bar({"inversion": "inverting", "targets": "targets", "sampling": "sampling"}),
    )
    if args.save_inversion:
        save_inversion(args.save_inversion, result.inversion, result.targets)
        print(f"saved inversion to {args.save_inversion}", file=sys.stderr)
    if context is not None and len(context.windows(result.frames.shape[0])) > 1:
        print(f"used {context.describe(result.frames.shape[0])}", file=sys.stderr)
    out = write_video(args.out, result.frames, fps or 8.0, codec=args.codec)
    if args.frames_dir:
        write_video(Path(args.frames_dir), result.frames)
    print(f"wrote {out} ({result.frames.shape[0]} frames, {result.frames.shape[2]}x{result.frames.shape[1]})")
    return 0
