"""`--ray local`: the batch starts its own Ray instance on this machine and shuts it down after.

(A separate module: test_batch_ray.py's module-wide Ray is shut down before this one runs.)"""

from __future__ import annotations

import shutil

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (optional extra: pip install 'dmt-motion-transfer[ray]')")

from dmt.batch.results import read_results  # noqa: E402
from dmt.cli import main  # noqa: E402

from conftest import child_pids, four_jobs, wait_for_children_to_exit, write_jobs  # noqa: E402


def test_ray_local_starts_and_stops_its_own_ray(local_batch, tiny_model_dir, videos, tmp_path, capsys):
    assert not ray.is_initialized()
    before = child_pids()
    out = tmp_path / "out"
    shutil.copytree(local_batch[0], out)
    specs = four_jobs()
    specs[0]["seed"] = 11  # one job to run; the other three are finished, the inversion is cached
    jobs = write_jobs(videos / "ray-local.jsonl", specs)
    code = main(["batch", str(jobs), "--model", tiny_model_dir, "--out", str(out), "--ray", "local",
                 "--gpus-per-job", "0", "--workers", "1", "--device", "cpu", "--dtype", "float32", "--quiet"])
    assert code == 0, capsys.readouterr().err
    rows = read_results(out)
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert [bool(r.get("cached")) for r in rows] == [False, True, True, True]
    assert rows[0]["inversion"] == "cached" and rows[0]["settings"]["seed"] == 11
    assert not ray.is_initialized()
    left = wait_for_children_to_exit(before)
    assert not left, f"Ray left processes behind: {left}"
