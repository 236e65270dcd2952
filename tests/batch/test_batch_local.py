"""In-process batches on the tiny model: one inversion per video, resume, selective re-runs,
failed jobs, results files."""

from __future__ import annotations

import csv
import json
import shutil
from types import SimpleNamespace

import pytest

import dmt
from dmt.batch import execute, run_batch
from dmt.batch.results import read_results
from dmt.cli import main

from conftest import SMALL, four_jobs, write_jobs


def _copy(local_batch, tmp_path):
    out, jobs, report = local_batch
    dst = tmp_path / "out"
    shutil.copytree(out, dst)
    return dst, jobs, report


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and "results." not in p.name}


def test_four_jobs_over_two_videos_make_two_inversions(local_batch):
    out, _, report = local_batch
    s = report.summary
    assert (s["jobs"], s["ok"], s["failed"], s["cached"]) == (4, 4, 0, 0)
    assert s["inversions_computed"] == 2
    assert len(list((out / "cache" / "inversions").glob("*.safetensors"))) == 2
    assert [r["inversion"] for r in report.rows] == ["computed", "cached", "computed", "cached"]
    assert not list(out.rglob(".partial-*")) and not list((out / "cache" / "running").iterdir())


def test_results_rows_match_the_outputs(local_batch):
    out, jobs, report = local_batch
    rows = read_results(out)
    assert rows == json.loads(json.dumps(report.rows))
    specs = four_jobs()
    assert [r["name"] for r in rows] == [j["name"] for j in specs]
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(f"{j['name']}.mp4" for j in specs)
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4
    for row, spec, csv_row in zip(rows, specs, table):
        assert row["status"] == "ok" and row["message"] == ""
        assert row["output"] == str(out / f"{spec['name']}.mp4")
        for key in ("target_prompt", "seed", "source_prompt", "steps", "inversion_steps", "width"):
            assert row["settings"][key] == spec[key]
            assert csv_row[f"setting.{key}"] == str(spec[key])
        assert csv_row["name"] == row["name"] and csv_row["output"] == row["output"]
        assert csv_row["status"] == "ok" and csv_row["frames_sha256"] == row["frames_sha256"]
        assert row["seconds_total"] > 0 and row["peak_memory_mb"] > 0
        clip = dmt.read_video(row["output"])
        assert clip.frames.shape == (SMALL["num_frames"], SMALL["height"], SMALL["width"], 3)
        assert clip.fps == pytest.approx(10, abs=0.1)  # the source's frame rate
    # different prompts/seeds on one video give different videos; the same job twice would not
    assert len({r["frames_sha256"] for r in rows}) == 4


def test_rerun_does_no_work(local_batch, tmp_path, monkeypatch):
    out, jobs, _ = _copy(local_batch, tmp_path)
    before = _mtimes(out)

    def no_model(self):
        raise AssertionError("a finished batch must not load the model")

    monkeypatch.setattr(execute.JobExecutor, "load", no_model)
    report = run_batch(jobs, local_batch[2].rows[0]["model"], out, device="cpu", dtype="float32", progress=False)
    assert report.summary["cached"] == 4 and report.summary["ok"] == 4
    assert _mtimes(out) == before
    assert [r["frames_sha256"] for r in report.rows] == [r["frames_sha256"] for r in local_batch[2].rows]


def test_changing_one_seed_reruns_one_job(local_batch, tiny_model_dir, tmp_path, monkeypatch):
    out, _, _ = _copy(local_batch, tmp_path)
    specs = four_jobs()
    specs[1]["seed"] = 7
    jobs = write_jobs(local_batch[1].parent / "seed7.jsonl", specs)
    ran = []
    real_run = execute.JobExecutor.run
    monkeypatch.setattr(execute.JobExecutor, "run", lambda self, pj, attempt=1: ran.append(pj.job.name)
                        or real_run(self, pj, attempt))
    report = run_batch(jobs, tiny_model_dir, out, device="cpu", dtype="float32", progress=False)
    assert ran == [specs[1]["name"]]
    assert report.summary["cached"] == 3 and report.summary["ok"] == 4
    assert report.rows[1]["inversion"] == "cached" and report.summary["inversions_computed"] == 0
    assert report.rows[1]["settings"]["seed"] == 7
    assert report.rows[1]["frames_sha256"] != local_batch[2].rows[1]["frames_sha256"]
    assert len(list((out / "cache" / "inversions").glob("*"))) == 2


def test_bad_video_fails_alone(local_batch, tiny_model_dir, videos, tmp_path, capsys):
    out, _, _ = _copy(local_batch, tmp_path)
    specs = four_jobs()
    broken = {**specs[0], "name": "broken", "video": "broken.mp4"}
    new = {**specs[2], "name": "right-seed5", "seed": 5}
    jobs = write_jobs(videos / "with-broken.jsonl", [broken, new, specs[3]])
    code = main(["batch", str(jobs), "--model", tiny_model_dir, "--out", str(out), "--device", "cpu",
                 "--dtype", "float32", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1  # some job failed
    assert "failed: line 1 (broken)" in captured.err
    rows = read_results(out)
    assert [r["status"] for r in rows] == ["failed", "ok", "ok"]
    assert "broken.mp4" in rows[0]["message"] and not (out / "broken.mp4").exists()
    assert rows[1]["inversion"] == "cached"  # the right video's inversion from the first batch
    assert (out / "right-seed5.mp4").is_file() and rows[2]["cached"] is True
    assert "2 ok (1 already done), 1 failed" in captured.out
    assert not list(out.rglob(".partial-*"))


def test_score_is_the_motion_fidelity_against_the_source(local_batch, tiny_model_dir, tmp_path, monkeypatch):
    """With a transfer that returns its input, the output moves exactly like the source: score 1.
    (The tiny random model's own outputs are noise with nothing trackable: recorded as score_error.)"""
    out, jobs, _ = _copy(local_batch, tmp_path)
    from dmt.transfer import pipeline

    monkeypatch.setattr(pipeline, "transfer", lambda model, frames, *a, **k: SimpleNamespace(frames=frames.clone()))
    report = run_batch(jobs, tiny_model_dir, out, device="cpu", dtype="float32", score=True, progress=False)
    assert report.summary["cached"] == 0  # finished rows had no score: scored now
    for row in report.rows:
        assert row["status"] == "ok" and row["motion_fidelity"] == pytest.approx(1.0, abs=1e-6)
        assert row["inversion"] == "cached"
    again = run_batch(jobs, tiny_model_dir, out, device="cpu", dtype="float32", score=True, progress=False)
    assert again.summary["cached"] == 4
