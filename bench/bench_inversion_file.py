#!/usr/bin/env python
"""Size of an inversion file at ZeroScope's full size (24 frames 576x320 → latent (1, 4, 24, 40, 72)
float32) for the authors' defaults (999 inversion steps, 50 sampling steps, guidance window
(0.6, 1.0)): what dmt writes now (x0, the noisiest latent, the 20 guided latents) against the
former content (x0, the noisiest latent and all 50 sampling latents). No model is needed: the
tensors are random, the file layout is the real one (dmt.save_inversion).

    python bench/bench_inversion_file.py --json bench/results/inversion-file-size.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from diffusers import DDIMScheduler  # noqa: E402

import dmt  # noqa: E402
from dmt.models.random_model import SCHEDULER_CONFIG  # noqa: E402
from dmt.transfer.schedule import inversion_timesteps, make_schedule  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--width", type=int, default=576)
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    sched = DDIMScheduler(**SCHEDULER_CONFIG)
    shape = (1, 4, args.frames, args.height // 8, args.width // 8)
    g = torch.Generator().manual_seed(0)
    noisiest = inversion_timesteps(sched, 999)[-1]
    full = make_schedule(sched, 50, (0.6, 1.0))
    every = {t: torch.randn(shape, generator=g) for t in full.timesteps} | {noisiest: torch.randn(shape, generator=g)}
    inv_all = dmt.Inversion(x0=torch.randn(shape, generator=g), latents=every, noisiest_t=noisiest,
                            source_prompt="a dog", num_inversion_steps=999, num_sampling_steps=50,
                            scheduler_config=dict(sched.config))
    kept = {t: every[t] for t in (*full.guided, noisiest)}
    inv_new = dmt.Inversion(x0=inv_all.x0, latents=kept, noisiest_t=noisiest, source_prompt="a dog",
                            num_inversion_steps=999, num_sampling_steps=50, scheduler_config=dict(sched.config))
    with tempfile.TemporaryDirectory() as tmp:
        new = dmt.save_inversion(Path(tmp) / "new.safetensors", inv_new).stat().st_size
        old = dmt.save_inversion(Path(tmp) / "old.safetensors", inv_all).stat().st_size
    latent = torch.zeros(shape).numel() * 4
    out = dict(latent_shape=list(shape), latent_bytes=latent,
               new=dict(bytes=new, latents=len(kept) + 1, what="x0 + noisiest + 20 guided"),
               former=dict(bytes=old, latents=len(every) + 1, what="x0 + noisiest + 50 sampling"),
               ratio=new / old)
    print(f"latent {shape} float32 = {latent / 1e6:.2f} MB")
    print(f"now:    {new / 1e6:.1f} MB ({new / 2**20:.1f} MiB), {len(kept) + 1} latents")
    print(f"before: {old / 1e6:.1f} MB ({old / 2**20:.1f} MiB), {len(every) + 1} latents")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
