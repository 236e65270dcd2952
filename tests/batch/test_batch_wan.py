"""Batches on Wan 2.1 (tiny random Wan): the jobs run the Wan transfer `transfer --model <Wan>`
runs, with Wan's defaults where a line gives none; one inversion per video; resume; refusals."""

from __future__ import annotations

import pytest

import dmt
from dmt.batch import run_batch
from dmt.batch.execute import for_model, frames_digest
from dmt.batch.jobs import load_jobs
from dmt.io.video import read_video
from dmt.models.latents import prepare_frames
from dmt.transfer.amf_guidance import AMFSettings

from conftest import write_jobs

WAN_JOB = {"source_prompt": "a square", "target_prompt": "a red ball", "width": 64, "height": 64, "steps": 4}


@pytest.fixture(scope="module")
def wan_video(videos):
    return videos / "left.mp4"  # 8 frames: Wan takes the largest 4k + 1, 5


@pytest.fixture(scope="module")
def wan_batch(wan_dir, wan_video, tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch-wan")
    jobs = write_jobs(folder / "wan.jsonl", [
        {"name": "flow", "video": str(wan_video), **WAN_JOB},
        {"name": "smm", "video": str(wan_video), **WAN_JOB, "guidance": "smm", "seed": 1},
    ])
    out = folder / "out"
    return out, jobs, run_batch(jobs, str(wan_dir), out, device="cpu", dtype="float32", progress=False)


def test_wan_jobs_run_with_one_inversion_per_video(wan_batch):
    out, _, report = wan_batch
    s = report.summary
    assert (s["jobs"], s["ok"], s["failed"], s["inversions_computed"]) == (2, 2, 0, 1), report.rows
    assert [r["inversion"] for r in report.rows] == ["computed", "cached"]
    assert all(r["num_frames_out"] == 5 for r in report.rows)
    assert read_video(out / "flow.mp4").frames.shape == (5, 64, 64, 3)
    assert report.rows[0]["frames_sha256"] != report.rows[1]["frames_sha256"]


def test_a_wan_job_is_the_transfer_with_wans_defaults(wan_batch, wan, wan_video):
    """The job's output is dmt.transfer's on the same frames with Wan's defaults (attention flow,
    CFG 5, no windows): the same frames bit for bit."""
    _, jobs, report = wan_batch
    (job, _) = for_model(load_jobs(jobs), "wan")
    assert job.options["guidance_scale"] == 5.0 and job.options["context_length"] == 0
    frames = prepare_frames(read_video(wan_video).frames, 64, 64, 5, 0, 1)
    result = dmt.transfer(wan, frames, "a square", "a red ball", negative_prompt=job.options["negative_prompt"],
                          seed=0, amf=AMFSettings(num_steps=4))
    assert frames_digest(result.frames) == report.rows[0]["frames_sha256"]


def test_a_finished_wan_batch_runs_nothing_again(wan_batch, wan_dir):
    out, jobs, _ = wan_batch
    again = run_batch(jobs, str(wan_dir), out, device="cpu", dtype="float32", progress=False)
    assert again.summary["cached"] == 2 and again.summary["inversions_computed"] == 0


def test_zeroscope_options_on_wan_and_attention_flow_on_zeroscope_are_refused_before_running(
        wan_dir, tiny_model_dir, wan_video, tmp_path):
    jobs = write_jobs(tmp_path / "bad.jsonl", [
        {"video": str(wan_video), **WAN_JOB, "inversion_steps": 10},
        {"video": str(wan_video), **WAN_JOB, "preset": "fast", "seed": 2},
        {"video": str(wan_video), **WAN_JOB, "guidance": "attention_flow", "seed": 3},
    ])
    with pytest.raises(dmt.InputError) as err:
        run_batch(jobs, str(wan_dir), tmp_path / "out", device="cpu", dtype="float32", progress=False)
    msg = str(err.value)
    assert "line 1: 'inversion_steps' is ZeroScope's" in msg and "line 2: 'preset' is ZeroScope's" in msg
    assert "line 3" not in msg and not (tmp_path / "out" / "cache" / "inversions").exists()
    with pytest.raises(dmt.InputError, match="line 3: 'guidance' attention_flow reads a Wan"):
        run_batch(jobs, tiny_model_dir, tmp_path / "zs", device="cpu", dtype="float32", progress=False)


def test_context_windows_too_short_for_wans_latent_frames_are_refused_before_running(wan_dir, wan_video, tmp_path):
    """Windows are checked in latent frames (4 video frames each after the first) at plan time, so a
    batch never stops at its Nth job over a window that could never run."""
    jobs = write_jobs(tmp_path / "ctx.jsonl", [
        {"video": str(wan_video), **WAN_JOB, "context_length": 5, "context_overlap": 1},
        {"video": str(wan_video), **WAN_JOB, "context_length": 4, "context_overlap": 1, "seed": 1},
        {"video": str(wan_video), **WAN_JOB, "context_length": 8, "context_overlap": 6, "seed": 2},
    ])
    with pytest.raises(dmt.InputError) as err:
        run_batch(jobs, str(wan_dir), tmp_path / "out", device="cpu", dtype="float32", progress=False)
    msg = str(err.value)
    assert "2 job(s) cannot run" in msg and "line 1" not in msg
    assert "line 2: Context length 4 frames is 1 latent frame" in msg
    assert "line 3: Context overlap 6 frames is 2 latent frames" in msg
    assert not (tmp_path / "out" / "cache" / "inversions").exists()
