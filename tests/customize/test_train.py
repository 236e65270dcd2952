"""Training loop: bit-exact resume, cancel, logs, validation clips, bad settings."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dmt.customize import MotionExample, TrainSettings, load_motion, train_motion
from dmt.customize.train import _resume_mismatch, training_key
from dmt.customize.train_state import read_train_state_info, state_path
from dmt.customize.timesteps import sample_timesteps, timestep_density
from dmt.errors import DMTError, InputError, Interrupted

from cz_helpers import assert_same, blob_clip, encoded, quick_settings, quick_train, state_hash


@pytest.fixture(scope="module")
def examples(tiny_model):
    return encoded(tiny_model, n=2)


@pytest.fixture(scope="module")
def reg(tiny_model):
    return encoded(tiny_model, caption="a blob", n=1, token=None, dx=-8, x0=44)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_resume_after_interruption_is_bit_exact(tmp_path, tiny_model, examples, reg, mode):
    kw = dict(mode=mode, steps=4, lr=1e-2 if mode == "lora" else 1e-3, regularization=reg,
              gradient_accumulation=2 if mode == "lora" else 1)
    full_run = quick_train(tiny_model, examples, work_dir=tmp_path / "a", checkpoint_every=2, **kw)
    calls = {"n": 0}

    def cancel_at_step_3():  # called before every step: cancel before the 3rd (state after step 2)
        calls["n"] += 1
        return calls["n"] == 3

    with pytest.raises(Interrupted):
        quick_train(tiny_model, examples, work_dir=tmp_path / "b", checkpoint_every=2,
                    check_interrupt=cancel_at_step_3, **kw)
    before = state_hash(tiny_model)
    resumed = quick_train(tiny_model, examples, work_dir=tmp_path / "b", checkpoint_every=2, resume=True, **kw)
    assert resumed.resumed_from == 2
    assert_same(before, state_hash(tiny_model))
    a, b = full_run.motion.tensors, resumed.motion.tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in full_run.losses] == [r["loss"] for r in resumed.losses]
    log = [json.loads(line) for line in (tmp_path / "b" / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert (tmp_path / "b" / "loss.png").stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == [
        "motion_step_000002.safetensors", "motion_step_000004.safetensors"]
    assert load_motion(tmp_path / "a" / "checkpoints" / "motion_step_000002.safetensors").info["steps"] == 2


def test_exception_from_on_step_saves_a_resumable_state_and_more_steps_continue(tmp_path, tiny_model, examples):
    def stop_after_2(stage, step, total, latent):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quick_train(tiny_model, examples, steps=3, work_dir=tmp_path, on_step=stop_after_2)
    more = quick_train(tiny_model, examples, steps=4, work_dir=tmp_path, resume=True)
    assert more.resumed_from == 2 and len(more.losses) == 4 and more.motion.info["steps"] == 4


def test_resume_with_other_settings_is_refused(tmp_path, tiny_model, examples):
    quick_train(tiny_model, examples, steps=2, work_dir=tmp_path)
    with pytest.raises(InputError, match="different settings"):
        quick_train(tiny_model, examples, steps=3, lr=1e-3, work_dir=tmp_path, resume=True)
    with pytest.raises(InputError, match="example or regularization"):
        quick_train(tiny_model, examples[:1], steps=3, work_dir=tmp_path, resume=True)


def test_validation_clips_at_start_and_checkpoints(tmp_path, tiny_model, examples):
    seen = []
    result = train_motion(tiny_model, examples, "sks",
                          TrainSettings(rank=2, steps=2, checkpoint_every=2, validation_steps=2),
                          work_dir=tmp_path, on_validation=lambda step, clips: seen.append(step))
    assert seen == [0, 2] and sorted(result.validation) == [0, 2]
    assert result.validation[2][0].shape == (4, 64, 64, 3)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "validation_step_000000_0.mp4" in names and "validation_step_000002_0.mp4" in names
    assert result.loss_curve.shape == (360, 640, 3) and result.loss_curve.dtype.name == "uint8"


@pytest.mark.parametrize("kw, match", [
    (dict(steps=0), "number of training steps is 0: it must be a whole number from 1 to 100000 \\(default 400\\)"),
    (dict(lr=float("nan")), "learning rate is nan: it must be a number above 0 and at most 1"),
    (dict(lr=-1e-4), "learning rate is -0.0001"), (dict(lr=2.0), "learning rate is 2"),
    (dict(mode="dora"), "mode"), (dict(rank=0), "LoRA rank is 0: it must be a whole number from 1 to 512"),
    (dict(timesteps="late"), "timestep sampling is 'late': it must be one of coarse, uniform"),
    (dict(reg_weight=-1.0), "regularization weight is -1: it must be a number from 0 to 10"),
    (dict(gradient_accumulation=0), "accumulation"), (dict(checkpoint_every=-1), "checkpoint interval is -1"),
])
def test_bad_settings(tiny_model, examples, kw, match):
    before = state_hash(tiny_model)
    with pytest.raises(InputError, match=match):
        quick_train(tiny_model, examples, **kw)
    assert_same(before, state_hash(tiny_model))


def test_bad_data(tiny_model, examples):
    with pytest.raises(InputError, match="No example clips"):
        quick_train(tiny_model, [])
    no_token = encoded(tiny_model, caption="a blob", n=1, token=None)
    with pytest.raises(InputError, match="does not contain the motion token 'sks'"):
        quick_train(tiny_model, no_token)
    longer = encoded(tiny_model, n=1, num_frames=6)
    with pytest.raises(InputError, match="same frame count"):
        quick_train(tiny_model, examples + longer)


def test_nan_loss_stops_with_a_message(tiny_model, examples, monkeypatch):
    with pytest.raises(InputError, match="learning rate is 1e\\+30: it must be a number above 0 and at most 1"):
        quick_train(tiny_model, examples, lr=1e30, steps=4)
    monkeypatch.setattr(TrainSettings, "validate", lambda self: None)  # past the range check: the loop's own guard
    with pytest.raises(DMTError, match="lower the learning rate"):
        quick_train(tiny_model, examples, lr=1e30, steps=4)


def test_coarse_timestep_density():
    p = timestep_density("coarse")
    assert math.isclose(float(p.sum()), 1.0) and math.isclose(float(p[-1] / p[0]), 4.0)
    assert 0.64 < float(p[500:].sum()) < 0.66
    assert torch.all(timestep_density("uniform") == 1e-3)
    t = sample_timesteps(20000, "coarse", torch.Generator().manual_seed(0))
    assert 0.58 < float(t.float().mean() / 1000) < 0.62  # E[t] = 0.6 T for the ramp 1 + 3 t/T


def test_resume_without_a_state_starts_fresh_and_reports_it(tmp_path, tiny_model, examples):
    """The library's resume=True continues when it can (the ComfyUI node relies on it); the CLI
    refuses --resume with nothing to resume before calling it (test_cli_customize)."""
    assert read_train_state_info(state_path(tmp_path)) is None
    result = quick_train(tiny_model, examples, steps=2, work_dir=tmp_path, resume=True, checkpoint_every=1)
    assert result.resumed_from == 0 and len(result.losses) == 2
    assert read_train_state_info(state_path(tmp_path))["step"] == 2
    (tmp_path / "bad").mkdir()
    state_path(tmp_path / "bad").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot be read"):
        read_train_state_info(state_path(tmp_path / "bad"))


def test_snapshots_off_keeps_only_the_state(tmp_path, tiny_model, examples):
    quick_train(tiny_model, examples, steps=2, checkpoint_every=1, work_dir=tmp_path, snapshots=False)
    assert state_path(tmp_path).is_file()
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("motion_step")]


def test_resume_on_another_base_model_is_refused(tmp_path, tiny_model, examples, monkeypatch):
    quick_train(tiny_model, examples, steps=1, work_dir=tmp_path)
    monkeypatch.setattr(tiny_model, "fingerprint", "another-model")
    with pytest.raises(InputError, match="trained with a different base model"):
        quick_train(tiny_model, examples, steps=2, work_dir=tmp_path, resume=True)
    # states written before the base model was recorded still resume
    assert _resume_mismatch({"settings": "s", "data": "d"}, {"settings": "s", "data": "d", "model": "m"}) is None
    assert _resume_mismatch({"settings": "s", "data": "x", "model": "n"},
                            {"settings": "s", "data": "d", "model": "m"}) == \
        "different example or regularization clips and a different base model"


def test_training_key_names_a_run_by_what_a_resume_must_keep(tiny_model):
    clips = [MotionExample(blob_clip(seed=i), "a sks blob", f"clip{i}") for i in range(2)]
    key = training_key(tiny_model, clips, [], "sks", quick_settings())
    assert len(key) == 32 and key == training_key(tiny_model, clips, [], "sks", quick_settings())
    # steps, checkpoint and validation settings may change between a run and its resume
    assert key == training_key(tiny_model, clips, [], "sks", quick_settings(steps=9, checkpoint_every=5,
                                                                            validation_every=2))
    other = [MotionExample(blob_clip(seed=5), "a sks blob", "clip0"), clips[1]]
    for changed in (training_key(tiny_model, clips, [], "sks", quick_settings(lr=1e-3)),
                    training_key(tiny_model, clips, [], "sks", quick_settings(seed=1)),
                    training_key(tiny_model, other, [], "sks", quick_settings()),
                    training_key(tiny_model, [clips[0], MotionExample(clips[1].frames, "a sks ball", "c")], [], "sks",
                                 quick_settings()),
                    training_key(tiny_model, clips[:1], clips[1:], "sks", quick_settings())):
        assert changed != key
