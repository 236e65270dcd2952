#!/usr/bin/env python
"""Motion transfer on Wan 2.1 (attention-motion-flow guidance): time and peak memory by frame count.

One whole `dmt.transfer` on a random-weight Wan (encode, flow inversion, AMF targets from the clean
reference latent, AMF-guided sampling with CFG, decode) per --frames value, each in a fresh
subprocess so that its peak memory is its own: on the CPU the peak RSS (getrusage) and the peak
above the RSS after loading the model; on a GPU torch.cuda.max_memory_allocated. Also printed:
the latent frames F', the patch tokens per latent frame, the frame pairs of the flow, and the
largest attention-flow intermediate (chunk × heads × (h'w')² float32), which does not grow with
frames. The input is a toy-world clip (a ball on a circle), resized; random weights make the output
noise: this measures cost, not quality.

Quick CPU run (tiny random Wan, 10 steps; about a minute on a busy 2-core machine):
    python bench/bench_wan.py --size tiny --frames 5 9 17 33 --json /tmp/wan_tiny.json
GPU at the 1.3B configuration (random weights, bf16), the issue's target of <= 12 GB at 33 frames:
    python bench/bench_wan.py --size full --device cuda --dtype bfloat16 --width 832 --height 480 \
        --frames 33 81 --steps 50 --json /tmp/wan_gpu.json
    (add --low-memory 1 for the low-memory mode: prompts first, components parked, checkpointed step)
Long videos in temporal context windows (video frames; each window runs alone, so the peak follows
the window, not the video):
    python bench/bench_wan.py --size tiny --frames 17 33 65 --context-length 17 --context-overlap 8
"""

from __future__ import annotations

import argparse
import json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dmt import peak_rss_bytes, rss_bytes  # noqa: E402  (same measuring as the main benchmark)

MB = 1024**2


def one_edit(args: argparse.Namespace) -> dict:
    """Run one transfer in this process and return its figures."""
    import dmt
    from dmt.toyworld.world import make_clip
    from dmt.transfer.amf_guidance import AMFSettings

    device = torch.device(args.device)
    model = dmt.load_wan(args.model, args.dtype, device)
    after_load = rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    clip = make_clip("circle", "red", "ball", num_frames=args.one, height=args.height, width=args.width).frames
    settings = AMFSettings(num_steps=args.steps, chunk=args.chunk)
    t0 = time.perf_counter()
    context = dmt.ContextOptions(length=args.context_length, overlap=args.context_overlap) if args.context_length else None
    result = dmt.transfer(model, clip, "a red ball", "a blue square", seed=0, amf=settings,
                          low_memory=bool(args.low_memory), context=context)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    targets = result.targets
    grid = targets.grid
    heads = model.transformer.config.num_attention_heads
    out = {"frames": args.one, "latent_frames": grid[0], "tokens_per_latent_frame": grid[1] * grid[2],
           "pairs": len(targets.pairs), "flow_chunk_bytes": settings.chunk * heads * (grid[1] * grid[2]) ** 2 * 4,
           "seconds": seconds, "guided_steps": settings.num_guided(), "steps": settings.num_steps}
    if device.type == "cuda":
        out["peak_bytes"] = torch.cuda.max_memory_allocated()
    else:
        out["peak_rss_bytes"] = peak_rss_bytes()
        out["peak_above_load_bytes"] = peak_rss_bytes() - after_load
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=("tiny", "full"), default="tiny", help="random Wan configuration")
    p.add_argument("--model", default=None, help="a Wan folder (default: a random one of --size, written to a temp dir)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--frames", type=int, nargs="+", default=[5, 9, 17, 33])
    p.add_argument("--steps", type=int, default=10, help="sampling steps (the first 20 %% are guided)")
    p.add_argument("--chunk", type=int, default=1, help="frame pairs per attention-flow chunk")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--low-memory", "--low_memory", dest="low_memory", type=int, choices=(0, 1), default=0,
                   help="1: low_memory=True (prompts encoded first, text encoder and VAE parked, the guided step "
                   "checkpointed)")
    p.add_argument("--context-length", "--context_length", dest="context_length", type=int, default=0,
                   help="context windows of this many video frames (0: none, one pass)")
    p.add_argument("--context-overlap", "--context_overlap", dest="context_overlap", type=int, default=8)
    p.add_argument("--json", default=None)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one edit, JSON on stdout
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.one is not None:
        print("RESULT " + json.dumps(one_edit(args)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            from dmt.models.random_wan import save_random_wan

            args.model = str(Path(tmp) / f"wan-{args.size}")
            save_random_wan(args.model, size=args.size)
        rows = []
        for n in args.frames:
            cmd = [sys.executable, __file__, "--one", str(n)] + [
                a for k, v in vars(args).items() if k not in ("one", "frames", "json") and v is not None
                for a in (f"--{k}", str(v))]
            run = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
            if run.returncode or not line:
                print(run.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append(json.loads(line[0][7:]))
    mem = "peak_bytes" if args.device.startswith("cuda") else "peak_above_load_bytes"
    print(f"Wan ({args.size}, random weights) {args.width}x{args.height}, {args.steps} steps, {args.device} "
          f"{args.dtype}, {args.threads} thread(s), low_memory={bool(args.low_memory)}, context "
          f"{args.context_length or 'none'}/{args.context_overlap}, {platform.node()}, "
          f"{time.strftime('%Y-%m-%d')}")
    print("| frames | latent frames | tokens/latent frame | flow pairs | flow chunk MB | seconds | peak MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['frames']} | {r['latent_frames']} | {r['tokens_per_latent_frame']} | {r['pairs']} | "
              f"{r['flow_chunk_bytes'] / MB:.2f} | {r['seconds']:.1f} | {r[mem] / MB:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "one"},
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
