"""Toy-world Wan training: a miniature run end to end (a Wan folder that load_wan loads and the
library runs), its tokenizer, the caption embedding against the library's, resume and the refusals."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import dmt.toyworld.train as train_mod
from dmt.cli import main
from dmt.errors import InputError
from dmt.models.wan import load_wan
from dmt.toyworld.card import BUNDLED_WAN_MODEL, WAN_MODEL_KIND, read_card
from dmt.toyworld.train_wan import WanToyConfig, embed_captions, train_toy_wan

MINI = WanToyConfig(vae_base=4, vae_mult=(1, 1, 1, 1), vae_steps=2, vae_batch=1, num_clips=3, heads=2, head_dim=12,
                    layers=1, ffn=16, text_width=16, text_layers=1, steps=3, batch=2, checkpoint_every=2, warmup=2,
                    decoder_steps=2)


@pytest.fixture(scope="module")
def mini_wan(tmp_path_factory):
    out = tmp_path_factory.mktemp("toywan") / "run"
    train_toy_wan(out, MINI)
    return out


def test_writes_a_wan_folder_that_the_library_runs(mini_wan):
    from dmt.toyworld import evaluate as ev

    model = load_wan(mini_wan, "float32", "cpu")
    assert type(model.transformer).__name__ == "WanTransformer3DModel"
    assert type(model.vae).__name__ == "AutoencoderKLWan"
    card = read_card(mini_wan)
    assert card["kind"] == WAN_MODEL_KIND and card["training"]["transformer_steps"] == 3
    assert ev.frames_of(model) == 9 and ev.is_wan(model)
    # the latents are normalised per channel from the training clips
    assert model.vae.config.latents_std != [1.0] * 16
    g1 = ev.gate_base(model, samples=1, steps=2)
    assert g1.figures["samples"] == 1
    kw = ev.toy_transfer_kwargs("smm", guidance=False, model=model)
    assert kw["amf"].guidance == "smm" and kw["amf"].iterations == 0 and kw["downsample_factor"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (on one: pytest tests/toyworld -k cuda)")
def test_a_miniature_wan_run_on_cuda_writes_a_model_the_cpu_loads(tmp_path):
    out = train_toy_wan(tmp_path / "gpu", MINI, device="cuda")
    card = read_card(out)
    assert card["training"]["device"] == "cuda" and card["training"]["transformer_steps"] == 3
    assert all(torch.isfinite(torch.tensor(card["training"]["loss_curve_per_100_steps"])))
    assert load_wan(out, "float32", "cpu").transformer.device.type == "cpu"


def test_tokenizer_gives_one_token_per_toy_word(mini_wan):
    from transformers import AutoTokenizer

    from dmt.toyworld.tokenizer import WORDS

    tok = AutoTokenizer.from_pretrained(str(mini_wan / "tokenizer"))
    ids = tok("a red ball moving left quickly").input_ids
    assert len(ids) == 7 and ids[-1] == tok.eos_token_id == 1 and tok.pad_token_id == 0
    assert tok.convert_ids_to_tokens(tok("a dog").input_ids)[-2] == "<unk>"
    assert all(len(tok(w, add_special_tokens=False).input_ids) == 1 for w in WORDS)


def test_training_embeds_captions_as_the_library_encodes_prompts(mini_wan):
    """The caption embedding of training (run on the batch's longest caption) equals the library's
    Wan prompt encoding (padded to 512 tokens with the mask, zero after the last token)."""
    from dmt.models.wan_ops import encode_prompt

    model = load_wan(mini_wan, "float32", "cpu")
    captions = ["a red ball moving left quickly", "a blue square"]
    with torch.no_grad():
        ours = embed_captions(model.text_encoder, model.tokenizer, captions, 512)
    lib = encode_prompt(model, captions)
    assert ours.shape == lib.shape == (2, 512, MINI.text_width)
    torch.testing.assert_close(ours, lib, atol=1e-5, rtol=1e-5)


def test_refusals_and_ctrl_c_resume(mini_wan, tmp_path, monkeypatch):
    with pytest.raises(InputError, match="not empty.*--resume"):
        train_toy_wan(mini_wan, MINI)
    with pytest.raises(InputError, match="another configuration"):
        train_toy_wan(mini_wan, dataclasses.replace(MINI, layers=2), resume=True)
    with pytest.raises(InputError, match="4k \\+ 1 frames"):
        train_toy_wan(tmp_path / "eight", dataclasses.replace(MINI, num_frames=8))
    calls = {"n": 0}
    real = train_mod._caption

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2 * MINI.batch + 1:  # during the third step
            raise KeyboardInterrupt
        return real(*a, **k)

    import dmt.toyworld.train_wan as wan_mod

    monkeypatch.setattr(wan_mod, "_caption", interrupting)
    out = tmp_path / "run"
    with pytest.raises(InputError, match="stopped at step 2 .*--resume"):
        train_toy_wan(out, MINI)
    assert (out / ".train" / "state.safetensors").is_file() and not (out / "transformer").exists()
    monkeypatch.setattr(wan_mod, "_caption", real)
    train_toy_wan(out, MINI, resume=True)
    log = json.loads((out / ".train" / "log.json").read_text())
    assert [e["step"] for e in log if e["stage"] == "transformer"] == [1, 2, 3]


@pytest.mark.parametrize("flag", ["--trail", "--clock"])
def test_cli_refuses_zeroscope_options_with_kind_wan(tmp_path, capsys, flag):
    assert main(["toyworld", "train", "--kind", "wan", "--out", str(tmp_path / "run"), flag]) == 2
    assert f"{flag} applies to the toy ZeroScope only" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_vae_clips_mix_wander_motions_at_the_configured_share(monkeypatch):
    """With `vae_wander` the VAE (and the decoder refinement) see that share of wander clips (none in
    the bundled recipe); without, vocabulary clips only, drawn as before the option."""
    import numpy as np

    from dmt.toyworld import train_wan

    calls = []
    real = train_wan.random_wander_clip
    monkeypatch.setattr(train_wan, "random_wander_clip", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = train_wan._clips(MINI, np.random.default_rng(0), 40, wander=0.5)
    assert x.shape == (40, 3, MINI.num_frames, MINI.size, MINI.size) and -1 <= x.min() and x.max() <= 1
    assert 10 <= len(calls) <= 30, len(calls)
    calls.clear()
    train_wan._clips(MINI, np.random.default_rng(0), 40)
    assert not calls


def test_the_recipe_is_the_bundled_toy_wans():
    """`toyworld train --kind wan` with its defaults is the committed toy Wan's recipe: every
    setting of the run recorded in its card is the recipe's (the card gives the two commands that
    made it: --steps 16000, then --resume to the recipe's 32 000)."""
    recipe = json.loads(json.dumps(dataclasses.asdict(WanToyConfig())))  # tuples as lists, as in the card
    assert read_card(BUNDLED_WAN_MODEL)["config"] == recipe


def test_first_frame_weight_weights_the_first_frames_error_in_vae_and_decoder_training(monkeypatch, tmp_path):
    """`vae_first_frame_weight` w: the first frame's squared error counts w times each later frame's
    (a weighted mean, so an MSE's scale); w = 1 is F.mse_loss bit for bit and keeps the key of runs
    from before the option; the decoder refinement minimises the same loss."""
    import torch.nn.functional as F

    from dmt.toyworld import train_wan

    x = torch.zeros(2, 3, 9, 8, 8)
    recon = x.clone()
    recon[:, :, 0] = 1.0  # all the error in the first frame: mean per frame 1, 0, ..., 0
    assert train_wan.reconstruction_loss(recon, x, 8.0).item() == pytest.approx(8 / 16)
    assert train_wan.reconstruction_loss(recon, x).item() == pytest.approx(1 / 9)
    r = torch.randn(2, 3, 9, 8, 8)
    assert torch.equal(train_wan.reconstruction_loss(r, x), F.mse_loss(r, x))
    # the key of the recipe as it was before the option (runs made then still resume)
    before = dataclasses.replace(WanToyConfig(), vae_first_frame_weight=1.0, vae_steps=1200, vae_lr=2e-3)
    assert before.key() == "af6638487a787bc9"
    assert WanToyConfig(vae_first_frame_weight=8.0).key() != WanToyConfig(vae_first_frame_weight=1.0).key()

    seen = []
    real = train_wan.reconstruction_loss
    monkeypatch.setattr(train_wan, "reconstruction_loss",
                        lambda recon, x, w=1.0: seen.append(w) or real(recon, x, w))
    cfg = dataclasses.replace(MINI, vae_first_frame_weight=4.0)
    train_toy_wan(tmp_path / "run", cfg)
    n_vae = sum(1 for w in seen[:cfg.vae_steps] if w == 4.0)
    assert n_vae == cfg.vae_steps and len(seen) == cfg.vae_steps + cfg.decoder_steps and set(seen) == {4.0}


def test_cli_first_frame_weight(tmp_path, capsys, monkeypatch):
    """--first-frame-weight reaches the toy Wan's recipe; it is refused out of range and for the
    toy ZeroScope, before anything is written."""
    from dmt.toyworld import train_wan

    got = []
    monkeypatch.setattr(train_wan, "train_toy_wan", lambda out, cfg, **kw: got.append(cfg) or out)
    assert main(["toyworld", "train", "--kind", "wan", "--out", str(tmp_path / "a"), "--first-frame-weight", "8"]) == 0
    assert got[0] == dataclasses.replace(WanToyConfig(), vae_first_frame_weight=8.0) != WanToyConfig()
    assert main(["toyworld", "train", "--kind", "wan", "--out", str(tmp_path / "b"), "--first-frame-weight", "0"]) == 2
    assert "--first-frame-weight must be in (0, 100]" in capsys.readouterr().err
    assert main(["toyworld", "train", "--out", str(tmp_path / "c"), "--first-frame-weight", "8"]) == 2
    assert "applies to the toy Wan only" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abc")


def test_cli_vae_schedule(tmp_path, capsys, monkeypatch):
    """--vae-steps and --vae-lr reach the toy Wan's recipe (so a run with another VAE schedule,
    such as the cards' "tried" ones, is one command); out of range or for the toy ZeroScope they
    are refused before anything is written."""
    from dmt.toyworld import train_wan

    got = []
    monkeypatch.setattr(train_wan, "train_toy_wan", lambda out, cfg, **kw: got.append(cfg) or out)
    assert main(["toyworld", "train", "--kind", "wan", "--out", str(tmp_path / "a"), "--vae-steps", "1200",
                 "--vae-lr", "2e-3", "--steps", "16000"]) == 0
    assert got[0] == dataclasses.replace(WanToyConfig(), vae_steps=1200, vae_lr=2e-3, steps=16000)
    assert main(["toyworld", "train", "--kind", "wan", "--out", str(tmp_path / "b"), "--vae-steps", "0"]) == 2
    assert "--vae-steps must be a whole number from 1" in capsys.readouterr().err
    assert main(["toyworld", "train", "--kind", "wan", "--out", str(tmp_path / "b"), "--vae-lr", "-1"]) == 2
    assert "--vae-lr must be in (0, 1]" in capsys.readouterr().err
    assert main(["toyworld", "train", "--out", str(tmp_path / "c"), "--vae-steps", "10", "--vae-lr", "0.1"]) == 2
    assert "--vae-steps, --vae-lr apply to the toy Wan only" in capsys.readouterr().err
    assert len(got) == 1 and not any((tmp_path / n).exists() for n in "bc")


def test_cli_clip_length_and_vae_wander(tmp_path, capsys, monkeypatch):
    """--frames (either kind) and --vae-wander (Wan) reach the recipes, so a toy Wan on longer clips
    (what G3 and G4 need of it, its card) is one command; a length Wan's VAE cannot take is refused
    with the nearest valid ones, and nothing is written by a refused command."""
    from dmt.toyworld import train_wan

    got = []
    monkeypatch.setattr(train_wan, "train_toy_wan", lambda out, cfg, **kw: got.append(cfg) or out)
    monkeypatch.setattr(train_mod, "train_toy_model", lambda out, cfg, **kw: got.append(cfg) or out)
    assert main(["toyworld", "train", "--kind", "wan", "--out", str(tmp_path / "a"), "--frames", "33",
                 "--vae-wander", "0.25"]) == 0
    assert got[0] == dataclasses.replace(WanToyConfig(), num_frames=33, vae_wander=0.25)
    assert got[0].key() != WanToyConfig().key()
    assert main(["toyworld", "train", "--out", str(tmp_path / "a2"), "--frames", "16"]) == 0
    assert got[1] == dataclasses.replace(train_mod.ToyConfig(), num_frames=16)
    assert main(["toyworld", "train", "--kind", "wan", "--out", str(tmp_path / "b"), "--frames", "16"]) == 2
    assert "--frames must be 4k + 1 from 5 to 81 for the toy Wan (Wan's VAE); got 16. Nearest: 13, 17, 21." in \
        capsys.readouterr().err
    assert main(["toyworld", "train", "--kind", "wan", "--out", str(tmp_path / "b"), "--vae-wander", "1.5"]) == 2
    assert "--vae-wander must be in [0, 1]" in capsys.readouterr().err
    assert main(["toyworld", "train", "--out", str(tmp_path / "c"), "--vae-wander", "0.5"]) == 2
    assert "--vae-wander applies to the toy Wan only" in capsys.readouterr().err
    assert main(["toyworld", "train", "--out", str(tmp_path / "c"), "--frames", "1"]) == 2
    assert "--frames must be a whole number from 2 to 64" in capsys.readouterr().err
    assert len(got) == 2 and not any((tmp_path / n).exists() for n in "bc")


def test_a_run_on_longer_clips_makes_them_the_models_default(tmp_path):
    """The card's defaults follow the clips the model was trained on, so the CLI, the nodes and the
    gates draw clips of the length it knows."""
    from dmt.toyworld import evaluate as ev

    out = train_toy_wan(tmp_path / "m", dataclasses.replace(MINI, num_frames=5))
    model = load_wan(out, "float32", "cpu")
    assert read_card(out)["defaults"]["num_frames"] == 5 and ev.frames_of(model) == 5
