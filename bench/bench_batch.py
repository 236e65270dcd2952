#!/usr/bin/env python
"""Throughput of `python -m dmt batch` on the tiny random model: in-process vs a local Ray
instance with 2 workers, and the inversion cache.

The batch: --videos synthetic clips x --prompts target prompts (one seed each) = jobs, each
6 frames of 64x64, 10 sampling steps, 50 inversion steps, 2 optimisation steps, restart sampling
on (the authors' default), CPU, float32. Every configuration starts from an empty output folder,
and its wall time includes everything a user waits for (model load; for Ray also starting Ray
and its worker processes).

Rows:
  in-process, N thread(s)   run_batch without Ray, torch using N threads (--threads, default 1)
  ray local, 2 workers      run_batch(ray="local", workers=2, cpus_per_job=1): 2 actors, 1 thread each
  re-run (all cached)       the in-process batch again on its finished folder
Cache hit rate = jobs that reused a cached inversion / jobs (inversions are made once per video).

    python bench/bench_batch.py --json bench/results/batch-cpu-2026-12-03.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import dmt  # noqa: E402
from dmt.batch import run_batch  # noqa: E402
from dmt.models.random_model import save_random_model  # noqa: E402
from helpers import moving_square_clip  # noqa: E402

PROMPTS = ["a red circle", "a blue star", "a green triangle", "a yellow car", "a black bird", "a white boat"]


def make_jobs(folder: Path, videos: int, prompts: int) -> Path:
    jobs = []
    for v in range(videos):
        dmt.write_video(folder / f"clip{v}.mp4", moving_square_clip(num_frames=8, size=96, seed=v), fps=10)
        for p in range(prompts):
            jobs.append({"name": f"clip{v}-p{p}", "video": f"clip{v}.mp4", "source_prompt": "a square",
                         "target_prompt": PROMPTS[p % len(PROMPTS)], "seed": p, "width": 64, "height": 64,
                         "num_frames": 6, "steps": 10, "inversion_steps": 50, "optimization_steps": 2})
    path = folder / "jobs.jsonl"
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return path


def measure(name: str, **kwargs) -> dict:
    t = time.perf_counter()
    report = run_batch(progress=False, device="cpu", dtype="float32", **kwargs)
    wall = time.perf_counter() - t
    s = report.summary
    ran = s["jobs"] - s["cached"]
    reused = sum(1 for r in report.rows if r.get("inversion") == "cached" or r.get("cached"))
    return {"config": name, "jobs": s["jobs"], "ok": s["ok"], "failed": s["failed"], "jobs_run": ran,
            "inversions_computed": s["inversions_computed"], "wall_s": round(wall, 2),
            "jobs_per_hour": round(s["jobs"] / wall * 3600, 1), "cache_hit_rate": round(reused / s["jobs"], 3),
            "mean_job_s": round(sum(r.get("seconds_total", 0) for r in report.rows if not r.get("cached"))
                                / max(ran, 1), 2), **({"ray": report.extra} if report.extra else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1],
                    help="torch thread counts of the in-process rows (more than the free cores oversubscribes)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray row")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = str(save_random_model(tmp / "model", size="tiny", seed=0))
        jobs = make_jobs(tmp, args.videos, args.prompts)
        for threads in args.threads:
            torch.set_num_threads(threads)
            rows.append(measure(f"in-process, {threads} thread(s)", jobs=jobs, model=model, out_dir=tmp / f"local{threads}"))
        rows.append(measure("re-run (all cached)", jobs=jobs, model=model, out_dir=tmp / f"local{args.threads[0]}"))
        if not args.no_ray:
            os.environ["OMP_NUM_THREADS"] = "1"
            rows.append(measure("ray local, 2 workers", jobs=jobs, model=model, out_dir=tmp / "ray", ray="local",
                                workers=2, cpus_per_job=1, gpus_per_job=0))
            same = all(json.loads(a)["frames_sha256"] == json.loads(b)["frames_sha256"] for a, b in zip(
                (tmp / f"local{args.threads[0]}" / "results.jsonl").read_text().splitlines(),
                (tmp / "ray" / "results.jsonl").read_text().splitlines()))
            rows[-1]["same_outputs_as_in_process"] = same
    best_local = max(r["jobs_per_hour"] for r in rows if r["config"].startswith("in-process"))
    for r in rows:
        r["speedup_vs_best_in_process"] = round(r["jobs_per_hour"] / best_local, 2)
    print(f"{'config':<24} {'jobs':>4} {'wall s':>8} {'jobs/hour':>10} {'speed-up':>9} {'inversions':>10} {'cache hits':>10}")
    for r in rows:
        print(f"{r['config']:<24} {r['jobs']:>4} {r['wall_s']:>8.1f} {r['jobs_per_hour']:>10.1f} "
              f"{r['speedup_vs_best_in_process']:>8.2f}x {r['inversions_computed']:>10} {r['cache_hit_rate']:>10.0%}")
    info = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs", "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average_at_end": os.getloadavg(), "rows": rows}
    try:
        import ray

        info["ray"] = ray.__version__
    except ImportError:
        pass
    print(json.dumps(info, indent=1))
    if args.json:
        args.json.write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
