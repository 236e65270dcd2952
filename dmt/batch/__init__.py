"""Batches of motion transfers: `python -m dmt batch JOBS --model PATH --out DIR [--ray ADDRESS]`.

- jobs: the JSONL job file (keys = the `transfer` options in snake_case, plus `name`).
- cache: content-addressed inversions and finished results in DIR/cache/ (resume, reuse).
- runner_local: in-process, one job after another. runner_ray: Ray actors, one model per worker.
- results: DIR/results.jsonl and DIR/results.csv.

`run_batch` is the one entry point; the CLI is a thin wrapper around it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..settings import THREADS
from .execute import BatchSettings, default_dtype, plan, resolve_model
from .cache import model_digest
from .jobs import Job, load_jobs
from .results import summary, write_results


@dataclass
class BatchReport:
    """rows: one results row per job (job-file order); summary: counts (see results.summary);
    seconds: wall time of the run; out_dir: the output folder."""

    rows: list[dict]
    summary: dict
    seconds: float
    out_dir: Path
    extra: dict = field(default_factory=dict)


def check_out_dir(out_dir: str | Path) -> Path:
    """Create `out_dir` (and DIR/cache) and prove it writable, or raise InputError."""
    out = Path(out_dir).expanduser()
    try:
        (out / "cache").mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"Output folder '{out}' is not writable ({exc.strerror or exc}). "
                         f"Choose another --out or fix its permissions.") from None
    return out.resolve()


def run_batch(
    jobs: str | Path | list[Job],
    model: str,
    out_dir: str | Path,
    *,
    device: str | None = None,
    dtype: str | None = None,
    threads: int | None = None,
    score: bool = False,
    ray: str | None = None,
    gpus_per_job: float | None = None,
    cpus_per_job: float = 1,
    workers: int | None = None,
    max_retries: int = 2,
    ray_timeout: float = 30.0,
    progress: bool = True,
    dry_run: bool = False,
) -> BatchReport:
    """Run a batch of motion transfers; finished jobs (same settings, same video bytes, same model)
    are skipped, inversions are computed once per (video, inversion settings).

    Args:
        jobs: a JSONL job file or already loaded jobs.
        model: diffusers folder (on a cluster: on the shared filesystem) or hub repo id.
        out_dir: DIR: outputs DIR/<name>.mp4, DIR/results.{jsonl,csv}, cache in DIR/cache/.
        device/dtype: as `transfer` (None: cuda when available, else cpu; float16 on GPU, float32 on CPU).
        threads: torch CPU threads of each job's process (None: dmt.models.threads' rule: OMP_NUM_THREADS
            when set, else 1 for a small model, else torch's default).
        score: add the Motion-Fidelity score of every output against its (prepared) source.
        ray: None = in-process; "local" = start a Ray instance on this machine; "auto" = the
            running cluster this machine belongs to; "HOST:PORT" or "ray://HOST:PORT" = that cluster.
        gpus_per_job, cpus_per_job, workers, max_retries, ray_timeout: Ray only (see runner_ray).
        dry_run: validate and plan only; rows say which jobs would run.
    Raises:
        InputError: bad job file, output folder not writable, unreachable Ray cluster, ... -
            always before any job runs.
    """
    started = time.perf_counter()
    job_list = load_jobs(jobs) if not isinstance(jobs, list) else jobs
    out = check_out_dir(out_dir)
    if max_retries < 0:
        raise InputError(f"--max-retries must be >= 0, got {max_retries}.")
    if threads is not None:
        THREADS.check(threads, "--threads")
    folder = resolve_model(model)
    session = None
    if ray is not None and not dry_run:
        from .runner_ray import RaySession, resolve_gpus

        session = RaySession(ray, timeout=ray_timeout)
    try:
        if session is not None:
            gpus_per_job = resolve_gpus(session, gpus_per_job)
        if dtype is None:
            if ray is None:
                import torch

                dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
            else:
                dev = device or ("cuda" if (gpus_per_job or 0) > 0 else "cpu")
            dtype = default_dtype(dev)
        settings = BatchSettings(model=folder, model_sha=model_digest(folder), out_dir=str(out), dtype=dtype,
                                 device=device, score=score, threads=threads)
        planned = plan(job_list, settings)
        extra: dict = {}
        if dry_run:
            from .execute import base_row, finished_row

            rows = [finished_row(p) if p.finished else base_row(p, settings) for p in planned]
        elif session is None:
            from .runner_local import run_local

            rows = run_local(planned, settings, progress=progress)
        else:
            from .runner_ray import run_ray

            rows, extra = run_ray(planned, settings, session, gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job,
                                  workers=workers, max_retries=max_retries, progress=progress)
    finally:
        if session is not None:
            session.close()
    if not dry_run:
        write_results(out, rows)
    return BatchReport(rows=rows, summary=summary(rows), seconds=time.perf_counter() - started, out_dir=out,
                       extra=extra)


__all__ = ["BatchReport", "Job", "load_jobs", "run_batch", "check_out_dir"]
