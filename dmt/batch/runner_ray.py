"""Ray runner: the jobs of a batch on Ray actors (`ray` is an optional extra, imported here only).

- One actor per worker slot; each loads the model once and runs job after job on it.
- Resources: every actor reserves `gpus_per_job` GPUs and `cpus_per_job` CPUs, and runs one job
  at a time, so each job gets exactly those resources. Workers = what the cluster can hold
  (or --workers), at most one per job.
- Inversions: a job whose inversion is being computed by a running job waits for it, so every
  (video, inversion settings) is inverted once even with many workers.
- A worker process that dies (killed, OOM-killed, node lost) is replaced by a new actor and its
  job is retried up to `max_retries` times; a job that fails on its own (bad video, out of
  memory) is recorded as failed and not retried.
- Files go through DIR (outputs, DIR/cache): on a multi-machine cluster DIR and the model folder
  must be on a filesystem every node mounts at the same path.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import deque
from pathlib import Path

from ..errors import InputError
from .execute import BatchSettings, PlannedJob, base_row, finished_row
from .results import write_results

INSTALL_HINT = "pip install 'dmt-motion-transfer[ray]' (or: pip install ray)"


def import_ray():
    """`ray`, or InputError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise InputError(f"--ray needs the optional Ray package, which is not installed ({exc}). {INSTALL_HINT}") from None
    return ray


def _probe(address: str, timeout: float) -> None:
    """TCP-connect to HOST:PORT (or ray://HOST:PORT) within `timeout`, or raise InputError."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"Ray address '{address}' is not HOST:PORT, ray://HOST:PORT, 'auto' or 'local'.")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise InputError(f"Cannot reach a Ray cluster at '{address}' ({exc.strerror or exc}; waited at most "
                         f"{timeout:g} s). Start one with `ray start --head` (its output prints the address), "
                         f"check the host and port, or use --ray local for a Ray instance on this machine.") from None


def _source_path() -> str:
    """The folder holding the `dmt` package, so that workers import the same code as the driver."""
    return str(Path(__file__).resolve().parents[2])


class RaySession:
    """A connection to Ray: joins an existing `ray.init` in this process, or makes one (and then
    shuts it down on close)."""

    def __init__(self, address: str, timeout: float = 30.0, num_cpus: int | None = None):
        self.ray = import_ray()
        self.owned = False
        self.address = address
        if self.ray.is_initialized():
            return
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (_source_path(), os.environ.get("PYTHONPATH")) if p)}}
        kwargs: dict = {"runtime_env": env, "log_to_driver": False, "logging_level": "ERROR"}
        if address == "local":
            kwargs.update(address="local", include_dashboard=False, num_cpus=num_cpus, _node_ip_address="127.0.0.1")
        elif address == "auto":
            kwargs["address"] = "auto"
        else:
            _probe(address, min(timeout, 10.0))
            kwargs["address"] = address
        box: dict = {}

        def start():
            try:
                box["ctx"] = self.ray.init(**kwargs)
            except Exception as exc:  # noqa: BLE001 - reported below with the address
                box["error"] = exc

        if address == "local":
            # Started here, in this thread: Ray ties the processes it starts (GCS, raylet) to the
            # starting thread's life (parent-death signal), so a helper thread would kill them.
            start()
            thread = None
        else:  # joining a cluster: bounded wait, the connection may hang on a wrong address
            thread = threading.Thread(target=start, daemon=True)
            thread.start()
            thread.join(timeout)
        if thread is not None and thread.is_alive():
            raise InputError(f"Ray did not connect to '{address}' within {timeout:g} s (--ray-timeout). "
                             f"Check that the address is a Ray head (`ray status` on it).")
        if "error" in box:
            exc = box["error"]
            hint = ("no running Ray cluster was found on this machine: start one with `ray start --head`, "
                    "or use --ray local" if address == "auto" else "check the address")
            raise InputError(f"Cannot connect to Ray at '{address}': {type(exc).__name__}: {exc}. {hint}.") from None
        self.owned = True

    def resources(self) -> dict:
        return self.ray.cluster_resources()

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        self.owned = False


class _Worker:
    """Ray actor body: one JobExecutor (one model load) reused across jobs."""

    def __init__(self, settings: BatchSettings, threads: int):
        import torch

        from .execute import JobExecutor

        if threads > 0:
            torch.set_num_threads(threads)
        self.executor = JobExecutor(settings)

    def pid(self) -> int:
        return os.getpid()

    def run(self, pj: PlannedJob, attempt: int) -> dict:
        return self.executor.run(pj, attempt)


def resolve_gpus(session: RaySession, gpus_per_job: float | None) -> float:
    """--gpus-per-job: None = 1 when the cluster has GPUs, else 0. Raises InputError when the
    cluster has fewer GPUs than one job asks for."""
    have = float(session.resources().get("GPU", 0))
    if gpus_per_job is None:
        return 1.0 if have > 0 else 0.0
    if gpus_per_job < 0:
        raise InputError(f"--gpus-per-job must be >= 0, got {gpus_per_job:g}.")
    if gpus_per_job > have:
        raise InputError(f"--gpus-per-job {gpus_per_job:g} but the Ray cluster has {have:g} GPU(s). "
                         f"Use --gpus-per-job 0 to run on CPUs, or add GPU nodes.")
    return float(gpus_per_job)


def worker_count(session: RaySession, gpus: float, cpus: float, workers: int | None, jobs: int) -> int:
    res = session.resources()
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}.")
    if cpus <= 0:
        raise InputError(f"--cpus-per-job must be > 0, got {cpus:g}.")
    fit = int(float(res.get("CPU", 0)) // cpus)
    if gpus > 0:
        fit = min(fit, int(float(res.get("GPU", 0)) // gpus))
    if fit < 1:
        raise InputError(f"The Ray cluster ({res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs) cannot hold one "
                         f"worker of {cpus:g} CPU(s) and {gpus:g} GPU(s); lower --cpus-per-job/--gpus-per-job.")
    n = workers if workers is not None else fit
    return max(1, min(n, jobs))


def run_ray(
    planned: list[PlannedJob],
    settings: BatchSettings,
    session: RaySession,
    *,
    gpus_per_job: float,
    cpus_per_job: float = 1,
    workers: int | None = None,
    max_retries: int = 2,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Run the unfinished jobs on Ray actors. Returns (rows in job-file order, extra info:
    workers, worker_deaths, retries)."""
    from tqdm.auto import tqdm

    ray = session.ray
    rows = [finished_row(p) if p.finished else base_row(p, settings) for p in planned]
    todo = deque(i for i, p in enumerate(planned) if not p.finished)
    extra = {"workers": 0, "worker_deaths": 0, "retries": 0}
    write_results(settings.out_dir, rows)
    if not todo:
        return rows, extra
    n = worker_count(session, gpus_per_job, cpus_per_job, workers, len(todo))
    extra["workers"] = n
    actor_cls = ray.remote(_Worker).options(num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_restarts=0,
                                            max_task_retries=0)
    threads = max(1, int(cpus_per_job))

    def new_actor():
        return actor_cls.remote(settings, threads)

    actors = [new_actor() for _ in range(n)]
    idle = list(range(n))
    in_flight: dict = {}  # ObjectRef -> (job index, actor slot)
    inverting: dict[str, int] = {}  # inversion key -> job index computing it
    attempts = {i: 0 for i in todo}
    from .cache import BatchCache

    cache = BatchCache(settings.out_dir)
    bar = tqdm(total=len(planned), initial=len(planned) - len(todo), desc=f"batch (ray, {n} workers)", unit="job",
               disable=not progress, dynamic_ncols=True)

    def next_job() -> int | None:
        for i in list(todo):
            key = planned[i].inversion_key
            if key not in inverting or cache.inversion_path(key).is_file():
                todo.remove(i)
                if not cache.inversion_path(key).is_file():
                    inverting[key] = i
                return i
        return None

    try:
        while todo or in_flight:
            while idle and todo:
                i = next_job()
                if i is None:
                    break
                slot = idle.pop()
                attempts[i] += 1
                in_flight[actors[slot].run.remote(planned[i], attempts[i])] = (i, slot)
            if not in_flight:  # cannot happen: a waiting job waits for an in-flight one
                raise RuntimeError("batch scheduler stalled")
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                i, slot = in_flight.pop(ref)
                key = planned[i].inversion_key
                if inverting.get(key) == i:
                    del inverting[key]
                try:
                    row = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                    extra["worker_deaths"] += 1
                    ray.kill(actors[slot], no_restart=True)
                    actors[slot] = new_actor()
                    idle.append(slot)
                    if attempts[i] <= max_retries:
                        extra["retries"] += 1
                        todo.appendleft(i)
                        continue
                    row = {**base_row(planned[i], settings), "status": "failed", "attempts": attempts[i],
                           "message": f"the worker died {attempts[i]} time(s) running this job (--max-retries "
                                      f"{max_retries}): {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
                except ray.exceptions.RayTaskError as exc:
                    idle.append(slot)
                    row = {**base_row(planned[i], settings), "status": "failed", "attempts": attempts[i],
                           "message": f"{type(exc).__name__}: {str(exc)[:500]}"}
                else:
                    idle.append(slot)
                rows[i] = row
                write_results(settings.out_dir, rows)
                bar.update(1)
    finally:
        bar.close()
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
    return rows, extra
