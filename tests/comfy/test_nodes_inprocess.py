"""The nodes called the way ComfyUI's executor calls them (under torch.inference_mode()), with
Cancel arriving mid-sampling and mid-inversion: the shared model must stay exactly as loaded
(requires_grad flags, no hooks left, no grads, eval mode, weights) and a re-run must equal the
clean run. Runs ComfyUI's modules in a subprocess so the pytest process never imports them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_cancel_leaves_shared_model_as_loaded(comfy_dir, tmp_path):
    sys.path.insert(0, str(HERE.parents[1]))
    from dmt.models.random_model import save_random_model

    diffusers = tmp_path / "diffusers"
    save_random_model(diffusers / "dmt-tiny")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(HERE / "inprocess_check.py"), str(comfy_dir), str(diffusers)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=str(comfy_dir))
    lines = [l for l in proc.stdout.splitlines() if l.startswith("DMT-REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    r = json.loads(lines[-1][len("DMT-REPORT "):])
    assert r["latent_shape"] == [1, 4, 6, 8, 8]
    assert r["images_shape"] == [6, 64, 64, 3]
    assert r["after_clean"]
    assert r["outcomes"] == ["interrupted"] * 3
    for stop in (2, 5, 13):
        assert r[f"state_ok_after_stop_{stop}"], stop
    assert r["inversion_interrupt"] == "interrupted" and r["inversion_calls"] == 7
    assert r["state_ok_after_inversion_stop"]
    assert r["rerun_equal"]
    assert r["state_ok_end"]


def test_cancel_leaves_a_shared_wan_as_loaded(comfy_dir, tmp_path):
    """The same on Wan: the sampler with SMM guidance, positions and gradient checkpointing, and the
    inversion, cancelled midway; no rotary hook, checkpointing flag or installed prompt is left."""
    sys.path.insert(0, str(HERE.parents[1]))
    from dmt.models.random_wan import save_random_wan

    diffusers = tmp_path / "diffusers"
    save_random_wan(diffusers / "dmt-tiny-wan", "tiny", seed=0)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(HERE / "inprocess_check.py"), str(comfy_dir), str(diffusers), "wan"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=str(comfy_dir))
    lines = [l for l in proc.stdout.splitlines() if l.startswith("DMT-REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    r = json.loads(lines[-1][len("DMT-REPORT "):])
    assert r["latent_shape"] == [1, 16, 2, 8, 8] and r["images_shape"] == [5, 64, 64, 3] and r["positions"]
    assert r["after_clean"]
    assert r["outcomes"] == ["interrupted"] * 3
    for stop in (2, 5, 14):
        assert r[f"state_ok_after_stop_{stop}"], stop
    assert r["inversion_interrupt"] == "interrupted" and r["state_ok_after_inversion_stop"]
    assert r["rerun_equal"] and r["state_ok_end"]
    assert r["toy_wan"] == ["WanTransformer3DModel", [1, 16, 3, 8, 8]]
