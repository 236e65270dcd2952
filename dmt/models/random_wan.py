"""Random-weight Wan 2.1 text-to-video models, saved as real diffusers folders (no download).

Two sizes, the same classes as `Wan-AI/Wan2.1-T2V-1.3B-Diffusers` (WanTransformer3DModel,
AutoencoderKLWan, UMT5EncoderModel, a T5 tokenizer, UniPCMultistepScheduler with flow sigmas):

- "tiny": diffusers' own test configuration (patch (1, 2, 2), 2 heads of 12, 2 layers, text width
  32, a VAE of base width 3) and a 2-layer UMT5 of width 32; the folder is 0.3 MB and every call
  takes milliseconds. For tests.
- "full": Wan2.1-T2V-1.3B's configuration (1.42 G transformer parameters in float32, the 127 M
  VAE in float32, the 5.7 G UMT5-XXL encoder in bfloat16 as 2 GB shards). For speed and memory
  benchmarks at the real size and for a user's install check; the weights are random, so the
  videos are noise. Writing it holds at most the transformer (5.7 GB) in memory: the text
  encoder is built on the meta device and materialised one block at a time. Measured on a busy
  2-core machine: 17.5 GB in 17 files, 4.7 min (disk-bound), peak RSS 6.5 GB; `load_wan` of it
  in bfloat16 peaks at 9.5 GB, and one UMT5-XXL prompt encoding on the CPU at 18 GB.
  `text_encoder="small"` swaps the UMT5-XXL for a one-layer UMT5 of the same output width 4096
  (80 M parameters): the transformer sees embeddings of the right shape and the folder shrinks to
  6.3 GB (1.4 min to write), but the text encoder's own cost is not the real one.

The tokenizer is built offline: a T5-style Unigram model whose pieces are the printable ASCII
characters (pad 0, eos 1, unk 2, as T5's), so every prompt tokenizes, one piece per character.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel

#: Wan2.1's scheduler: UniPC on flow-matching sigmas, shift 3.0 (the 480p setting).
WAN_SCHEDULER_CONFIG = dict(num_train_timesteps=1000, prediction_type="flow_prediction",
                            use_flow_sigmas=True, flow_shift=3.0)

_TRANSFORMER = dict(patch_size=(1, 2, 2), in_channels=16, out_channels=16, freq_dim=256,
                    cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
_UMT5 = dict(feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, relative_attention_max_distance=128,
             pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, initializer_factor=1.0)

WAN_CONFIGS = {
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers; text encoder: google/umt5-xxl's encoder
    "full": dict(
        transformer=dict(_TRANSFORMER, num_attention_heads=12, attention_head_dim=128, text_dim=4096,
                         ffn_dim=8960, num_layers=30, rope_max_seq_len=1024),
        vae=dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True], dropout=0.0),
        text=dict(_UMT5, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                  relative_attention_num_buckets=32, vocab_size=256384),
        text_dtype=torch.bfloat16,
    ),
    # diffusers' tests/pipelines/wan configuration
    "tiny": dict(
        transformer=dict(_TRANSFORMER, num_attention_heads=2, attention_head_dim=12, text_dim=32,
                         ffn_dim=32, num_layers=2, rope_max_seq_len=32),
        vae=dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, attn_scales=[],
                 temperal_downsample=[False, True, True], dropout=0.0),
        text=dict(_UMT5, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                  relative_attention_num_buckets=8, vocab_size=None),  # None: the tokenizer's size
        text_dtype=torch.float32,
    ),
}
#: `text_encoder="small"` at full size: UMT5-XXL's output width (4096) in one cheap layer.
SMALL_TEXT = dict(_UMT5, d_model=4096, d_kv=64, d_ff=1024, num_layers=1, num_heads=64,
                  relative_attention_num_buckets=32, vocab_size=None)
#: the hub repo's model_index.json (Wan-AI/Wan2.1-T2V-1.3B-Diffusers)
WAN_MODEL_INDEX = {
    "_class_name": "WanPipeline", "_diffusers_version": "0.33.0.dev0",
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "text_encoder": ["transformers", "UMT5EncoderModel"],
    "tokenizer": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLWan"],
}
SIZES = tuple(WAN_CONFIGS)
SHARD_BYTES = 2 * 1024**3  # text-encoder shard size: bounds the memory needed to write it


def save_t5_tokenizer(folder: str | Path, model_max_length: int = 512):
    """A T5 tokenizer built offline and saved to `folder` (tokenizer.json, tokenizer_config.json).

    Unigram pieces: "<pad>" 0, "</s>" 1, "<unk>" 2, "▁" (word start) 3, then the 94 printable
    non-space ASCII characters; each prompt ends with "</s>" like T5's. Returns the loaded tokenizer.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import AutoTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = [c for c in string.printable if c not in string.whitespace]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(c, -3.0) for c in chars]
    tok = Tokenizer(Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)])
    tok.add_special_tokens([piece for piece, _ in vocab[:3]])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
        "extra_ids": 0, "additional_special_tokens": [], "model_max_length": model_max_length,
    }, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2))
    return AutoTokenizer.from_pretrained(str(folder))


def _umt5_config(text: dict, vocab_size: int, dtype: torch.dtype) -> UMT5Config:
    cfg = dict(text)
    cfg["vocab_size"] = cfg["vocab_size"] or vocab_size
    config = UMT5Config(**cfg)
    config.architectures = ["UMT5EncoderModel"]
    config.dtype = dtype
    return config


def _init_post_order(model: torch.nn.Module, module: torch.nn.Module) -> None:
    """transformers' own initialisation of `module`'s tree, children before parents (as its
    `initialize_weights` does: a parent's rule, e.g. UMT5Attention's, overrides its children's)."""
    for child in module.children():
        _init_post_order(model, child)
    model._init_weights(module)


def _umt5_tensors(config: UMT5Config, dtype: torch.dtype, seed: int) -> Iterator[tuple[str, torch.Tensor]]:
    """The state dict of a random UMT5EncoderModel, one part at a time: the model is built on the
    meta device and each part (the embedding, each block, the final norm) is materialised, given
    transformers' initialisation (UMT5's Mesh-TensorFlow scales) in `dtype`, yielded and dropped.
    The tied `encoder.embed_tokens.weight` is left out (as save_pretrained does)."""
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    model.to(dtype)
    gen = torch.Generator().manual_seed(seed)
    parts = [("shared", model.shared)] + [(f"encoder.block.{i}", b) for i, b in enumerate(model.encoder.block)]
    parts.append(("encoder.final_layer_norm", model.encoder.final_layer_norm))
    expected = set(model.state_dict()) - {"encoder.embed_tokens.weight"}
    written: set[str] = set()
    for prefix, part in parts:
        part.to_empty(device="cpu")
        with torch.no_grad():
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
            if part is model.shared:  # UMT5's rule for the shared embedding (set on the top-level model)
                part.weight.normal_(0.0, config.initializer_factor)
            else:
                _init_post_order(model, part)
        for name, tensor in part.state_dict(prefix=prefix + ".").items():
            written.add(name)
            yield name, tensor
        part.to("meta")
    if written != expected:  # a transformers change of the module layout: fail loudly, not silently
        raise RuntimeError(f"UMT5 parts written {sorted(written ^ expected)} differ from the model's state dict")


def _write_sharded(tensors: Iterator[tuple[str, torch.Tensor]], folder: Path, stem: str = "model",
                   shard_bytes: int = SHARD_BYTES) -> list[Path]:
    """Write (name, tensor) pairs as safetensors shards of at most `shard_bytes` (a larger tensor gets
    its own shard), holding one shard in memory. One shard is `<stem>.safetensors`; more are
    `<stem>-0000i-of-0000n.safetensors` plus `<stem>.safetensors.index.json` (the transformers and
    diffusers layout)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    shards: list[tuple[Path, list[str]]] = []
    batch: dict[str, torch.Tensor] = {}
    size = total = 0

    def flush() -> None:
        nonlocal batch, size
        path = folder / f"{stem}.part{len(shards)}.safetensors"
        save_file(batch, str(path), metadata={"format": "pt"})
        shards.append((path, list(batch)))
        batch, size = {}, 0

    for name, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if batch and size + nbytes > shard_bytes:
            flush()
        batch[name] = tensor.contiguous()
        size += nbytes
        total += nbytes
    if batch or not shards:
        flush()
    n = len(shards)
    if n == 1:
        final = [shards[0][0].rename(folder / f"{stem}.safetensors")]
    else:
        final, weight_map = [], {}
        for i, (path, names) in enumerate(shards, 1):
            target = path.rename(folder / f"{stem}-{i:05d}-of-{n:05d}.safetensors")
            final.append(target)
            weight_map.update({k: target.name for k in names})
        (folder / f"{stem}.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return final


def build_random_wan_components(size: str = "tiny", seed: int = 0) -> dict:
    """The Wan transformer, VAE and scheduler with random weights (float32, CPU, eval mode).

    Args:
        size: "tiny" or "full" (see the module docstring; "full" needs ~6 GB of memory).
        seed: torch seed for the weights.
    Returns:
        dict with keys transformer (WanTransformer3DModel, input (B, 16, F', H/8, W/8)),
        vae (AutoencoderKLWan), scheduler (UniPCMultistepScheduler, flow sigmas, shift 3).
    """
    cfg = _config(size)
    with torch.inference_mode(False):
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(**cfg["transformer"])
        torch.manual_seed(seed + 1)
        vae = AutoencoderKLWan(**cfg["vae"])
    return dict(transformer=transformer.eval(), vae=vae.eval(),
                scheduler=UniPCMultistepScheduler(**WAN_SCHEDULER_CONFIG))


def _config(size: str) -> dict:
    if size not in WAN_CONFIGS:
        raise ValueError(f"Unknown Wan size '{size}'; use one of {', '.join(SIZES)}.")
    return WAN_CONFIGS[size]


def save_random_wan(folder: str | Path, size: str = "tiny", seed: int = 0, text_encoder: str = "full") -> Path:
    """Build a random Wan 2.1 text-to-video model and save it as a diffusers folder that
    `dmt.load_wan` loads: transformer/, vae/, text_encoder/, tokenizer/, scheduler/,
    model_index.json (the hub repo's layout and classes).

    Args:
        folder: where to write (created; existing files of the same names are overwritten).
        size: "tiny" (tests; 0.3 MB, a second) or "full" (Wan2.1-T2V-1.3B's configuration; 17.5 GB
            on disk, 6.5 GB of memory while writing, minutes).
        seed: torch seed for the weights.
        text_encoder: "full" (the size's own UMT5) or "small" (at size "full": a one-layer UMT5 of
            output width 4096 instead of the 5.7 G-parameter UMT5-XXL; 6.3 GB on disk in all).
    Returns:
        the folder.
    """
    cfg = _config(size)
    if text_encoder not in ("full", "small"):
        raise ValueError(f"Unknown text_encoder '{text_encoder}'; use 'full' or 'small'.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = save_t5_tokenizer(folder / "tokenizer")
    parts = build_random_wan_components(size, seed)
    parts["scheduler"].save_pretrained(str(folder / "scheduler"))
    parts["vae"].save_pretrained(str(folder / "vae"))
    parts["transformer"].save_pretrained(str(folder / "transformer"))
    del parts  # the full transformer is 5.7 GB: free it before the text encoder
    text = SMALL_TEXT if (text_encoder == "small" and size == "full") else cfg["text"]
    dtype = cfg["text_dtype"]
    config = _umt5_config(text, len(tok), dtype)
    config.save_pretrained(str(folder / "text_encoder"))
    _write_sharded(_umt5_tensors(config, dtype, seed + 2), folder / "text_encoder")
    (folder / "model_index.json").write_text(json.dumps(WAN_MODEL_INDEX, indent=2))
    return folder
