"""Benchmark of motion customization training: seconds per step, steps/s, peak memory and motion
file size, for lora and full, on random-weight ZeroScope models (timing needs no trained weights).

    python bench/bench_customize.py                       # tiny model on the CPU (seconds)
    python bench/bench_customize.py --size full --device cuda --dtype float16 \
        --config 16x256x256 --config 24x576x320           # real ZeroScope size, on a GPU

Each run: random latents (1, 4, F, H/8, W/8) and random caption embeddings stand in for encoded
clips (the VAE and text encoder are not part of a training step), one example + one
regularization clip per step (batch 2, as `train_motion` with prior preservation), `--warmup`
untimed steps then `--steps` timed ones. Peak memory: torch.cuda.max_memory_allocated on a GPU;
on the CPU the growth of the process's peak RSS (ru_maxrss) during the run, an upper bound of
what the run needed (it never goes down, so runs are ordered small to large).
Prints a table and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dmt.customize import TrainSettings, save_motion, train_motion  # noqa: E402
from dmt.customize.encode import EncodedExample  # noqa: E402
from dmt.models.random_model import build_random_components, save_byte_tokenizer  # noqa: E402
from dmt.models.zeroscope import ZeroScope, _fingerprint, resolve_dtype  # noqa: E402


def build_model(size: str, device: str, dtype: str) -> ZeroScope:
    tok = save_byte_tokenizer(Path(tempfile.mkdtemp()) / "tokenizer")
    parts = build_random_components(size, seed=0, vocab_size=len(tok))
    model = ZeroScope(tokenizer=tok, name=f"random-{size}", **parts)
    with torch.no_grad():
        for m in (model.unet, model.vae, model.text_encoder):
            m.to(device, resolve_dtype(dtype))
    model.fingerprint = _fingerprint(model.unet, model.vae, model.scheduler)
    return model


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(model: ZeroScope, mode: str, frames: int, height: int, width: int, steps: int, warmup: int, rank: int,
            checkpointing: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    dim = model.text_encoder.config.hidden_size

    def clip(caption: str) -> EncodedExample:
        return EncodedExample(torch.randn(1, 4, frames, height // 8, width // 8, generator=g),
                              torch.randn(1, 77, dim, generator=g), caption)

    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = rss_mib()
    stamps: list[float] = []

    def on_log(record):
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    settings = TrainSettings(mode=mode, rank=rank, steps=warmup + steps, checkpoint_every=0, validation_every=0,
                             gradient_checkpointing=checkpointing)
    t0 = time.perf_counter()
    result = train_motion(model, [clip("a sks move")], "sks", settings, regularization=[clip("a move")], on_log=on_log)
    timed = stamps[warmup:]
    per_step = (timed[-1] - stamps[warmup - 1]) / len(timed) if warmup else (timed[-1] - t0) / len(timed)
    with tempfile.TemporaryDirectory() as d:
        path = save_motion(Path(d) / "m.safetensors", result.motion)
        file_mib = path.stat().st_size / 2**20
    trained = sum(v.numel() for v in result.motion.tensors.values())
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mib() - rss0
    return {"mode": mode, "frames": frames, "height": height, "width": width, "rank": rank if mode == "lora" else None,
            "gradient_checkpointing": checkpointing, "timed_steps": len(timed), "s_per_step": per_step,
            "steps_per_s": 1 / per_step, "min_for_400_steps": per_step * 400 / 60,
            "peak_mib": peak, "peak_kind": "cuda max_memory_allocated" if cuda else "ru_maxrss growth",
            "trained_params": trained, "file_mib": file_mib}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["tiny", "full"], default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--config", action="append", default=None, metavar="FxHxW",
                   help="clip size(s) (default: 8x64x64 for tiny, 16x256x256 for full)")
    p.add_argument("--modes", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = args.config or (["8x64x64"] if args.size == "tiny" else ["16x256x256"])
    model = build_model(args.size, args.device, args.dtype)
    rows = []
    for cfg in configs:
        f, h, w = (int(v) for v in cfg.lower().split("x"))
        for mode in args.modes:
            row = run_one(model, mode, f, h, w, args.steps, args.warmup, args.rank, args.gradient_checkpointing)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
               "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    print(f"\nmodel {args.size} ({args.dtype}, {machine['device']}), rank {args.rank}, batch 2 (example + reg), "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print("| mode | clip (FxHxW) | s/step | steps/s | 400 steps (min) | peak memory (MiB) | trained params | file (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['frames']}x{r['height']}x{r['width']} | {r['s_per_step']:.3f} | "
              f"{r['steps_per_s']:.2f} | {r['min_for_400_steps']:.1f} | {r['peak_mib']:.0f} ({r['peak_kind']}) | "
              f"{r['trained_params']:,} | {r['file_mib']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "args": vars(args), "results": rows}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
