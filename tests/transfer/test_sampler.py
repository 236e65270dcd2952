"""The guided sampler: guidance lowers the SMM loss, determinism, inference mode, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dmt
from dmt.transfer.features import spatial_marginal_mean, truncated_forward

from helpers import INV_STEPS, STEPS

FAST = dmt.GuidanceSettings(optimization_steps=3)


def _smm_loss_at(model, latent, t, text, targets):
    with torch.no_grad():
        feats = truncated_forward(model, latent, t, text, targets.feature_paths)
    smms = {p: spatial_marginal_mean(f, targets.num_frames)[0] for p, f in feats.items()}
    return dmt.total_loss(smms, targets.smms[t]).item()


def test_guided_sampling_ends_with_lower_smm_loss(tiny_model, inversion, targets):
    """Same start, same prompt: the latent entering the last guided step, then the final latent
    scored at the last guided timestep, have lower SMM loss with guidance than without."""
    init = dmt.low_frequency_init(inversion, seed=0)
    settings = dmt.GuidanceSettings(optimization_steps=5, lr_range=(0.05, 0.03), restart_sampling=False)
    guided = dmt.guided_sample(tiny_model, targets, init, "a fox", settings=settings, keep_intermediates=True)
    plain = dmt.guided_sample(tiny_model, targets, init, "a fox", keep_intermediates=True,
                              settings=dmt.GuidanceSettings(optimization_steps=0, restart_sampling=False))
    text = dmt.encode_prompt(tiny_model, dmt.AUTHORS_PROMPT_PREFIX + "a fox")
    ts = targets.schedule.timesteps
    last_guided = targets.schedule.guided[-1]
    entering = ts[ts.index(last_guided) - 1]  # latent after the previous step enters the last guided step
    l_guided = _smm_loss_at(tiny_model, guided.intermediates[entering], last_guided, text, targets)
    l_plain = _smm_loss_at(tiny_model, plain.intermediates[entering], last_guided, text, targets)
    final_g = _smm_loss_at(tiny_model, guided.latents, last_guided, text, targets)
    final_p = _smm_loss_at(tiny_model, plain.latents, last_guided, text, targets)
    print(f"SMM loss entering t={last_guided}: guided {l_guided:.4f} vs unguided {l_plain:.4f}; "
          f"final latent: guided {final_g:.4f} vs unguided {final_p:.4f}")
    assert l_guided < l_plain
    assert final_g < final_p
    for t, losses in guided.losses.items():  # Adam lowers the loss within each guided step
        assert losses[-1] < losses[0], (t, losses)


def test_same_seed_bit_identical_other_seed_differs(tiny_model, inversion, targets):
    def run(seed):
        init = dmt.low_frequency_init(inversion, seed=seed)
        return dmt.guided_sample(tiny_model, targets, init, "a fox", settings=FAST, seed=seed).latents

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_restart_noise_from_generator(tiny_model, inversion, targets):
    init = dmt.low_frequency_init(inversion, seed=0)
    s = dmt.GuidanceSettings(optimization_steps=0)
    a = dmt.guided_sample(tiny_model, targets, init, "x", settings=s, generator=torch.Generator().manual_seed(4))
    b = dmt.guided_sample(tiny_model, targets, init, "x", settings=s, seed=4)
    c = dmt.guided_sample(tiny_model, targets, init, "x", settings=s, seed=5)
    assert torch.equal(a.latents, b.latents) and not torch.allclose(a.latents, c.latents)


def test_whole_pipeline_inside_inference_mode(tiny_model_dir, clip):
    with torch.inference_mode():
        model = dmt.load_zeroscope(tiny_model_dir, "float32")
        frames = dmt.prepare_frames(clip, 64, 64)
        result = dmt.transfer(model, frames, "a square", "a circle", num_steps=STEPS,
                              num_inversion_steps=INV_STEPS, settings=FAST)
    assert result.frames.shape == clip.shape and torch.isfinite(result.frames).all()
    assert set(result.sample.losses) == set(result.targets.schedule.guided)


def test_lr_schedule_and_constant_lr():
    s = dmt.GuidanceSettings()
    lrs = s.learning_rates(20)
    assert lrs[0] == pytest.approx(0.007) and lrs[-1] == pytest.approx(0.004) and len(lrs) == 20
    assert dmt.GuidanceSettings(lr_decay=False).learning_rates(3) == [0.01] * 3


def test_schedule_matches_the_authors():
    from dmt.models.random_model import SCHEDULER_CONFIG
    from diffusers import DDIMScheduler

    s = dmt.make_schedule(DDIMScheduler(**SCHEDULER_CONFIG))
    assert s.timesteps[:3] == (981, 961, 941) and s.timesteps[-1] == 1 and len(s.timesteps) == 50
    assert s.guided == tuple(range(981, 600, -20))
    half = dmt.make_schedule(DDIMScheduler(**SCHEDULER_CONFIG), 50, (0.2, 0.8))
    assert half.timesteps[0] == 781 and half.guided[-1] == 201


@pytest.mark.parametrize("kwargs, match", [
    (dict(settings=dmt.GuidanceSettings(optimization_steps=-1)), "optimisation steps is -1: it must be a whole number from 0"),
    (dict(settings=dmt.GuidanceSettings(loss="huber")), "loss form is .huber.: it must be one of cosine, l2"),
    (dict(target_prompt="  "), "target prompt is empty"),
])
def test_sampler_errors(tiny_model, inversion, targets, kwargs, match):
    init = dmt.low_frequency_init(inversion, seed=0)
    args = dict(target_prompt="a fox") | kwargs
    with pytest.raises(dmt.InputError, match=match):
        dmt.guided_sample(tiny_model, targets, init, **args)


def test_window_and_frame_mismatch_errors(tiny_model, inversion, targets):
    with pytest.raises(dmt.InputError, match=r"\[0, 1\]"):
        dmt.extract_targets(tiny_model, inversion, guidance_window=(0.6, 1.2))
    with pytest.raises(dmt.InputError, match="min must not exceed max"):
        dmt.extract_targets(tiny_model, inversion, guidance_window=(0.8, 0.6))
    wrong = torch.zeros(1, 4, targets.num_frames + 1, 8, 8)
    with pytest.raises(dmt.InputError, match="frames"):
        dmt.guided_sample(tiny_model, targets, wrong, "a fox")


def test_out_of_memory_is_explained_and_model_restored(tiny_model, inversion, targets, monkeypatch):
    from helpers import assert_same_state, model_state
    from dmt.transfer import features

    before = model_state(tiny_model)

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(features, "autocast_for", oom)
    init = dmt.low_frequency_init(inversion, seed=0)
    with pytest.raises(dmt.DMTOutOfMemoryError, match="fewer frames"):
        dmt.guided_sample(tiny_model, targets, init, "a fox", settings=FAST)
    monkeypatch.undo()
    assert_same_state(before, model_state(tiny_model))


def test_targets_from_another_model_are_refused(tiny_model, inversion, targets):
    import dataclasses
    init = dmt.low_frequency_init(inversion, seed=0)
    other = dataclasses.replace(targets, model_fingerprint="0000")
    with pytest.raises(dmt.InversionMismatchError, match="different model"):
        dmt.guided_sample(tiny_model, other, init, "a fox")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_runs_with_targets_from_float32(tiny_model_dir, inversion, targets, dtype):
    """Autocast path (and GradScaler for fp16); an fp32 inversion fits the same weights in fp16."""
    from helpers import assert_same_state, model_state

    model = dmt.load_zeroscope(tiny_model_dir, dtype)
    assert dmt.models.zeroscope.same_model(model.fingerprint, targets.model_fingerprint)
    before = model_state(model)
    init = dmt.low_frequency_init(inversion, seed=0)
    out = dmt.guided_sample(model, targets, init, "a fox", settings=dmt.GuidanceSettings(optimization_steps=2))
    assert torch.isfinite(out.latents).all() and out.latents.dtype == torch.float32
    assert all(np.isfinite(v) for losses in out.losses.values() for v in losses)
    assert_same_state(before, model_state(model))


def test_other_weights_have_another_fingerprint(tmp_path, tiny_model):
    from dmt.models.random_model import save_random_model

    other = dmt.load_zeroscope(str(save_random_model(tmp_path / "other", seed=1)), "float32")
    assert not dmt.models.zeroscope.same_model(other.fingerprint, tiny_model.fingerprint)
