"""Random-weight ZeroScope models: the full configuration (for speed/memory benchmarks, no
download needed) and a tiny one with the same block structure (for tests), saved as real
diffusers folders so the real loading code runs.

diffusers zero-initialises the last conv of every TemporalConvLayer (each temporal conv is then
an exact identity); these builders re-initialise them with small random values so the temporal
path is exercised. The tiny model's output conv is also scaled down (×0.1): the noise prediction of
a random network otherwise changes so fast with its input that DDIM inversion diverges, whereas a
trained denoiser's varies slowly (the round-trip tests need that property).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)

_UNET_BLOCKS = dict(
    down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
    up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
    layers_per_block=2, in_channels=4, out_channels=4,
)
_VAE_BLOCKS = dict(
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.18215,
)

CONFIGS = {
    # cerspense/zeroscope_v2_576w
    "full": dict(
        unet=dict(_UNET_BLOCKS, block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024,
                  attention_head_dim=64, norm_num_groups=32, sample_size=32),
        vae=dict(_VAE_BLOCKS, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                 norm_num_groups=32, sample_size=768),
        text=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                  projection_dim=1024, hidden_act="gelu", max_position_embeddings=77),
    ),
    "tiny": dict(
        unet=dict(_UNET_BLOCKS, block_out_channels=(16, 16, 32, 32), cross_attention_dim=32,
                  attention_head_dim=4, norm_num_groups=4, sample_size=8),
        vae=dict(_VAE_BLOCKS, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                 norm_num_groups=4, sample_size=64),
        text=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                  projection_dim=32, hidden_act="gelu", max_position_embeddings=77),
    ),
}


def _byte_chars() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def save_byte_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIPTokenizer made offline: the 256 byte characters, the same with `</w>`, the two special
    tokens and an empty merges file (every character is one token)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tok.save_pretrained(str(folder))
    return tok


def _randomize_temporal_convs(unet: torch.nn.Module, gen: torch.Generator, scale: float = 0.02) -> None:
    for name, module in unet.named_modules():
        if type(module).__name__ == "TemporalConvLayer":
            last = module.conv4[-1]
            last.weight.data.copy_(torch.randn(last.weight.shape, generator=gen) * scale)
            last.bias.data.copy_(torch.randn(last.bias.shape, generator=gen) * scale)


OUT_SCALE = {"full": 1.0, "tiny": 0.1}


def build_random_components(size: str = "tiny", seed: int = 0, vocab_size: int = 49408) -> dict:
    """UNet3DConditionModel, AutoencoderKL, CLIPTextModel and DDIMScheduler with random weights.

    Args:
        size: "full" (ZeroScope v2 576w's configuration) or "tiny" (same block types, tiny widths).
        seed: torch seed for the weights.
        vocab_size: text-encoder vocabulary (514 for the offline byte tokenizer).
    Returns:
        dict with keys unet, vae, text_encoder, scheduler (float32, CPU, eval mode).
    """
    cfg = CONFIGS[size]
    torch.manual_seed(seed)
    with torch.inference_mode(False):
        unet = UNet3DConditionModel(**cfg["unet"])
        gen = torch.Generator().manual_seed(seed + 1)
        _randomize_temporal_convs(unet, gen)
        unet.conv_out.weight.data.mul_(OUT_SCALE[size])
        unet.conv_out.bias.data.mul_(OUT_SCALE[size])
        vae = AutoencoderKL(**cfg["vae"])
        text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, bos_token_id=vocab_size - 2,
                                            eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
                                            **cfg["text"]))
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    return dict(unet=unet.eval(), vae=vae.eval(), text_encoder=text.eval(), scheduler=scheduler)


def save_random_model(folder: str | Path, size: str = "tiny", seed: int = 0, safe_serialization: bool = True) -> Path:
    """Build a random ZeroScope and save it as a diffusers folder (unet/, vae/, text_encoder/,
    tokenizer/, scheduler/, model_index.json). safe_serialization=False writes pickled .bin files."""
    folder = Path(folder)
    tok = save_byte_tokenizer(folder / "tokenizer")
    parts = build_random_components(size, seed, vocab_size=len(tok))
    for name in ("unet", "vae", "text_encoder"):
        parts[name].save_pretrained(str(folder / name), safe_serialization=safe_serialization)
    parts["scheduler"].save_pretrained(str(folder / "scheduler"))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "TextToVideoSDPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet3DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }, indent=2))
    return folder
