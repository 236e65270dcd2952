"""Motion files (round trip, refusals, atomic writes) and applying motions (bit-exact restore)."""

from __future__ import annotations

import pytest
import torch

import dmt
from dmt.customize import MotionFileError, apply_motions, load_motion, save_motion, touched_parameters
from dmt.customize import motion_file
from dmt.customize.trainable import ADAPTER_NAME, trainable
from dmt.errors import InputError
from dmt.models.random_model import build_random_components

from cz_helpers import assert_same, encoded, quick_train, state_hash


@pytest.fixture(scope="module")
def motions(tiny_model):
    examples = encoded(tiny_model, n=1)
    return {mode: quick_train(tiny_model, examples, mode=mode, steps=2, lr=1e-2).motion for mode in ("lora", "full")}


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_round_trip(tmp_path, motions, tiny_model, mode):
    m = motions[mode]
    path = save_motion(tmp_path / "m.safetensors", m)
    back = load_motion(path)
    assert back.mode == mode and back.token == "sks" and back.rank == m.rank
    assert back.tensors.keys() == m.tensors.keys()
    assert all(back.tensors[k].dtype == torch.float16 and torch.equal(back.tensors[k], m.tensors[k].half())
               for k in m.tensors)
    exact = load_motion(save_motion(tmp_path / "m32.safetensors", m, dtype="float32"))
    assert all(torch.equal(exact.tensors[k], m.tensors[k]) for k in m.tensors)
    for key in ("steps", "lr", "timesteps", "num_frames", "height", "width", "trained_layers",
                "base_model_fingerprint", "dmt_version"):
        assert key in back.info, key
    assert back.info["dmt_version"] == dmt.__version__ and back.same_base(tiny_model.fingerprint)
    assert set(back.parameter_names()) <= set(dict(tiny_model.unet.named_parameters()))
    # only trained tensors: nothing frozen is stored
    assert all(".lora_" in k for k in back.tensors) if mode == "lora" else set(back.tensors) == set(back.param_shapes)


def test_lora_delta_equals_peft_forward(tiny_model, motions):
    """Applying the LoRA delta to the weights gives the adapter's forward (peft) output."""
    m = motions["lora"]
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    text = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), apply_motions(tiny_model, m):
        merged = tiny_model.unet(x, 500, encoder_hidden_states=text).sample
    with torch.no_grad(), trainable(tiny_model.unet, "lora", rank=m.rank, alpha=m.alpha) as ts:
        ts.load_state_tensors(m.tensors)
        adapted = tiny_model.unet(x, 500, encoder_hidden_states=text).sample
        plain = None
    with torch.no_grad():
        plain = tiny_model.unet(x, 500, encoder_hidden_states=text).sample
    assert not torch.allclose(merged, plain, atol=1e-5)  # the motion changes the output
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-5)
    assert ADAPTER_NAME


def test_apply_restores_bit_exactly_also_on_exception(tiny_model, motions):
    before = state_hash(tiny_model)
    pairs = [(motions["lora"], 1.5), (motions["full"], 0.5)]
    names = touched_parameters(pairs)
    with apply_motions(tiny_model, pairs) as patched:
        assert set(patched) == set(names)
        params = dict(tiny_model.unet.named_parameters())
        changed = [n for n in names if not torch.equal(params[n], before[f"unet.{n}"][0])]
        assert len(changed) > len(names) // 2
    assert_same(before, state_hash(tiny_model))
    with pytest.raises(RuntimeError, match="boom"):
        with apply_motions(tiny_model, pairs):
            raise RuntimeError("boom")
    assert_same(before, state_hash(tiny_model))


def test_two_motions_add_with_their_strengths(tiny_model, motions):
    name = touched_parameters(motions["full"])[0]
    base = dict(tiny_model.unet.named_parameters())[name].detach().clone()
    with apply_motions(tiny_model, [(motions["full"], 2.0), (motions["full"], 0.5)]):
        got = dict(tiny_model.unet.named_parameters())[name].detach().clone()
    torch.testing.assert_close(got, base + 2.5 * motions["full"].delta(name))


@pytest.mark.parametrize("strength", [-0.1, 2.5, float("nan"), "strong"])
def test_strength_out_of_range(tiny_model, motions, strength):
    before = state_hash(tiny_model)
    with pytest.raises(InputError, match="strength"):
        with apply_motions(tiny_model, [(motions["lora"], strength)]):
            pass
    assert_same(before, state_hash(tiny_model))


def test_not_ours_truncated_missing(tmp_path, motions):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(MotionFileError, match="not a DMT motion"):
        load_motion(other)
    text = tmp_path / "text.safetensors"
    text.write_text("hello")
    with pytest.raises(MotionFileError, match="not a readable motion file"):
        load_motion(text)
    good = save_motion(tmp_path / "m.safetensors", motions["lora"])
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 10):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(MotionFileError, match="truncated|damaged|not a readable"):
            load_motion(bad)
    with pytest.raises(MotionFileError, match="not found"):
        load_motion(tmp_path / "nope.safetensors")


def test_wrong_model_refused(motions, tiny_model):
    parts = build_random_components("tiny")
    other = parts["unet"]
    # a differently shaped model: wider first block
    from diffusers import UNet3DConditionModel

    cfg = dict(other.config)
    cfg["block_out_channels"] = (8, 16, 32, 32)
    wide = UNet3DConditionModel(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    for mode in ("lora", "full"):
        with pytest.raises(MotionFileError, match="differently shaped model"):
            with apply_motions(wide, motions[mode]):
                pass


def test_cancel_during_save_keeps_the_old_file(tmp_path, motions, monkeypatch):
    path = save_motion(tmp_path / "m.safetensors", motions["lora"])
    old = path.read_bytes()

    def partial_then_cancel(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(motion_file, "save_file", partial_then_cancel)
    with pytest.raises(KeyboardInterrupt):
        save_motion(path, motions["full"])

    def disk_full(tensors, filename, metadata=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(motion_file, "save_file", disk_full)
    with pytest.raises(OSError):
        save_motion(path, motions["full"])
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind
