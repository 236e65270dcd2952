"""The ``batch`` sub-command: many motion transfers from a JSONL job file, in-process or on Ray.

    python -m dmt batch JOBS.jsonl --model PATH --out DIR [--ray ADDRESS|auto|local]
        [--gpus-per-job N] [--max-retries 2] [--score]

Exit code: 0 all jobs ok, 1 some jobs failed (see DIR/results.csv), 2 bad input (nothing run).
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from ..batch.jobs import describe_keys
from ..models.zeroscope import DEFAULT_MODEL
from .common import HelpFormatter, add_threads_option, start_threads


def add_batch_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "batch",
        help="run many motion transfers from a JSONL job file (in-process or on a Ray cluster)",
        description="Run every job of a JSONL job file: one JSON object per line whose keys are the `transfer` "
        "options in snake_case (video, source_prompt, target_prompt, seed, preset, steps, inversion_steps, width, "
        "height, num_frames, ...) plus an optional output `name` (DIR/<name>.mp4). The whole file is checked before "
        "anything runs. Inversions are computed once per (video, inversion settings) and cached in DIR/cache/; "
        "finished jobs are skipped when the batch is run again (resume), and a changed setting re-runs only the "
        "jobs it affects. DIR/results.jsonl and DIR/results.csv get one row per job. Exit code 0: all ok; "
        "1: some jobs failed; 2: bad input.",
        epilog=textwrap.fill(
            "Job keys: the `transfer` options with the same ranges and defaults (dmt.settings; a preset's values "
            "replace the defaults), plus `name` (DIR/<name>.mp4; default <video stem>-<target prompt>-s<seed>). "
            "`video` and `target_prompt` are required.", 100)
        + "\n" + "\n".join("  " + line for line in describe_keys().splitlines()),
        formatter_class=HelpFormatter,
    )
    p.add_argument("jobs", metavar="JOBS", help="JSONL job file (relative video paths are relative to its folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder: videos, results.*, cache/")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="ZeroScope or Wan 2.1 diffusers folder or hub repo id (on a cluster: a folder on the shared "
                   "filesystem); on Wan every job runs the Wan transfer, with Wan's defaults for keys it does not give")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"],
                   help="weights dtype (default: float16 on GPU, float32 on CPU)")
    add_threads_option(p)
    p.add_argument("--score", action="store_true", help="add the Motion-Fidelity score of each output to the results")
    p.add_argument("--dry-run", action="store_true", help="check the job file and show which jobs would run; run nothing")
    r = p.add_argument_group("Ray (optional: pip install 'dmt-motion-transfer[ray]')")
    r.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run on Ray: 'local' (start Ray on this machine), 'auto' (the cluster this machine is part "
                        "of), or HOST:PORT / ray://HOST:PORT of a head. Without it the jobs run in this process")
    r.add_argument("--gpus-per-job", type=float, default=None,
                   help="GPUs each worker (one job at a time) reserves (default: 1 when the cluster has GPUs, else 0)")
    r.add_argument("--cpus-per-job", type=float, default=1, help="CPUs each worker reserves")
    r.add_argument("--workers", type=int, default=None, help="number of workers (default: as many as the cluster holds)")
    r.add_argument("--max-retries", type=int, default=2, help="times a job is retried when its worker process dies")
    r.add_argument("--ray-timeout", type=float, default=30.0, help="seconds to wait for the Ray connection")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_batch_command)
    return p


def run_batch_command(args: argparse.Namespace) -> int:
    from ..batch import run_batch

    start_threads(args)
    report = run_batch(
        args.jobs, args.model, args.out, device=args.device, dtype=args.dtype, threads=args.threads,
        score=args.score, ray=args.ray,
        gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, workers=args.workers,
        max_retries=args.max_retries, ray_timeout=args.ray_timeout, progress=not args.quiet, dry_run=args.dry_run,
    )
    s = report.summary
    if args.dry_run:
        todo = s["jobs"] - s["cached"]
        print(f"{s['jobs']} jobs: {s['cached']} finished, {todo} to run")
        for row in report.rows:
            print(f"  line {row['line']:>4}  {'done' if row.get('cached') else 'run '}  {row['output']}")
        return 0
    for row in report.rows:
        if row["status"] == "failed":
            print(f"failed: line {row['line']} ({row['name']}): {row['message']}", file=sys.stderr)
    print(f"{s['jobs']} jobs: {s['ok']} ok ({s['cached']} already done), {s['failed']} failed; "
          f"{s['inversions_computed']} inversions computed; {report.seconds:.1f} s. "
          f"Results: {report.out_dir / 'results.csv'}")
    return 1 if s["failed"] or s["pending"] else 0
