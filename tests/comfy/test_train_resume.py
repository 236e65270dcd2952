"""Train Motion (DMT) keeps a resumable state under ComfyUI's output folder: a cancelled, crashed
or finished training continues instead of starting over, a different configuration never picks up
another's state, and the node says what it did. Runs ComfyUI's modules in a subprocess
(train_resume_inprocess.py), so the pytest process never imports them. The library part is
tested without ComfyUI in tests/customize/test_train.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(comfy_dir, diffusers, output, mode):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(HERE / "train_resume_inprocess.py"), str(comfy_dir), str(diffusers),
                           str(output), mode], capture_output=True, text=True, timeout=600, env=env, cwd=str(comfy_dir))


def _report(proc) -> dict:
    lines = [l for l in proc.stdout.splitlines() if l.startswith("DMT-REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(lines[-1][len("DMT-REPORT "):])


def _models(tmp_path) -> Path:
    sys.path.insert(0, str(HERE.parents[1]))
    from dmt.models.random_model import save_random_model

    diffusers = tmp_path / "diffusers"
    save_random_model(diffusers / "dmt-tiny")
    return diffusers


def test_cancel_resume_and_other_settings(comfy_dir, tmp_path):
    r = _report(_run(comfy_dir, _models(tmp_path), tmp_path / "output", "cancel"))
    assert r["cancel"] == "interrupted"
    assert r["run_dir"].startswith("sks-lora-")
    assert r["saved_step_after_cancel"] == 3  # Cancel saved the state of the last finished step
    assert r["motion_snapshots"] == []  # the node keeps only the resumable state
    assert r["resume_text"][0] == "resuming from the saved state at step 3 of 6"
    assert r["resume_text"][1].startswith("continued from step 3 to 6; training state in ")
    assert r["resumed_steps"] == 6
    assert r["finished_text"][0] == "this run already finished 6 steps: using its saved state (no training)"
    assert r["finished_same"]
    assert r["fresh_text"][0] == "'resume' is off: starting from step 0 of 6 (replaces the saved state at step 6)"
    assert r["resume_equals_uninterrupted"], "a resumed run must end exactly like an uninterrupted one"
    assert r["other_lr_text"][0] == "no saved state for these settings and clips: training from step 0 of 2"
    assert len(r["run_dirs"]) == 2 and r["run_dir"] in r["run_dirs"]
    assert r["fewer_steps"].startswith("InputError: The saved training state of this run is at step 6, past 'steps' 4")
    assert "set 'steps' to 6 or more to continue it, or turn 'resume' off" in r["fewer_steps"]
    assert r["more_text"][0] == "resuming from the saved state at step 6 of 8" and r["more_steps"] == 8


def test_a_crash_loses_at_most_checkpoint_every_steps(comfy_dir, tmp_path):
    diffusers, output = _models(tmp_path), tmp_path / "output"
    crash = _run(comfy_dir, diffusers, output, "crash")
    assert crash.returncode == 3, crash.stdout[-2000:] + crash.stderr[-3000:]
    r = _report(_run(comfy_dir, diffusers, output, "after-crash"))  # a new process: ComfyUI restarted
    assert r["saved_step_after_crash"] == 4  # checkpoint_every 2, died during step 5
    assert r["after_crash_text"][0] == "resuming from the saved state at step 4 of 6"
    assert r["after_crash_steps"] == 6
