"""Loading Wan 2.1 folders, the tiny random Wan, the frame/size rules and `random-model`: the real
diffusers/transformers loading code on a tiny random model written offline."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import dmt
from dmt.cli import main
from dmt.models.folders import identify_folder
from dmt.models.random_wan import WAN_CONFIGS, _umt5_config, _umt5_tensors, _write_sharded, save_random_wan
from dmt.models.wan import check_wan_frames, check_wan_size, wan_frame_counts, wan_missing_files
from dmt.models.zeroscope import same_model


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _embed(model: dmt.Wan, prompt: str, length: int = 16) -> torch.Tensor:
    ids = model.tokenizer([prompt], padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return model.text_encoder(ids.input_ids, ids.attention_mask).last_hidden_state


# --- the folder and loading -------------------------------------------------------------------

def test_random_folder_has_the_hub_layout(wan_dir):
    index = json.loads((wan_dir / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    for sub in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (wan_dir / sub).is_dir()
    assert wan_missing_files(wan_dir) == []
    assert identify_folder(wan_dir).kind == "wan" and identify_folder(wan_dir).supported


def test_loads_components_with_dtype_and_device(wan_dir, wan):
    assert wan.kind == "wan" and dmt.ZeroScope.kind == "zeroscope"
    assert type(wan.transformer).__name__ == "WanTransformer3DModel"
    assert type(wan.vae).__name__ == "AutoencoderKLWan"
    assert type(wan.text_encoder).__name__ == "UMT5EncoderModel"
    assert type(wan.scheduler).__name__ == "UniPCMultistepScheduler"
    assert wan.scheduler.config.prediction_type == "flow_prediction" and wan.scheduler.config.use_flow_sigmas
    assert wan.scheduler.config.flow_shift == 3.0
    assert wan.dtype == torch.float32 and wan.device == torch.device("cpu") and wan.patch_size == (1, 2, 2)
    assert wan.name == str(wan_dir) and not wan.transformer.training

    half = dmt.load_wan(str(wan_dir), "bfloat16", "cpu", vae_dtype="float32")
    assert half.dtype == torch.bfloat16 and half.text_encoder.dtype == torch.bfloat16
    assert half.vae.dtype == torch.float32
    assert dmt.load_wan(wan_dir, "bf16").vae.dtype == torch.bfloat16  # the VAE follows dtype by default


def test_fingerprint_is_stable_across_loads_and_dtypes_and_changes_with_weights(wan_dir, wan, tmp_path):
    again = dmt.load_wan(wan_dir, "float32")
    assert wan.fingerprint and again.fingerprint == wan.fingerprint
    assert same_model(dmt.load_wan(wan_dir, "bfloat16").fingerprint, wan.fingerprint)
    other = dmt.load_wan(save_random_wan(tmp_path / "seed1", "tiny", seed=1), "float32")
    assert other.fingerprint != wan.fingerprint and not same_model(other.fingerprint, wan.fingerprint)


def test_loading_inside_inference_mode_gives_trainable_weights(wan_dir):
    with torch.inference_mode():
        m = dmt.load_wan(wan_dir, "float32")
    assert not any(p.is_inference() for p in m.transformer.parameters())


def test_tokenizer_is_t5_like(wan):
    ids = wan.tokenizer(["a dog é"], padding="max_length", max_length=12, return_tensors="pt")
    row, mask = ids.input_ids[0].tolist(), ids.attention_mask[0].tolist()
    n = sum(mask)
    assert row[n - 1] == 1 and row[n:] == [0] * (12 - n)  # </s> then <pad>
    assert 2 in row[:n]  # é is not in the vocabulary: <unk>
    assert wan.tokenizer.pad_token_id == 0 and wan.tokenizer.eos_token_id == 1


def test_transformer_forward_on_a_latent_of_the_right_shape(wan):
    shape = wan.latent_shape(9, 32, 48)
    assert shape == (1, 16, 3, 4, 6)  # (B, 16, (F - 1)/4 + 1, H/8, W/8)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    dog, cat = _embed(wan, "a dog"), _embed(wan, "a cat")
    assert dog.shape == (1, 16, WAN_CONFIGS["tiny"]["transformer"]["text_dim"])
    with torch.no_grad():
        v = wan.transformer(x, torch.tensor([500.0]), dog, return_dict=False)[0]
        v_cat = wan.transformer(x, torch.tensor([500.0]), cat, return_dict=False)[0]
        v_t = wan.transformer(x, torch.tensor([100.0]), dog, return_dict=False)[0]
    assert v.shape == x.shape and torch.isfinite(v).all()
    assert not torch.allclose(v, v_cat) and not torch.allclose(v, v_t)  # text and time both matter


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_vae_encode_decode_shapes_for_4k_plus_1_frames(wan, frames):
    video = torch.rand(1, 3, frames, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latent = wan.vae.encode(video).latent_dist.mode()
        assert latent.shape == wan.latent_shape(frames, 32, 48)
        assert wan.vae.decode(latent).sample.shape == video.shape


def test_sharded_text_encoder_loads_and_missing_shards_are_listed(wan_dir, wan, tmp_path):
    folder = _copy(wan_dir, tmp_path / "sharded")
    te = folder / "text_encoder"
    (te / "model.safetensors").unlink()
    config = _umt5_config(WAN_CONFIGS["tiny"]["text"], len(wan.tokenizer), torch.float32)
    shards = _write_sharded(_umt5_tensors(config, torch.float32, seed=2), te, shard_bytes=20_000)
    assert len(shards) > 2 and (te / "model.safetensors.index.json").is_file()
    loaded = dmt.load_wan(folder, "float32")
    for (name, a), b in zip(wan.text_encoder.state_dict().items(), loaded.text_encoder.state_dict().values()):
        assert torch.equal(a, b), name  # the same seed writes the same weights, sharded or not
    shards[1].unlink()
    with pytest.raises(dmt.ModelLoadError, match="incomplete") as exc:
        dmt.load_wan(folder, "float32")
    assert f"text_encoder/{shards[1].name}" in str(exc.value)


# --- bad folders ------------------------------------------------------------------------------

def test_missing_folder_message(tmp_path):
    with pytest.raises(dmt.ModelLoadError, match="does not exist") as exc:
        dmt.load_wan(str(tmp_path / "nope"))
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in str(exc.value)


def test_incomplete_folder_lists_what_is_missing(wan_dir, tmp_path):
    broken = _copy(wan_dir, tmp_path / "broken")
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(dmt.ModelLoadError) as exc:
        dmt.load_wan(str(broken))
    msg = str(exc.value)
    assert "transformer/diffusion_pytorch_model.safetensors" in msg and "tokenizer/tokenizer_config.json" in msg
    assert "tokenizer/tokenizer.json (or spiece.model)" in msg and "vae/config.json" not in msg
    assert str(broken) in msg and "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in msg


def test_unreachable_hub_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(dmt.ModelLoadError, match="Could not download") as exc:
        dmt.load_wan("someone/not-a-cached-repo", download_to=tmp_path / "dl")
    assert str(tmp_path / "dl") in str(exc.value) and "transformer/" in str(exc.value)


@pytest.mark.parametrize("make_i2v", ["image_encoder", "image_dim", "in_channels"])
def test_image_to_video_folder_is_named(wan_dir, tmp_path, make_i2v):
    folder = _copy(wan_dir, tmp_path / "i2v")
    if make_i2v == "image_encoder":
        (folder / "image_encoder").mkdir()
        _edit_json(folder / "model_index.json", _class_name="WanImageToVideoPipeline")
    elif make_i2v == "image_dim":
        _edit_json(folder / "transformer" / "config.json", image_dim=1280)
    else:
        _edit_json(folder / "transformer" / "config.json", in_channels=36)
    with pytest.raises(dmt.ModelLoadError, match="image-to-video") as exc:
        dmt.load_wan(folder)
    assert "Wan2.1-T2V-1.3B" in str(exc.value) and str(folder) in str(exc.value)


def test_14b_folder_is_named(wan_dir, tmp_path):
    folder = _copy(wan_dir, tmp_path / "14b")
    _edit_json(folder / "transformer" / "config.json", num_layers=40, num_attention_heads=40,
               attention_head_dim=128, ffn_dim=13824)
    with pytest.raises(dmt.ModelLoadError, match="Wan2.1-T2V-14B") as exc:
        dmt.load_wan(folder)
    assert "40 layers of width 5120" in str(exc.value) and "Wan2.1-T2V-1.3B" in str(exc.value)


@pytest.mark.parametrize("change, words", [
    ("transformer_2", "Wan2.2 A14B"), ("ti2v", "Wan2.2 TI2V-5B"), ("vace", "VACE"), ("other", "CogVideoXPipeline")])
def test_other_variants_and_pipelines_are_named(wan_dir, tmp_path, change, words):
    folder = _copy(wan_dir, tmp_path / change)
    if change == "transformer_2":
        shutil.copytree(folder / "transformer", folder / "transformer_2")
    elif change == "ti2v":
        _edit_json(folder / "transformer" / "config.json", in_channels=48, out_channels=48)
    elif change == "vace":
        _edit_json(folder / "model_index.json", _class_name="WanVACEPipeline")
    else:
        _edit_json(folder / "model_index.json", _class_name="CogVideoXPipeline")
        _edit_json(folder / "transformer" / "config.json", _class_name="CogVideoXTransformer3DModel")
        _edit_json(folder / "vae" / "config.json", _class_name="AutoencoderKLCogVideoX")
    with pytest.raises(dmt.ModelLoadError, match=words):
        dmt.load_wan(folder)


def test_zeroscope_folder_given_to_load_wan_and_wan_folder_given_to_load_zeroscope(tiny_model_dir, wan_dir):
    with pytest.raises(dmt.ModelLoadError, match="holds ZeroScope") as exc:
        dmt.load_wan(tiny_model_dir)
    assert "load_zeroscope" in str(exc.value) and "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in str(exc.value)
    with pytest.raises(dmt.ModelLoadError, match="not ZeroScope") as exc:
        dmt.load_zeroscope(str(wan_dir))
    assert "load_wan" in str(exc.value) and "cerspense/zeroscope_v2_576w" in str(exc.value)


def test_scheduler_that_is_not_flow_matching_is_refused(wan_dir, tmp_path):
    folder = _copy(wan_dir, tmp_path / "ddim")
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000}))
    with pytest.raises(dmt.ModelLoadError, match="flow-matching") as exc:
        dmt.load_wan(folder)
    assert "DDIMScheduler" in str(exc.value)


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_malicious_pickled_transformer_is_refused(wan_dir, tmp_path, capsys):
    folder = _copy(wan_dir, tmp_path / "evil")
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with open(folder / "transformer" / "diffusion_pytorch_model.bin", "wb") as f:
        pickle.dump({"patch_embedding.weight": _Evil()}, f)
    with pytest.raises(dmt.ModelLoadError):
        dmt.load_wan(folder, "float32")
    assert "arbitrary code ran" not in capsys.readouterr().out


# --- frame counts and sizes -------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5, 33, 81])
def test_valid_frame_counts_pass(n):
    assert check_wan_frames(n) == n and wan_frame_counts(n) == (n, n)


@pytest.mark.parametrize("n, lower, upper", [(32, 29, 33), (24, 21, 25), (2, 1, 5), (80, 77, 81)])
def test_other_frame_counts_name_the_nearest_valid_ones(n, lower, upper):
    assert wan_frame_counts(n) == (lower, upper)
    with pytest.raises(dmt.InputError, match="4k \\+ 1") as exc:
        check_wan_frames(n)
    assert f"Use {lower} or {upper} frames" in str(exc.value) and f"{n} frames" in str(exc.value)


@pytest.mark.parametrize("bad, words", [(0, "at least 1"), (-3, "at least 1"), (8.0, "whole number")])
def test_nonsense_frame_counts(bad, words):
    with pytest.raises(dmt.InputError, match=words):
        check_wan_frames(bad)


def test_sizes():
    assert check_wan_size(832, 480) == (832, 480) and check_wan_size(64, 48, (1, 2, 2)) == (64, 48)
    with pytest.raises(dmt.InputError, match="multiples of 16") as exc:
        check_wan_size(500, 300)
    assert "500x300 is not" in str(exc.value) and "496x304, 496x288, 512x304" in str(exc.value)
    with pytest.raises(dmt.InputError, match="16x16"):
        check_wan_size(10, 10)
    with pytest.raises(dmt.InputError, match="multiples of 8"):
        check_wan_size(100, 64, patch=1)
    with pytest.raises(dmt.InputError, match="positive whole number"):
        check_wan_size(0, 64)


def test_latent_shape_checks_its_inputs(wan):
    with pytest.raises(dmt.InputError, match="Use 13 or 17 frames"):
        wan.latent_shape(16, 32, 32)
    with pytest.raises(dmt.InputError, match="32x32, 48x32"):
        wan.latent_shape(17, 32, 40)


# --- the full configuration (meta device: no memory, no weights) ------------------------------

def test_full_configuration_is_wan_1_3b():
    from diffusers import WanTransformer3DModel
    from transformers import UMT5EncoderModel

    cfg = WAN_CONFIGS["full"]
    with torch.device("meta"):
        transformer = WanTransformer3DModel(**cfg["transformer"])
        text = UMT5EncoderModel(_umt5_config(cfg["text"], 98, torch.bfloat16))
    params = sum(p.numel() for p in transformer.parameters())
    assert 1.40e9 < params < 1.43e9  # "1.3B": 1.419 G
    assert 5.6e9 < sum(p.numel() for p in text.parameters()) < 5.8e9  # UMT5-XXL's encoder
    assert cfg["text"]["d_model"] == cfg["transformer"]["text_dim"]  # the text embeddings' width


# --- the random-model command -----------------------------------------------------------------

def test_cli_writes_a_tiny_wan_that_loads(tmp_path, capsys):
    out = tmp_path / "wan"
    assert main(["random-model", "--kind", "wan", "--size", "tiny", "--out", str(out), "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert dmt.load_wan(out, "float32").kind == "wan"
    assert not list(tmp_path.glob(".*partial*"))


def test_cli_writes_a_tiny_zeroscope_into_an_empty_folder(tmp_path):
    out = tmp_path / "zs"
    out.mkdir()
    assert main(["random-model", "--kind", "zeroscope", "--out", str(out)]) == 0
    assert dmt.load_zeroscope(str(out), "float32").kind == "zeroscope"


def test_cli_refuses_a_non_empty_folder_and_bad_options(tmp_path, capsys):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["random-model", "--kind", "wan", "--out", str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    assert main(["random-model", "--kind", "wan", "--small-text-encoder", "--out", str(tmp_path / "x")]) == 2
    assert "--size full only" in capsys.readouterr().err
    assert main(["random-model", "--kind", "wan", "--out", str(out / "keep.txt")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_cli_leaves_nothing_behind_when_writing_fails(tmp_path, monkeypatch):
    import dmt.models.random_wan as random_wan

    def boom(folder, *a, **k):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(random_wan, "save_random_wan", boom)
    assert main(["random-model", "--kind", "wan", "--out", str(tmp_path / "w")]) == 130
    assert list(tmp_path.iterdir()) == []
