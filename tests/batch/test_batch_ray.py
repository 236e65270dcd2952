"""The batch on a real local Ray cluster started here (2 CPU workers, loopback only): the same
outputs as in-process, a worker killed mid-job is retried, an unreachable address is refused.

Skipped only when `ray` cannot be imported (it is an optional extra, installed in CI)."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (optional extra: pip install 'dmt-motion-transfer[ray]')")

import dmt  # noqa: E402
from dmt.batch import run_batch  # noqa: E402
from dmt.cli import main  # noqa: E402

from conftest import child_pids, four_jobs, wait_for_children_to_exit, write_jobs  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_is_refused_quickly(tiny_model_dir, videos, tmp_path, capsys):
    assert not ray.is_initialized()
    jobs = write_jobs(tmp_path / "jobs.jsonl", four_jobs()[:1])
    for f in ("left.mp4",):
        (tmp_path / f).symlink_to(videos / f)
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    code = main(["batch", str(jobs), "--model", tiny_model_dir, "--out", str(tmp_path / "out"), "--ray", address,
                 "--ray-timeout", "5"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"Cannot reach a Ray cluster at '{address}'" in err and "ray start --head" in err
    assert not ray.is_initialized()
    assert not list((tmp_path / "out").glob("*.mp4"))


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray head with 2 CPUs on the loopback interface; shut down after the module, with a
    check that no Ray process is left behind."""
    before = child_pids()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False,
             _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}})
    try:
        yield
    finally:
        ray.shutdown()
        left = wait_for_children_to_exit(before)
        assert not left, f"Ray left processes behind: {left}"


def _hashes(rows):
    return {r["name"]: r["frames_sha256"] for r in rows}


def test_ray_batch_gives_the_in_process_outputs(ray_cluster, local_batch, tiny_model_dir, tmp_path):
    local_out, jobs, local = local_batch
    out = tmp_path / "ray-out"
    report = run_batch(jobs, tiny_model_dir, out, device="cpu", dtype="float32", ray="auto", gpus_per_job=0,
                       progress=False)
    assert report.summary["ok"] == 4 and report.summary["inversions_computed"] == 2
    assert report.extra["workers"] == 2 and report.extra["worker_deaths"] == 0
    assert len({r["worker"] for r in report.rows}) == 2  # both workers took jobs
    assert all(r["worker"].split(":")[-1] != str(os.getpid()) for r in report.rows)
    assert _hashes(report.rows) == _hashes(local.rows)
    for a, b in zip(report.rows, local.rows):
        assert dmt.read_video(a["output"]).frames.equal(dmt.read_video(b["output"]).frames)
    assert len(list((out / "cache" / "inversions").glob("*.safetensors"))) == 2
    assert ray.is_initialized()  # joined the caller's Ray, did not shut it down


def test_worker_killed_mid_job_is_retried(ray_cluster, local_batch, tiny_model_dir, videos, tmp_path):
    _, _, local = local_batch
    specs = [four_jobs()[0], four_jobs()[2]]
    jobs = write_jobs(videos / "two.jsonl", specs)
    out = tmp_path / "ray-kill"
    running = out / "cache" / "running"
    killed: list[dict] = []
    stop = threading.Event()

    def kill_first_running_worker():
        while not stop.is_set():
            for marker in sorted(running.glob("*.json")) if running.is_dir() else []:
                try:
                    info = json.loads(marker.read_text())
                except (OSError, ValueError):
                    continue
                assert info["pid"] != os.getpid()
                os.kill(info["pid"], signal.SIGKILL)
                killed.append({**info, "name": marker.stem})
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_first_running_worker, daemon=True)
    killer.start()
    try:
        report = run_batch(jobs, tiny_model_dir, out, device="cpu", dtype="float32", ray="auto", gpus_per_job=0,
                           max_retries=2, progress=False)
    finally:
        stop.set()
        killer.join(5)
    assert len(killed) == 1
    assert report.summary["ok"] == 2 and report.summary["failed"] == 0
    assert report.extra["worker_deaths"] == 1 and report.extra["retries"] == 1
    victim = next(r for r in report.rows if r["name"] == killed[0]["name"])
    assert victim["attempts"] == 2 and victim["worker"].split(":")[-1] != str(killed[0]["pid"])
    expected = _hashes(local.rows)
    assert {name: expected[name] for name in _hashes(report.rows)} == _hashes(report.rows)  # nothing lost or changed
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(f"{s['name']}.mp4" for s in specs)
    assert not list(out.rglob(".partial-*"))
