#!/usr/bin/env python
"""Real-size operations on the CPU: ZeroScope's full UNet configuration with random weights,
float32, one operation per subprocess under a hard address-space cap.

Measures one DDIM inversion step (full forward, batch 1, no grad), one guided iteration (truncated
forward + backward + Adam step, as `optimize_latent` runs it) with and without dmt's layer
checkpointing, and one CFG denoise step (full forward, batch 2): wall time, process CPU time,
RSS before the operation (weights and inputs) and peak RSS. The UNet alone is built (the text
embeddings are random (B, 77, 1024) tensors: the text encoder and VAE play no part in these
operations). Each operation runs in its own process with RLIMIT_AS = --cap-gib, so a run that does
not fit fails alone (reported as such) instead of exhausting the machine.

    python bench/bench_real_size_cpu.py --json bench/results/cpu-real-size-YYYY-MM-DD.json
    python bench/bench_real_size_cpu.py --only guided --frames 4 8     # a subset
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3

# (name, operation, gradient checkpointing)
OPERATIONS = {
    "inversion_step": ("inversion_step", False),
    "guided_iteration": ("guided_iteration", False),
    "guided_iteration_checkpointed": ("guided_iteration", True),
    "denoise_step": ("denoise_step", False),
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(op: str, frames: int, width: int, height: int, checkpointing: bool, threads: int) -> dict:
    """Runs in the capped subprocess: build the UNet, run `op` once, report."""
    sys.path.insert(0, str(ROOT))
    import torch
    from diffusers import DDIMScheduler, UNet3DConditionModel

    import dmt
    from dmt.models.grad_modes import evaluation
    from dmt.models.memory import gradient_checkpointing
    from dmt.models.random_model import CONFIGS, SCHEDULER_CONFIG
    from dmt.models.unet import frozen, predict_noise
    from dmt.transfer.ddim import inversion_step
    from dmt.transfer.features import FEATURE_PATHS, spatial_marginal_mean, truncated_forward
    from dmt.transfer.sampler import denoise_step, optimize_latent

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode(False):
        # Built on the meta device and filled with small uniform values: the timing and memory do
        # not depend on the values, and this is much faster than diffusers' initialisation.
        with torch.device("meta"):
            unet = UNet3DConditionModel(**CONFIGS["full"]["unet"])
        unet = unet.to_empty(device="cpu")
        with torch.no_grad():
            for prm in unet.parameters():
                prm.uniform_(-0.02, 0.02)
    model = dmt.ZeroScope(unet=unet.eval(), vae=None, text_encoder=None, tokenizer=None,
                          scheduler=DDIMScheduler(**SCHEDULER_CONFIG), name="random-full")
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, frames, height // 8, width // 8, generator=g)
    text = torch.randn(1, 77, 1024, generator=g)
    out = dict(op=op, frames=frames, width=width, height=height, gradient_checkpointing=checkpointing,
               threads=torch.get_num_threads(), build_s=build_s,
               unet_params=sum(p.numel() for p in unet.parameters()))
    if op == "guided_iteration":
        # target SMMs of the right shapes (their values do not change the cost)
        with evaluation():
            feats = truncated_forward(model, x[:, :, :2], 981, text)
        targets = {p: torch.randn(frames, f.shape[1], generator=g) for p, f in feats.items()}
        del feats

        def run():
            with torch.inference_mode(False), frozen(unet), torch.enable_grad(), \
                    gradient_checkpointing(unet, checkpointing):
                optimize_latent(model, x, 981, text, targets, 1, 0.007)
    elif op == "inversion_step":
        def run():
            with evaluation():
                eps = predict_noise(model, x, 21, text)
                inversion_step(model.scheduler, x, eps, 1, 21)
    elif op == "denoise_step":
        text_cfg = torch.cat([text, torch.randn(1, 77, 1024, generator=g)])

        def run():
            denoise_step(model, x, 981, 961, text_cfg, 10.0)
    else:
        raise ValueError(op)
    out["rss_before_bytes"] = rss_bytes()
    out["peak_rss_before_bytes"] = peak_rss_bytes()
    t0, c0 = time.perf_counter(), time.process_time()
    run()
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["activation_peak_bytes"] = out["peak_rss_bytes"] - out["rss_before_bytes"]
    return out


def run_capped(op_name: str, frames: int, args) -> dict:
    op, ckpt = OPERATIONS[op_name]
    cmd = [sys.executable, __file__, "--child", op, "--frames-one", str(frames), "--width", str(args.width),
           "--height", str(args.height), "--threads", str(args.threads), "--cap-gib", str(args.cap_gib)]
    if ckpt:
        cmd.append("--checkpointing")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode == 0:
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        res = dict(op=op, frames=frames, gradient_checkpointing=ckpt, failed=True, returncode=proc.returncode,
                   error=" | ".join(tail), note=f"did not fit under the {args.cap_gib} GiB address-space cap"
                   if any("memory" in t.lower() or "alloc" in t.lower() for t in tail) else "failed")
    res["name"] = op_name
    res["process_wall_s"] = wall
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", choices=[*OPERATIONS, "guided"], default=None)
    ap.add_argument("--frames", nargs="*", type=int, default=[24], help="frame counts to run (default 24)")
    ap.add_argument("--width", type=int, default=576)
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cap-gib", type=float, default=15.0, help="RLIMIT_AS of each measuring process")
    ap.add_argument("--json", type=Path, default=None, help="results file (rewritten after every operation)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--frames-one", type=int, default=24, help=argparse.SUPPRESS)
    ap.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        cap = int(args.cap_gib * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        print(json.dumps(child(args.child, args.frames_one, args.width, args.height, args.checkpointing,
                               args.threads)))
        return 0
    names = list(OPERATIONS)
    if args.only:
        names = [n for n in names if n in args.only or ("guided" in args.only and n.startswith("guided"))]
    import torch

    report = dict(meta=dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
                f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.0f} GiB RAM (shared)",
        load_average_start=os.getloadavg(), torch=torch.__version__, python=platform.python_version(),
        dtype="float32", cap_gib=args.cap_gib, threads=args.threads, command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    ), results=[])
    for frames in args.frames:
        for name in names:
            print(f"{name}, {frames} frames …", file=sys.stderr, flush=True)
            r = run_capped(name, frames, args)
            r["load_average_after"] = os.getloadavg()
            report["results"].append(r)
            if r.get("failed"):
                print(f"  FAILED: {r['note']}: {r['error']}", file=sys.stderr)
            else:
                print(f"  {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU, peak RSS "
                      f"{r['peak_rss_bytes'] / GIB:.2f} GiB (before {r['rss_before_bytes'] / GIB:.2f} GiB)",
                      file=sys.stderr, flush=True)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
