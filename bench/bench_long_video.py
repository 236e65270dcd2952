#!/usr/bin/env python
"""Long videos with temporal context windows: peak memory and time per edit by frame count, and
the quality at the window seams.

Part 1 (scaling): one whole edit (dmt.transfer: encode, inversion, targets, guided sampling,
decode) for each --frames value with context windows of --context-length frames (overlap
--context-overlap). Each edit runs in a fresh subprocess, so on the CPU its peak RSS
(getrusage) is its own; on a GPU torch.cuda.max_memory_allocated is read. Reported per edit:
windows, the largest frame count any UNet call saw (a forward pre-hook), wall time, time per
window, peak memory and peak above the memory after loading the model.

Part 2 (seams, --seams): a synthetic clip longer than one window (a textured square moving over a
textured background, bouncing) is edited twice with the same seed: in windows, and in one pass
(context None). For each output, the mean absolute frame-to-frame change at window boundaries
(the frame pairs where the set of covering windows changes) divided by the mean change at the
other pairs (target <= 1.2), and the Motion-Fidelity score (dmt.metrics.motion_fidelity, LK
tracker) against the input clip. With random weights (tiny or full) the output is not a real
edit: these numbers are a plumbing check, not a quality claim.

Quick CPU run (tiny model, reduced steps; a few minutes on a busy 2-core machine):
    python bench/bench_long_video.py --device cpu --size tiny --seams --json /tmp/long_tiny.json
GPU at ZeroScope's real size (random weights), reduced steps, memory is what matters:
    python bench/bench_long_video.py --device cuda --dtype float16 --size full --width 576 --height 320 \
        --frames 24 48 96 --json /tmp/long_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import dmt  # noqa: E402
from dmt.transfer import pipeline  # noqa: E402
from dmt.transfer.context import ContextOptions  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dmt import peak_rss_bytes, rss_bytes  # noqa: E402  (same measuring as the main benchmark)

MB = 1024**2


def synthetic_clip(num_frames: int, width: int, height: int, seed: int = 0) -> torch.Tensor:
    """A textured square moving right and back over a textured background: (F, H, W, 3) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    bg = torch.nn.functional.interpolate(torch.rand(1, 3, height // 4, width // 4, generator=g), size=(height, width),
                                         mode="bilinear")[0].permute(1, 2, 0) * 0.5
    side = min(width, height) // 3
    tex = torch.rand(side, side, 3, generator=g) * 0.5 + 0.5
    span = width - side
    speed = max(1, width // 32)
    y = (height - side) // 2
    out = []
    for i in range(num_frames):
        x = (speed * i) % (2 * span)
        x = x if x < span else 2 * span - x
        f = bg.clone()
        f[y:y + side, x:x + side] = tex
        out.append(f)
    return torch.stack(out)


def load_model(args, tmp: Path) -> dmt.ZeroScope:
    from dmt.models.random_model import save_random_model

    folder = Path(args.model_dir) if args.model_dir else tmp / f"random-{args.size}"
    if not (folder / "unet").is_dir():
        save_random_model(folder, size=args.size, seed=0)
    return dmt.load_zeroscope(str(folder), args.dtype, args.device)


def edit(model, frames, args, context, seed=0):
    settings = dmt.GuidanceSettings(optimization_steps=args.optimization_steps, restart_sampling=not args.no_restart)
    return pipeline.transfer(model, frames, "a square moving", "a red ball moving", seed=seed, num_steps=args.steps,
                             num_inversion_steps=args.inversion_steps, settings=settings, context=context)


def one_edit(args) -> dict:
    """Measure one edit of args.one frames (run in its own process)."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(args, Path(tmp))
        frames = synthetic_clip(args.one, args.width, args.height)
        context = ContextOptions(args.context_length, args.context_overlap, fuse=args.fuse)
        seen: list[int] = []
        handle = model.unet.register_forward_pre_hook(lambda _m, a: seen.append(a[0].shape[2]))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base_cuda = torch.cuda.memory_allocated(device)
        base_rss = rss_bytes()
        t0 = time.perf_counter()
        try:
            result = edit(model, frames, args, context)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        finally:
            handle.remove()
        seconds = time.perf_counter() - t0
    n_windows = len(context.windows(args.one))
    out = {"frames": args.one, "windows": n_windows, "max_frames_per_unet_call": max(seen), "unet_calls": len(seen),
           "seconds": seconds, "seconds_per_window": seconds / n_windows,
           "peak_rss_mb": peak_rss_bytes() / MB, "rss_after_load_mb": base_rss / MB,
           "peak_rss_above_load_mb": (peak_rss_bytes() - base_rss) / MB,
           "output_frames": int(result.frames.shape[0])}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / MB
        out["cuda_after_load_mb"] = base_cuda / MB
        out["peak_cuda_above_load_mb"] = (torch.cuda.max_memory_allocated(device) - base_cuda) / MB
    return out


def frame_change(frames: torch.Tensor) -> torch.Tensor:
    """Mean absolute change between consecutive frames: (F-1,) for (F, H, W, 3)."""
    return (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3))


def seam_pairs(num_frames: int, context: ContextOptions) -> list[int]:
    """Indices i of pairs (i, i+1) where the set of windows covering the frame changes."""
    wins = context.windows(num_frames)
    cover = [frozenset(k for k, w in enumerate(wins) if f in w) for f in range(num_frames)]
    return [i for i in range(num_frames - 1) if cover[i] != cover[i + 1]]


def seam_ratio(frames: torch.Tensor, pairs: list[int]) -> float:
    d = frame_change(frames)
    inside = [i for i in range(d.shape[0]) if i not in pairs]
    return float(d[pairs].mean() / d[inside].mean())




def seams(args) -> dict:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(args, Path(tmp))
        frames = synthetic_clip(args.seam_frames, args.width, args.height)
        context = ContextOptions(args.context_length, args.context_overlap, fuse=args.fuse)
        pairs = seam_pairs(args.seam_frames, context)
        t0 = time.perf_counter()
        long = edit(model, frames, args, context)
        t_long = time.perf_counter() - t0
        t0 = time.perf_counter()
        whole = edit(model, frames, args, None)
        t_whole = time.perf_counter() - t0
    prepared = dmt.prepare_frames(frames, args.width, args.height, None)

    def mf(edited):
        try:
            return dmt.motion_fidelity(prepared, edited, grid=args.grid).combined
        except dmt.InputError as exc:  # random weights can give an untrackable video
            return f"not measurable: {exc}"

    mf_long, mf_whole = mf(long.frames), mf(whole.frames)
    return {
        "frames": args.seam_frames, "windows": [[w.start, w.stop - 1] for w in context.windows(args.seam_frames)],
        "seam_pairs": pairs,
        "seam_ratio_windows": seam_ratio(long.frames, pairs),
        "seam_ratio_one_pass": seam_ratio(whole.frames, pairs),
        "seam_ratio_input": seam_ratio(prepared, pairs),
        # the same in latent space (B, 4, F, h, w) -> (F, h, w, 4), where the windows are fused
        "latent_seam_ratio_windows": seam_ratio(long.sample.latents[0].permute(1, 2, 3, 0).cpu(), pairs),
        "latent_seam_ratio_one_pass": seam_ratio(whole.sample.latents[0].permute(1, 2, 3, 0).cpu(), pairs),
        "latent_max_abs_diff_windows_vs_one_pass": float((long.sample.latents - whole.sample.latents).abs().max()),
        "latent_rel_diff_windows_vs_one_pass": float((long.sample.latents - whole.sample.latents).norm()
                                                     / whole.sample.latents.norm()),
        "motion_fidelity_windows": mf_long, "motion_fidelity_one_pass": mf_whole,
        "motion_fidelity_input_vs_itself": mf(prepared),
        "seconds_windows": t_long, "seconds_one_pass": t_whole,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--size", default="tiny", choices=["tiny", "full"], help="random model size (full = ZeroScope's)")
    p.add_argument("--model-dir", help="use this diffusers folder instead of a random model")
    p.add_argument("--frames", type=int, nargs="+", default=[24, 48, 96])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--context-length", type=int, default=24)
    p.add_argument("--context-overlap", type=int, default=8)
    p.add_argument("--fuse", default="pyramid", choices=["pyramid", "flat"])
    p.add_argument("--steps", type=int, default=5, help="sampling steps (reduced; authors: 50)")
    p.add_argument("--inversion-steps", type=int, default=5, help="inversion steps (reduced; authors: 999)")
    p.add_argument("--optimization-steps", type=int, default=2, help="Adam iterations per guided step (authors: 10)")
    p.add_argument("--no-restart", action="store_true", help="no restart sampling")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seams", action="store_true", help="also measure seam quality")
    p.add_argument("--seam-frames", type=int, default=48)
    p.add_argument("--grid", type=int, default=16, help="Motion-Fidelity tracking grid (authors: 55)")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one_edit(args)))
        return 0
    report = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "device": args.device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
              "settings": {k: v for k, v in vars(args).items() if k not in ("json", "one")},
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "scaling": [], "seams": None}
    if not args.skip_scaling:
        print(f"{'frames':>6} {'windows':>7} {'max F/call':>10} {'time s':>8} {'s/window':>8} {'peak MB':>9} "
              f"{'above load MB':>13}" + (f" {'cuda peak MB':>12}" if args.device.startswith("cuda") else ""))
        for n in args.frames:
            cmd = [sys.executable, __file__, "--one", str(n)] + [a for a in sys.argv[1:] if a not in ("--seams",)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                return 1
            r = json.loads(line[-1][7:])
            report["scaling"].append(r)
            print(f"{r['frames']:>6} {r['windows']:>7} {r['max_frames_per_unet_call']:>10} {r['seconds']:>8.1f} "
                  f"{r['seconds_per_window']:>8.1f} {r['peak_rss_mb']:>9.0f} {r['peak_rss_above_load_mb']:>13.0f}"
                  + (f" {r['peak_cuda_mb']:>12.0f}" if "peak_cuda_mb" in r else ""), flush=True)
    if args.seams:
        s = seams(args)
        report["seams"] = s
        print(f"seams: {s['frames']} frames, windows {s['windows']}, seam pairs {s['seam_pairs']}")
        print(f"  boundary/inside frame-change ratio: windows {s['seam_ratio_windows']:.3f}, one pass "
              f"{s['seam_ratio_one_pass']:.3f}, input clip {s['seam_ratio_input']:.3f}")
        print(f"  same in latent space: windows {s['latent_seam_ratio_windows']:.3f}, one pass "
              f"{s['latent_seam_ratio_one_pass']:.3f}")
        print(f"  final latents, windows vs one pass: max |diff| {s['latent_max_abs_diff_windows_vs_one_pass']:.4g}, "
              f"relative L2 {s['latent_rel_diff_windows_vs_one_pass']:.4g}")
        print(f"  Motion-Fidelity (combined, LK grid {args.grid}) vs input: windows {s['motion_fidelity_windows']}, "
              f"one pass {s['motion_fidelity_one_pass']}, input vs itself {s['motion_fidelity_input_vs_itself']}")
        print(f"  time: windows {s['seconds_windows']:.1f} s, one pass {s['seconds_one_pass']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print("wrote", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
