"""Motion customization on Wan 2.1 (tiny random Wan) through the same code as ZeroScope's
(dmt.models.interface): the flow-matching objective, LoRA/full on the transformer's attention,
motion files that name their model kind, apply/restore, text to video, and refusals across models."""

from __future__ import annotations

import copy

import pytest
import torch

import dmt
from dmt.customize import (GenerateSettings, TrainSettings, apply_motions, encode_examples, example_from_frames,
                           generate_video, load_motion, save_motion, train_motion)
from dmt.customize.trainable import trainable_modules
from dmt.models.grad_modes import evaluation
from dmt.models.interface import WanOps, model_ops

from cz_helpers import blob_clip, encoded

FRAMES, SIZE = 5, 32  # two latent frames of 2x2 patches


def wan_examples(wan, n: int = 2, caption: str = "a sks blob"):
    clips = [example_from_frames(blob_clip(num_frames=FRAMES, size=SIZE, dx=4, seed=i), caption, "sks",
                                 num_frames=FRAMES, height=SIZE, width=SIZE, source=f"clip{i}") for i in range(n)]
    return encode_examples(wan, clips)


def quick(**kw) -> TrainSettings:
    return TrainSettings(**{**dict(rank=2, steps=3, checkpoint_every=0, validation_every=0), **kw})


def snapshot(wan) -> dict:
    t = wan.transformer
    return {"w": {k: v.detach().clone() for k, v in t.state_dict().items()},
            "rg": [p.requires_grad for p in t.parameters()], "classes": [type(m).__name__ for m in t.modules()]}


def assert_restored(wan, before: dict) -> None:
    after = snapshot(wan)
    assert before["classes"] == after["classes"] and before["rg"] == after["rg"]
    assert before["w"].keys() == after["w"].keys()
    assert all(torch.equal(before["w"][k], after["w"][k]) for k in before["w"])


def test_the_flow_matching_objective():
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    model = type("M", (), {"scheduler": scheduler})()  # Wan's hub scheduler: flow shift 3
    x0, eps = torch.randn(2, 16, 2, 4, 4), torch.randn(2, 16, 2, 4, 4)
    times = torch.tensor([999, 0])
    x_t, t, target = WanOps().noisy(model, x0, eps, times)
    s0 = 3 * 0.001 / (1 + 2 * 0.001)
    assert torch.allclose(t, torch.tensor([1000.0, s0 * 1000]))
    assert torch.equal(x_t[0], eps[0])  # sigma 1: pure noise
    assert torch.allclose(x_t[1], (1 - s0) * x0[1] + s0 * eps[1])
    assert torch.equal(target, eps - x0)  # the velocity Wan predicts


def test_wan_trains_its_attention_and_is_left_as_loaded(wan):
    before = snapshot(wan)
    result = train_motion(wan, wan_examples(wan), "sks", quick())
    assert_restored(wan, before)
    motion = result.motion
    assert motion.base_kind == "wan" and motion.info["base_model_fingerprint"] == wan.fingerprint
    assert (motion.info["num_frames"], motion.info["height"], motion.info["width"]) == (FRAMES, SIZE, SIZE)
    layers = motion.info["trained_layers"]
    n = len(wan.transformer.blocks)
    assert layers == sorted([f"blocks.{i}.attn1" for i in range(n)] + [f"blocks.{i}.attn2.to_{p}" for i in range(n)
                                                                     for p in "kv"])
    assert all(len(r["t"]) == 1 and r["loss"] == r["loss"] for r in result.losses)  # finite
    roots = trainable_modules(wan.transformer)
    assert "blocks.0.attn1" in roots and "blocks.0.attn2.to_k" in roots and "blocks.0.attn2.to_q" not in roots
    full = train_motion(wan, wan_examples(wan), "sks", quick(mode="full", lr=1e-3)).motion
    assert "blocks.0.attn1.norm_q.weight" in full.param_shapes and "blocks.0.ffn.net.2.weight" not in full.param_shapes
    assert_restored(wan, before)


def test_training_lowers_the_wan_objective_on_the_clips(wan):
    """The learning check that can fail: the velocity MSE at fixed (σ, ε) on the training clips is
    lower with the trained motion applied than on the base model (30 full steps, lr 1e-2).
    Measured (CPU, 2026-12-05): base 1.656, trained 1.228; with lr 1e-7 (training switched off in
    effect) 1.656, which fails the assertion."""
    model = copy.deepcopy(wan)
    ex = wan_examples(model)
    ops = model_ops(model)

    def objective(motion=None) -> float:
        g = torch.Generator().manual_seed(7)
        total = []
        with apply_motions(model, motion), evaluation():
            for e in ex:
                for k in (300, 600, 900):
                    eps = torch.randn(e.latents.shape, generator=g)
                    x_t, t, target = ops.noisy(model, e.latents, eps, torch.tensor([k]))
                    total.append(float((ops.predict(model, x_t, t, e.text) - target).pow(2).mean()))
        return sum(total) / len(total)

    base = objective()
    motion = train_motion(model, ex, "sks", quick(mode="full", steps=30, lr=1e-2, timesteps="uniform")).motion
    trained = objective(motion)
    assert trained < 0.95 * base, (base, trained)


def test_a_wan_motion_file_round_trips_applies_and_generates(wan, tmp_path):
    motion = train_motion(wan, wan_examples(wan), "sks", quick(lr=5e-2)).motion
    path = save_motion(tmp_path / "wan.safetensors", motion, dtype="float32")
    loaded = load_motion(path)
    assert loaded.base_kind == "wan"
    settings = GenerateSettings(num_frames=FRAMES, height=SIZE, width=SIZE, steps=3, guidance_scale=5.0, seed=0)
    before = snapshot(wan)
    plain = generate_video(wan, "a sks blob", settings=settings)
    with_motion = generate_video(wan, "a sks blob", motions=[(loaded, 1.0)], settings=settings)
    again = generate_video(wan, "a sks blob", settings=settings)
    assert_restored(wan, before)
    assert plain.frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert not torch.equal(plain.frames, with_motion.frames) and torch.equal(plain.frames, again.frames)
    with pytest.raises(dmt.InputError, match="4k \\+ 1|5 or 9"):
        generate_video(wan, "a sks blob", settings=GenerateSettings(num_frames=6, height=SIZE, width=SIZE, steps=2))


def test_motions_are_refused_by_the_other_model(wan, tiny_model):
    wan_motion = train_motion(wan, wan_examples(wan), "sks", quick(steps=1)).motion
    zs_motion = train_motion(tiny_model, encoded(tiny_model), "sks", quick(steps=1)).motion
    assert zs_motion.base_kind == "zeroscope"
    with pytest.raises(dmt.MotionFileError, match="trained on Wan .* but the model is ZeroScope"):
        with apply_motions(tiny_model, wan_motion):
            pass
    with pytest.raises(dmt.MotionFileError, match="trained on ZeroScope .* but the model is Wan"):
        with apply_motions(wan, zs_motion):
            pass
    old = copy.copy(zs_motion)  # a file written before Wan existed has no kind: ZeroScope's
    old.info = {k: v for k, v in zs_motion.info.items() if k != "base_model_kind"}
    assert old.base_kind == "zeroscope"


def test_a_frame_count_wan_cannot_take_names_the_nearest(wan):
    clip = example_from_frames(blob_clip(num_frames=6, size=SIZE, dx=4), "a sks blob", "sks", num_frames=6,
                               height=SIZE, width=SIZE)
    with pytest.raises(dmt.InputError, match="5 or 9"):
        encode_examples(wan, [clip])
