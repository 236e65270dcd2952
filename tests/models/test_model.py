"""Loading ZeroScope folders: the real diffusers loading code on a tiny random model."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch

import dmt
from dmt.models.random_model import save_random_model


def test_loads_components_with_dtype(tiny_model_dir):
    m = dmt.load_zeroscope(tiny_model_dir, "bfloat16", "cpu")
    assert type(m.unet).__name__ == "UNet3DConditionModel"
    assert [type(b).__name__ for b in m.unet.up_blocks] == ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3
    assert m.dtype == torch.bfloat16 and m.vae.dtype == torch.bfloat16 and m.text_encoder.dtype == torch.bfloat16
    assert m.scheduler.config.steps_offset == 1 and not m.scheduler.config.set_alpha_to_one
    assert m.fingerprint


def test_loading_inside_inference_mode_gives_trainable_weights(tiny_model_dir):
    with torch.inference_mode():
        m = dmt.load_zeroscope(tiny_model_dir, "float32", "cpu")
    assert not any(p.is_inference() for p in m.unet.parameters())


def test_missing_folder_message(tmp_path):
    with pytest.raises(dmt.ModelLoadError, match="does not exist"):
        dmt.load_zeroscope(str(tmp_path / "nope"), "float32")


def test_incomplete_folder_lists_what_is_missing(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(dmt.ModelLoadError) as exc:
        dmt.load_zeroscope(str(broken), "float32")
    msg = str(exc.value)
    assert "unet/diffusion_pytorch_model.safetensors" in msg and "tokenizer/vocab.json" in msg
    assert str(broken) in msg and "zeroscope_v2_576w" in msg


def test_unreachable_hub_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(dmt.ModelLoadError, match="Could not download") as exc:
        dmt.load_zeroscope("someone/not-a-cached-repo", "float32", download_to=tmp_path / "dl")
    assert str(tmp_path / "dl") in str(exc.value)


def test_pickled_weights_load_with_weights_only(tmp_path):
    folder = save_random_model(tmp_path / "bin", safe_serialization=False)
    assert (folder / "unet" / "diffusion_pytorch_model.bin").exists()
    m = dmt.load_zeroscope(str(folder), "float32")
    assert m.unet.conv_in.weight.shape[1] == 4


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_malicious_pickle_is_refused(tmp_path, capsys):
    folder = save_random_model(tmp_path / "evil", safe_serialization=False)
    with open(folder / "unet" / "diffusion_pytorch_model.bin", "wb") as f:
        pickle.dump({"conv_in.weight": _Evil()}, f)
    with pytest.raises(dmt.ModelLoadError):
        dmt.load_zeroscope(str(folder), "float32")
    assert "arbitrary code ran" not in capsys.readouterr().out
