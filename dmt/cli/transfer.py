"""The ``transfer`` sub-command: motion transfer of one video to a target prompt.

    python -m dmt transfer --video IN.mp4 --source-prompt TEXT --target-prompt TEXT --out OUT.mp4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..errors import InputError
from ..io.video import CODECS, choose_codec
from ..models.latents import UP_TO_NATIVE
from ..models.zeroscope import DEFAULT_MODEL
from ..settings import TRANSFER
from ..transfer.context import ContextOptions
from ..transfer.estimate import estimate_seconds, format_duration, matmul_flops, CPU_UNET_EFFICIENCY
from ..transfer.presets import PRESETS, preset_defaults, preset_work, unet_work  # noqa: F401 (preset_defaults: re-exported)
from ..transfer.sampler import GuidanceSettings
from .common import (HelpFormatter, add_setting, add_threads_option, check_args, progress_bar, read_input_video,
                     start_threads, use_threads)

_G = GuidanceSettings()
#: --guidance → the library's Wan guidance (None: the model's default)
GUIDANCE_CHOICES = {"auto": None, "smm": "smm", "attention_flow": "amf"}


def add_transfer_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "transfer",
        help="transfer the motion of a video to a new text prompt",
        description="Text-driven motion transfer (Yatim et al., CVPR 2024) on ZeroScope. The input is "
        "cut to --num-frames frames and resized to --width x --height (aspect ratio not kept), "
        "DDIM-inverted with the source prompt, and a new video is sampled with the target prompt "
        "while its space-time features are optimised to move like the input's. Defaults are the authors'. "
        "A Wan 2.1 --model (folder or hub id) runs attention-motion-flow guidance instead: frames 4k + 1 (default "
        "up to 33), sides multiples of 16, CFG 5 unless --guidance-scale is given; the ZeroScope-only options "
        "are refused.",
        formatter_class=HelpFormatter,
    )
    S = TRANSFER  # every algorithm option's default, range and help: dmt.settings
    io = p.add_argument_group("input and output")
    add_setting(io, S["video"], help="input video file or folder of frames (not needed with --load-inversion)")
    add_setting(io, S["source_prompt"], help="text describing the input video (may be empty; default: empty)")
    add_setting(io, S["target_prompt"], required=True)
    io.add_argument("--out", required=True, help="output video (.mp4/.avi) or folder for PNG frames")
    io.add_argument("--frames-dir", help="also write the output frames as PNGs into this folder")
    add_setting(io, S["fps"])
    io.add_argument("--codec", default=None, choices=list(CODECS),
                    help="video codec of --out (PyAV/FFmpeg): " + "; ".join(f"'{k}': {v}" for k, v in CODECS.items())
                    + " (default: h264; libvpx-vp9 for .webm)")
    io.add_argument("--save-inversion", metavar="FILE", help="save inversion + targets (.safetensors) for reuse")
    io.add_argument("--load-inversion", metavar="FILE", help="reuse a saved inversion instead of inverting again")
    m = p.add_argument_group("model")
    m.add_argument("--model", default=DEFAULT_MODEL, help="diffusers folder or hub repo id (CC BY-NC 4.0 weights); "
                   "a Wan2.1-T2V-1.3B one (Apache-2.0) selects the Wan path")
    m.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    m.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"],
                   help="weights dtype (default: float16 on GPU, float32 on CPU)")
    add_threads_option(m)
    v = p.add_argument_group("video preparation")
    for key in ("width", "height"):
        add_setting(v, S[key])
    add_setting(v, S["num_frames"], help=S["num_frames"].help.replace("the context length", "--context-length")
                + "; a number larger than the video gives is refused")
    add_setting(v, S["start"])
    add_setting(v, S["stride"])
    a = p.add_argument_group("algorithm")
    add_setting(a, S["preset"], choices=sorted(PRESETS),
                help="settings preset: " + "; ".join(f"'{k}': {v.summary}" for k, v in sorted(PRESETS.items()))
                + ". Options given explicitly override it")
    for key in ("seed", "steps", "inversion_steps", "guidance_window", "negative_prompt", "guidance_scale",
                "optimization_steps", "lr_range", "constant_lr", "no_restart", "loss", "downsample_factor",
                "prompt_prefix", "gradient_checkpointing", "low_memory"):
        add_setting(a, S[key])
    c = p.add_argument_group(
        "long videos (temporal context windows)",
        "Every UNet call (inversion, targets, guided steps, denoising) runs on overlapping windows of "
        "--context-length frames whose results are fused, so memory is bounded by the window, not the video. "
        "Rule: a video of at most --context-length frames is one window, i.e. exactly the plain one-pass "
        "transfer; windows are used only when the video is longer. --context-length 0 turns windows off. "
        "On Wan the same options (in video frames) act on its latent frames, 4 video frames each after the "
        "first (length L frames: (L - 1) // 4 + 1 latent frames); there windows are off unless "
        "--context-length is given (Wan was trained on 81 frames).",
    )
    add_setting(c, S["context_length"], default=None,
                help=S["context_length"].help + "; default 24 on ZeroScope, off on Wan")
    for key in ("context_overlap", "context_fuse"):
        add_setting(c, S[key])
    w = p.add_argument_group("Wan 2.1 (--model a Wan folder or hub id)")
    w.add_argument("--guidance", default="auto", choices=list(GUIDANCE_CHOICES),
                   help="what the motion guidance matches: 'attention_flow' (DiTFlow's attention motion flow, Wan "
                   "only), 'smm' (the paper's space-time feature means; on Wan read from transformer blocks), "
                   "'auto' (attention_flow on Wan, smm on ZeroScope)")
    w.add_argument("--optimise", default="latent", choices=["latent", "positions"],
                   help="what the guided steps optimise on Wan: the latent (DiTFlow's main mode) or the rotary "
                   "positions (DiTFlow's positional-embedding mode; keep them with --save-positions and reuse them "
                   "with `generate --positions` for other prompts)")
    w.add_argument("--save-positions", metavar="FILE", default=None,
                   help="with --optimise positions: write the optimised positional offsets (.safetensors)")
    p.set_defaults(func=run_transfer)
    return p


def guidance_from_options(o) -> GuidanceSettings:
    """GuidanceSettings from the transfer options (argparse Namespace or a batch job's options
    dict, by the names of dmt.settings.TRANSFER); validated."""
    get = (lambda k: o[k]) if isinstance(o, dict) else (lambda k: getattr(o, k))
    constant = get("constant_lr")
    settings = GuidanceSettings(
        guidance_scale=get("guidance_scale"), optimization_steps=get("optimization_steps"),
        lr_range=tuple(get("lr_range")), lr_decay=constant is None, lr=constant if constant is not None else _G.lr,
        restart_sampling=not get("no_restart"), loss=get("loss"), gradient_checkpointing=get("gradient_checkpointing"),
    )
    settings.validate()
    return settings


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
    from ..models.zeroscope import load_zeroscope
    from ..transfer.inversion_files import load_inversion, save_inversion
    from ..io.video import write_video

    from .transfer_wan import is_wan_source, run_wan_transfer

    wan = is_wan_source(args.model)
    if args.context_length is None:  # not given: ZeroScope's 24-frame windows; Wan runs in one pass
        args.context_length = 0 if wan else TRANSFER["context_length"].default
    check_args(args, TRANSFER)
    start_threads(args)
    if not args.target_prompt.strip():
        raise InputError("--target-prompt is empty: describe what the new video should show.")
    if args.video is None and args.load_inversion is None:
        raise InputError("Give --video (or --load-inversion with a saved inversion).")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("float16" if torch.device(device).type == "cuda" else "float32")
    if (msg := dtype_warning(device, dtype)) is not None:
        print(msg, file=sys.stderr)
    settings = guidance_from_options(args)
    context = context_from_args(args)
    try:
        choose_codec(args.out, args.codec)
    except ValueError as exc:
        raise InputError(f"--out/--codec: {exc}") from None
    if wan:
        return run_wan_transfer(args, device, dtype, context)
    if args.guidance == "attention_flow":
        raise InputError("--guidance attention_flow reads a Wan transformer's attention; ZeroScope runs the paper's "
                         "SMM guidance (leave --guidance out, or give a Wan --model).")
    if args.optimise != "latent" or args.save_positions:
        raise InputError("--optimise positions and --save-positions use Wan's rotary positions; ZeroScope has none "
                         "(leave them out, or give a Wan --model).")
    frames, fps = read_input_video(
        args, lambda available: UP_TO_NATIVE if args.num_frames is None else (args.num_frames or None))
    print(f"loading {args.model} ({dtype}, {device})", file=sys.stderr)
    model = load_zeroscope(args.model, dtype, device)
    use_threads(args, model)
    inversion = None
    if args.load_inversion:
        inversion, _ = load_inversion(args.load_inversion, device=model.device, model_fingerprint=model.fingerprint,
                                      num_inversion_steps=args.inversion_steps, num_sampling_steps=args.steps, context=context,
                                      model_kind="zeroscope")
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
