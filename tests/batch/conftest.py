"""Fixtures of the batch tests: two small videos, a job-file writer, one finished in-process batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dmt
from dmt.batch import run_batch

from helpers import FRAMES, SIZE, STEPS, moving_square_clip

#: The fast settings of every batch test job (tests/helpers.py sizes; 10 inversion steps - valid for
#: 10 sampling steps - and no restart sampling: the batch machinery does not depend on them, and
#: they keep a job at a few seconds on a busy 2-core machine).
SMALL = {"width": SIZE, "height": SIZE, "num_frames": FRAMES, "steps": STEPS, "inversion_steps": 10,
         "optimization_steps": 2, "no_restart": True}


def child_pids() -> set[int]:
    """This process's child processes (recursive), e.g. before a Ray instance is started."""
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def wait_for_children_to_exit(before: set[int], timeout: float = 30) -> list[tuple[int, str]]:
    """Wait until every child process started since `before` (child_pids()) has exited; returns
    (pid, name) of those still running after `timeout` s. Children from before, such as the ComfyUI
    server that another test file of this pytest worker keeps for its session, are not counted."""
    import time

    import psutil

    def new():
        return [p for p in psutil.Process().children(recursive=True) if p.pid not in before]

    deadline = time.monotonic() + timeout  # ray.shutdown stops its processes; give them time to exit
    while new() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = []
    for p in new():
        try:
            left.append((p.pid, p.name()))
        except psutil.NoSuchProcess:
            pass
    return left


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return path


def four_jobs() -> list[dict]:
    """2 videos x 2 (prompt, seed): 4 jobs, 2 inversions."""
    return [{"name": f"{v}-{p.split()[-1]}", "video": f"{v}.mp4", "source_prompt": "a square", "target_prompt": p,
             "seed": s, **SMALL}
            for v in ("left", "right") for p, s in (("a red circle", 0), ("a blue star", 1))]


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> Path:
    """A folder with left.mp4 and right.mp4 (different clips) and broken.mp4 (not a video)."""
    d = tmp_path_factory.mktemp("batch-videos")
    dmt.write_video(d / "left.mp4", moving_square_clip(num_frames=8, size=96, seed=0), fps=10)
    dmt.write_video(d / "right.mp4", moving_square_clip(num_frames=8, size=96, seed=1), fps=10)
    (d / "broken.mp4").write_bytes(b"this is not a video file" * 10)
    return d


@pytest.fixture(scope="session")
def local_batch(tiny_model_dir, videos, tmp_path_factory):
    """The 4-job batch run once in-process: (out dir, job file, BatchReport)."""
    jobs = write_jobs(videos / "four.jsonl", four_jobs())
    out = tmp_path_factory.mktemp("batch-local") / "out"
    report = run_batch(jobs, tiny_model_dir, out, device="cpu", dtype="float32", progress=False)
    return out, jobs, report
