"""Toy-world training: a miniature run end to end (diffusers folder that load_zeroscope loads),
resume, and the refusals (non-empty folder, another configuration, nothing to resume, Ctrl-C)."""

from __future__ import annotations

import json

import pytest
import torch

import dmt.toyworld.train as train_mod
from dmt import load_zeroscope
from dmt.cli import main
from dmt.errors import InputError
from dmt.toyworld.card import model_defaults, read_card
from dmt.toyworld.train import ToyConfig, train_toy_model

MINI = ToyConfig(vae_channels=(8, 8, 8, 8), vae_steps=2, vae_batch=2, num_clips=4, unet_channels=(8, 8, 16, 16),
                 text_width=16, unet_steps=3, batch=2, checkpoint_every=2, warmup=2,
                 decoder_steps=2, wander_clips=2)


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    train_toy_model(out, MINI)
    return out


def test_writes_a_loadable_toy_model(mini_run):
    model = load_zeroscope(mini_run, "float32", "cpu")
    assert type(model.unet).__name__ == "UNet3DConditionModel"
    assert [type(b).__name__ for b in model.unet.down_blocks] == ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"]
    card = read_card(mini_run)
    assert card["training"]["unet_steps"] == 3 and len(card["training"]["loss_curve_per_100_steps"]) == 1
    assert model_defaults(mini_run)["width"] == 64
    assert model.vae.config.scaling_factor != 1.0  # set to 1/std of the latents


def test_refuses_a_non_empty_folder_without_resume(mini_run):
    before = {p: p.stat().st_mtime_ns for p in mini_run.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="not empty.*--resume"):
        train_toy_model(mini_run, MINI)
    assert before == {p: p.stat().st_mtime_ns for p in mini_run.rglob("*") if p.is_file()}


def test_refuses_to_resume_another_configuration(mini_run):
    with pytest.raises(InputError, match="another configuration"):
        train_toy_model(mini_run, ToyConfig(vae_steps=3), resume=True)


def test_resume_with_nothing_to_resume(tmp_path):
    (tmp_path / "x.txt").write_text("not a training")
    with pytest.raises(InputError, match="nothing to\\s+resume"):
        train_toy_model(tmp_path, MINI, resume=True)


def test_ctrl_c_leaves_a_resumable_state_and_resume_finishes(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train_mod._caption

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2 * MINI.batch + 1:  # during the third step
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "_caption", interrupting)
    out = tmp_path / "run"
    with pytest.raises(InputError, match="stopped at step 2 .*--resume"):
        train_toy_model(out, MINI)
    assert (out / ".train" / "state.safetensors").is_file() and not (out / "unet").exists()
    monkeypatch.setattr(train_mod, "_caption", real)
    train_toy_model(out, MINI, resume=True)
    log = json.loads((out / ".train" / "log.json").read_text())
    assert [e["step"] for e in log if e["stage"] == "unet"] == [1, 2, 3]


def test_cli_eval_refuses_a_model_that_is_not_a_toy_model(tmp_path, capsys):
    assert main(["toyworld", "eval", "--model", str(tmp_path)]) == 2
    assert "is not a toy-world model" in capsys.readouterr().err


def test_cli_train_refuses_non_empty_folder(mini_run, capsys):
    assert main(["toyworld", "train", "--out", str(mini_run)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_the_training_device_and_its_refusals(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train_mod.training_device(None) == torch.device("cpu") == train_mod.training_device("cpu")
    with pytest.raises(InputError, match="no CUDA device on this machine.*--device cpu"):
        train_mod.training_device("cuda")
    with pytest.raises(InputError, match="Unknown device 'gpu'"):
        train_mod.training_device("gpu")
    with pytest.raises(InputError, match="cpu or cuda"):
        train_mod.training_device("meta")


@pytest.mark.parametrize("kind", ["zeroscope", "wan"])
def test_cli_train_on_a_gpu_this_machine_lacks_writes_nothing(kind, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["toyworld", "train", "--kind", kind, "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_card_records_the_training_device(mini_run):
    assert read_card(mini_run)["training"]["device"] == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (on one: pytest tests/toyworld -k cuda)")
def test_a_miniature_run_on_cuda_writes_a_model_the_cpu_loads(tmp_path):
    out = train_toy_model(tmp_path / "gpu", MINI, device="cuda")
    card = read_card(out)
    assert card["training"]["device"] == "cuda" and card["training"]["unet_steps"] == 3
    assert all(torch.isfinite(torch.tensor(card["training"]["loss_curve_per_100_steps"])))
    model = load_zeroscope(out, "float32", "cpu")
    assert model.unet.device.type == "cpu"


def test_cli_train_refuses_a_negative_wander_count(tmp_path, capsys):
    assert main(["toyworld", "train", "--out", str(tmp_path / "run"), "--wander-clips", "-1"]) == 2
    assert "--wander-clips must be" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_recipe_options_scale_the_latents_and_the_token_embeddings(tmp_path):
    """latent_scale sets the VAE's scaling factor to scale/std; token_init_std draws the text
    encoder's token embeddings at that std; high_noise_share and v-prediction train (the run
    completes) and the scheduler records the prediction type."""
    import dataclasses

    import torch

    from dmt.toyworld.train import build_text_encoder

    plain = dataclasses.replace(MINI, unet_steps=1, decoder_steps=0, latent_scale=1.0, token_init_std=0.02,
                                prediction_type="epsilon")
    base = train_toy_model(tmp_path / "a", plain)
    cfg = dataclasses.replace(MINI, unet_steps=1, decoder_steps=0, latent_scale=0.25, token_init_std=1.0,
                              high_noise_share=0.5, prediction_type="v_prediction")
    scaled = train_toy_model(tmp_path / "b", cfg)
    sf = [json.loads((run / "vae" / "config.json").read_text())["scaling_factor"] for run in (base, scaled)]
    assert sf[1] == pytest.approx(0.25 * sf[0], rel=1e-6)
    # v-prediction is written to the scheduler config (the library converts at the UNet call)
    pred = [json.loads((run / "scheduler" / "scheduler_config.json").read_text())["prediction_type"]
            for run in (base, scaled)]
    assert pred == ["epsilon", "v_prediction"]
    torch.manual_seed(0)
    std = build_text_encoder(cfg, 600).get_input_embeddings().weight.std().item()
    assert 0.9 < std < 1.1
    assert build_text_encoder(plain, 600).get_input_embeddings().weight.std().item() < 0.05


def test_wander_clips_are_encoded_and_captioned_by_their_subject_only(mini_run):
    """The run encodes `wander_clips` random-walk clips next to the vocabulary clips; their training
    captions never name a motion (reversed or not), and a run without them keeps its old key."""
    import dataclasses

    import torch
    from safetensors import safe_open

    with safe_open(str(mini_run / ".train" / "wander.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
        assert f.get_tensor("latents").shape[0] == MINI.wander_clips == len(meta)
    assert all(m[2:] == ["", ""] for m in meta)
    gen = torch.Generator().manual_seed(0)
    cfg = dataclasses.replace(MINI, caption_dropout=0.0)
    captions = {train_mod._caption("red", "ball", "", "", rev, gen, cfg) for rev in (False, True) * 20}
    assert captions == {"a red ball", "amazing quality, masterpiece, a red ball"}
    assert train_mod._caption("red", "ball", "left", "slowly", True, gen,
                              dataclasses.replace(cfg, motion_word_dropout=0.0)).endswith("moving right slowly")
    # the bundled recipe (no wander clips) keeps the key of its run; wander clips change it
    assert ToyConfig().key() == "fb04912b75340812" != ToyConfig(wander_clips=1024).key()


@pytest.mark.parametrize("option", ["trail", "clock"])
def test_trail_or_clock_run_encodes_re_rendered_reversals(tmp_path, option):
    """With a trail (or a clock) the time-reversed training clips are re-rendered (the tail points
    the other way, the clock still runs forwards), stored next to the forward latents; the model's
    card says how its world is drawn."""
    import dataclasses

    from safetensors.torch import load_file

    from dmt.toyworld.card import world_options

    cfg = dataclasses.replace(MINI, wander_clips=0, **{option: True})
    out = train_toy_model(tmp_path / option, cfg)
    lat = load_file(str(out / ".train" / "latents.safetensors"))
    assert lat["reversed"].shape == lat["latents"].shape
    assert not torch.allclose(lat["reversed"], lat["latents"].flip(2), atol=1e-3)
    assert world_options(out) == {"trail": False, "clock": False} | {option: True}
    assert world_options(tmp_path) == {"trail": False, "clock": False}  # not a toy model: the plain world
    assert cfg.key() != dataclasses.replace(cfg, **{option: False}).key()


def test_words_diagnosis_on_the_bundled_model(capsys):
    """`toyworld words`: the bundled model uses the colour word (swapping it raises the x0 error
    clearly); the figures for speed and direction are printed (the model card reports them)."""
    assert main(["toyworld", "words", "--clips", "3"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: float(line.split()[-1]) for line in out.splitlines()[1:]}
    assert set(lines) == {"colour", "speed", "direction"}, out
    assert lines["colour"] > 0.05, out


def test_words_refuses_bad_arguments(capsys):
    assert main(["toyworld", "words", "--timestep", "1000"]) != 0
    assert "--timestep" in capsys.readouterr().err
