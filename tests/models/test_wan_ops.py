"""dmt.models.wan_ops on the tiny random Wan: VAE encode/decode with the latent normalisation, prompt
encoding bit-equal to WanPipeline's own, and the velocity prediction."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanPipeline

import dmt
from dmt.models.wan_ops import decode_latents, encode_prompt, encode_video, predict_velocity


def _clip(frames: int = 5, height: int = 32, width: int = 48) -> torch.Tensor:
    return torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(0))


def _stats(model: dmt.Wan) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model.vae.config
    return torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1), torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)


# --- VAE ----------------------------------------------------------------------------------------

def test_encode_video_is_the_normalised_posterior_mean(wan):
    frames = _clip(9)
    latent = encode_video(wan, frames)
    assert latent.shape == (1, 16, 3, 4, 6) and latent.dtype == torch.float32
    video = frames.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1
    with torch.no_grad():
        dist = wan.vae.encode(video).latent_dist
    mean, std = _stats(wan)
    torch.testing.assert_close(latent, (dist.mode() - mean) / std, rtol=1e-5, atol=1e-5)
    assert torch.equal(encode_video(wan, frames), latent)  # deterministic: no sampling
    assert not latent.requires_grad


def test_decode_latents_inverts_the_normalisation_and_returns_frames(wan):
    latent = torch.randn(1, 16, 2, 4, 6, generator=torch.Generator().manual_seed(1))
    frames = decode_latents(wan, latent)
    assert frames.shape == (5, 32, 48, 3) and frames.dtype == torch.float32 and frames.device.type == "cpu"
    assert 0 <= frames.min() and frames.max() <= 1
    mean, std = _stats(wan)
    with torch.no_grad():
        video = wan.vae.decode(latent * std + mean).sample
    expected = (video[0].permute(1, 2, 3, 0) / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(frames, expected, rtol=1e-5, atol=1e-5)


def test_encode_then_decode_gives_the_clip_layout(wan):
    frames = _clip(5, 16, 32)
    out = decode_latents(wan, encode_video(wan, frames))
    assert out.shape == frames.shape and torch.isfinite(out).all()


def test_vae_in_bfloat16_gives_float32_latents_and_frames(wan_dir):
    half = dmt.load_wan(wan_dir, "bfloat16", "cpu")
    latent = encode_video(half, _clip())
    assert latent.dtype == torch.float32 and decode_latents(half, latent).dtype == torch.float32


@pytest.mark.parametrize("frames, words", [
    (torch.rand(8, 32, 48, 3), "Use 5 or 9 frames"),
    (torch.rand(5, 40, 48, 3), "multiples of 16"),
    (torch.rand(5, 32, 48), "shape \\(F, H, W, 3\\)"),
    (torch.full((5, 32, 48, 3), float("nan")), "NaN"),
    (torch.zeros(5, 32, 48, 3, dtype=torch.uint8), "divide 8-bit pixels by 255"),
])
def test_encode_video_refuses_bad_clips_with_what_to_do(wan, frames, words):
    with pytest.raises(dmt.InputError, match=words):
        encode_video(wan, frames)


def test_decode_latents_refuses_other_shapes(wan):
    with pytest.raises(dmt.InputError, match="one video at a time"):
        decode_latents(wan, torch.zeros(2, 16, 2, 4, 6))
    with pytest.raises(dmt.InputError, match="\\(1, 16, F', h, w\\)"):
        decode_latents(wan, torch.zeros(1, 4, 2, 4, 6))


# --- text ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt, length", [
    ("a dog runs on the beach", 512), (["a cat &amp; a  dog", "x"], 64), ("a very long prompt " * 10, 16)])
def test_encode_prompt_is_bit_equal_to_wan_pipeline(wan, prompt, length):
    pipe = WanPipeline(tokenizer=wan.tokenizer, text_encoder=wan.text_encoder, vae=wan.vae,
                       scheduler=wan.scheduler, transformer=wan.transformer)
    with torch.no_grad():
        expected = pipe._get_t5_prompt_embeds(prompt, max_sequence_length=length, device=torch.device("cpu"))
    ours = encode_prompt(wan, prompt, max_sequence_length=length)
    assert ours.dtype == expected.dtype and torch.equal(ours, expected)


def test_encode_prompt_zeroes_the_padding_and_defaults_to_512_tokens(wan):
    text = encode_prompt(wan, "a dog")
    real = len(wan.tokenizer("a dog").input_ids)
    assert text.shape == (1, 512, 32)
    assert text[0, real:].abs().sum() == 0 and text[0, :real].abs().sum(-1).min() > 0


def test_encode_prompt_refuses_non_strings(wan):
    with pytest.raises(dmt.InputError, match="string"):
        encode_prompt(wan, 3)
    with pytest.raises(dmt.InputError, match="512"):
        encode_prompt(wan, "a", max_sequence_length=0)


# --- velocity -----------------------------------------------------------------------------------

def test_predict_velocity_is_the_transformer_output_in_float32(wan):
    x = torch.randn(2, 16, 2, 4, 6, generator=torch.Generator().manual_seed(2))
    text = encode_prompt(wan, "a dog", max_sequence_length=16)
    v = predict_velocity(wan, x, 500.0, text)
    assert v.shape == x.shape and v.dtype == torch.float32
    with torch.no_grad():
        expected = wan.transformer(x, torch.tensor([500.0, 500.0]), text.expand(2, -1, -1), return_dict=False)[0]
    torch.testing.assert_close(v, expected.float(), rtol=0, atol=0)
    assert not torch.allclose(predict_velocity(wan, x, 100.0, text), v)


def test_predict_velocity_passes_gradients_and_runs_in_bfloat16(wan, wan_dir):
    x = torch.randn(1, 16, 2, 4, 6, requires_grad=True)
    text = encode_prompt(wan, "a dog", max_sequence_length=16)
    (grad,) = torch.autograd.grad(predict_velocity(wan, x, 250.0, text).square().mean(), x)
    assert grad.abs().sum() > 0
    half = dmt.load_wan(wan_dir, "bfloat16", "cpu")
    v = predict_velocity(half, x.detach(), 250.0, encode_prompt(half, "a dog", max_sequence_length=16))
    assert v.dtype == torch.float32 and torch.isfinite(v).all()


def test_predict_velocity_refuses_mismatched_text(wan):
    with pytest.raises(dmt.InputError, match="\\(2, L, D\\)"):
        predict_velocity(wan, torch.zeros(2, 16, 2, 4, 6), 10.0, torch.zeros(3, 16, 32))
