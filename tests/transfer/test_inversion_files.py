"""Inversion files keep only what later stages read, and load to bit-identical results."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

import dmt
from dmt.transfer.inversion_files import saved_timesteps

from helpers import INV_STEPS, STEPS

FEW = dmt.GuidanceSettings(optimization_steps=2, restart_sampling=False)


@pytest.fixture(scope="module")
def inversion_all(tiny_model, inversion) -> dmt.Inversion:
    """The old behaviour: a latent at every sampling timestep (from the same x0)."""
    return dmt.invert_latents(tiny_model, inversion.x0, inversion.source_prompt, INV_STEPS, STEPS, keep_all=True)


def _keys(path) -> set[str]:
    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def _tensor_bytes(path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())


def _run(model, inversion, targets, seed=1):
    init = dmt.low_frequency_init(inversion, seed, start_timestep=targets.schedule.timesteps[0])
    return init, dmt.guided_sample(model, targets, init, "a fox", settings=FEW, seed=seed).latents


def test_kept_latents_do_not_depend_on_what_is_kept(tiny_model, inversion, inversion_all):
    sampling = set(dmt.make_schedule(tiny_model.scheduler, STEPS).timesteps)
    assert set(inversion_all.latents) == sampling | {inversion_all.noisiest_t}
    assert set(inversion.latents) < set(inversion_all.latents)
    for t, lat in inversion.latents.items():
        assert torch.equal(lat, inversion_all.latents[t]), t
    assert torch.equal(inversion.x0, inversion_all.x0)


def test_saved_file_loads_to_bit_identical_results(tiny_model, inversion, targets, tmp_path):
    path = dmt.save_inversion(tmp_path / "inv.safetensors", inversion, targets)
    loaded, loaded_targets = dmt.load_inversion(path, model_fingerprint=tiny_model.fingerprint,
                                                num_inversion_steps=INV_STEPS, num_sampling_steps=STEPS)
    assert set(loaded.latents) == set(targets.schedule.guided) | {inversion.noisiest_t}
    # targets from the file, and targets extracted again from the file's latents, equal the in-graph ones
    again = dmt.extract_targets(tiny_model, loaded)
    for t in targets.schedule.guided:
        for p in targets.feature_paths:
            assert torch.equal(loaded_targets.smms[t][p], targets.smms[t][p])
            assert torch.equal(again.smms[t][p], targets.smms[t][p])
    init_a, out_a = _run(tiny_model, inversion, targets)
    init_b, out_b = _run(tiny_model, loaded, loaded_targets)
    assert torch.equal(init_a, init_b) and torch.equal(out_a, out_b)
    assert [p.name for p in tmp_path.iterdir()] == ["inv.safetensors"]  # no temporary file left


def test_file_is_smaller_than_one_with_every_latent(tiny_model, inversion, inversion_all, targets, tmp_path):
    new = dmt.save_inversion(tmp_path / "new.safetensors", inversion)  # without targets: all it holds
    old = dmt.save_inversion(tmp_path / "old.safetensors", inversion_all)  # the former file content
    latent_bytes = inversion.x0.numel() * 4
    n_new, n_old = len(inversion.latents) + 1, len(inversion_all.latents) + 1  # + x0
    assert _tensor_bytes(new) == n_new * latent_bytes and _tensor_bytes(old) == n_old * latent_bytes
    assert n_new == len(targets.schedule.guided) + 2 and n_new < n_old
    size_new, size_old = new.stat().st_size, old.stat().st_size
    print(f"inversion file: {size_new} B ({n_new} latents) vs {size_old} B ({n_old} latents) before")
    assert size_new < size_old
    # the header is small: the size is the latents
    assert size_new - n_new * latent_bytes < 4096
    # keep_all inversion saved with its targets, or with the authors' window: the same small file
    with_targets = dmt.save_inversion(tmp_path / "t.safetensors", inversion_all, targets)
    window = dmt.save_inversion(tmp_path / "w.safetensors", inversion_all, guidance_window=(0.6, 1.0))
    assert {k for k in _keys(with_targets) if not k.startswith("target.")} == _keys(window) == _keys(new)


def test_file_with_every_latent_still_loads_identically(tiny_model, inversion_all, targets, tmp_path):
    path = dmt.save_inversion(tmp_path / "old.safetensors", inversion_all)
    loaded, none = dmt.load_inversion(path, model_fingerprint=tiny_model.fingerprint)
    assert none is None and set(loaded.latents) == set(inversion_all.latents)
    again = dmt.extract_targets(tiny_model, loaded)
    assert all(torch.equal(again.smms[t][p], targets.smms[t][p]) for t in targets.smms for p in targets.feature_paths)
    # a wider window than the authors' works from such a file
    wide = dmt.extract_targets(tiny_model, loaded, guidance_window=(0.3, 1.0))
    assert len(wide.schedule.guided) > len(targets.schedule.guided)


def test_window_beyond_the_kept_latents_is_refused_clearly(tiny_model, inversion, tmp_path):
    with pytest.raises(dmt.InversionMismatchError, match=r"guidance window \(0\.3, 1\.0\).*keep_all"):
        dmt.extract_targets(tiny_model, inversion, guidance_window=(0.3, 1.0))
    # a narrower window (a subset of the kept latents) is fine
    assert dmt.extract_targets(tiny_model, inversion, guidance_window=(0.7, 1.0)).schedule.guided == (901, 801, 701)
    path = dmt.save_inversion(tmp_path / "inv.safetensors", inversion)
    loaded, _ = dmt.load_inversion(path)
    with pytest.raises(dmt.InversionMismatchError, match="901 … 601"):
        dmt.extract_targets(tiny_model, loaded, guidance_window=(0.3, 1.0))


def test_inversion_window_is_checked_before_the_work(tiny_model, clip):
    with pytest.raises(dmt.InputError, match="min must not exceed max"):
        dmt.invert_video(tiny_model, clip, "a square", INV_STEPS, STEPS, guidance_window=(0.9, 0.5))


def test_saved_timesteps_rules(inversion_all, targets):
    assert saved_timesteps(inversion_all) == sorted(inversion_all.latents, reverse=True)
    assert saved_timesteps(inversion_all, targets) == [981, 901, 801, 701, 601]
    assert saved_timesteps(inversion_all, guidance_window=(0.8, 1.0)) == [981, 901, 801]
