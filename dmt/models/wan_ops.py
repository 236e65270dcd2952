"""What the transfer stages call on a loaded Wan 2.1 (dmt.models.wan): video ↔ normalised latent,
prompt → text embeddings, and the transformer's velocity prediction.

Layouts and units:
    frames: (F, H, W, 3) float in [0, 1] (ComfyUI IMAGE layout), F = 4k + 1, H and W multiples of 16.
    latent: (1, 16, k + 1, H/8, W/8) float32, normalised per channel with the VAE config's
        latents_mean / latents_std, as WanPipeline hands latents to and takes them from the
        transformer: z_norm = (z - mean) · (1 / std).
    text: (B, L, D) UMT5 embeddings, zero after each prompt's last token (D = 4096 for Wan2.1-T2V-1.3B).
    velocity: (B, 16, F', h, w) float32, the flow-matching velocity ≈ noise - x0 (see
        dmt.transfer.flow_matching).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch

from ..errors import InputError, explain_out_of_memory
from .grad_modes import evaluation
from .wan import Wan, check_wan_frames, check_wan_size

__all__ = ["encode_video", "decode_latents", "encode_prompt", "encode_prompts", "prompt_embeddings", "predict_velocity",
           "DEFAULT_MAX_SEQUENCE_LENGTH"]

#: WanPipeline's default text length in tokens (its __call__'s max_sequence_length)
DEFAULT_MAX_SEQUENCE_LENGTH = 512


def _normalisation(model: Wan, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1 / std), each (1, z_dim, 1, 1, 1), from the VAE config (1 / std computed in float32
    before the cast, as diffusers' Wan pipelines do)."""
    cfg = model.vae.config
    shape = (1, int(cfg.z_dim), 1, 1, 1)
    mean = torch.tensor(cfg.latents_mean).view(shape).to(device, dtype)
    inv_std = (1.0 / torch.tensor(cfg.latents_std)).view(shape).to(device, dtype)
    return mean, inv_std


def _vae_device_dtype(model: Wan) -> tuple[torch.device, torch.dtype]:
    weight = next(model.vae.parameters())  # diffusers' `vae.dtype` walks every module
    return weight.device, weight.dtype


def encode_video(model: Wan, frames: torch.Tensor) -> torch.Tensor:
    """VAE-encode a clip to its normalised latent (the posterior mean: no sampling).

    Args:
        frames: (F, H, W, 3) float in [0, 1]; F = 4k + 1, H and W multiples of 16.
    Returns:
        (1, 16, k + 1, H/8, W/8) float32 on the VAE's device: (mean_z - latents_mean) / latents_std.
    Raises:
        InputError: a tensor of another layout, non-finite pixels, a frame count other than 4k + 1
            or a size that is not a multiple of 16 (the messages name the nearest valid values).
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"The video must be frames of shape (F, H, W, 3) with values in [0, 1]; got {shape}.")
    if not frames.is_floating_point():
        raise InputError(f"The video must be float frames with values in [0, 1], not {frames.dtype} (divide "
                         f"8-bit pixels by 255).")
    check_wan_frames(int(frames.shape[0]))
    check_wan_size(int(frames.shape[2]), int(frames.shape[1]), model.patch_size)
    if not bool(torch.isfinite(frames).all()):
        raise InputError("The video contains NaN or infinite pixel values; frames must be finite numbers in [0, 1].")
    device, dtype = _vae_device_dtype(model)
    video = frames.to(device, torch.float32).permute(3, 0, 1, 2).unsqueeze(0) * 2.0 - 1.0  # (1, 3, F, H, W)
    with explain_out_of_memory("Wan VAE encoding"), evaluation():
        z = model.vae.encode(video.to(dtype)).latent_dist.mean.float()
    mean, inv_std = _normalisation(model, z.device, torch.float32)
    return ((z - mean) * inv_std).contiguous()


def decode_latents(model: Wan, latent: torch.Tensor) -> torch.Tensor:
    """VAE-decode a normalised latent to frames (the inverse of `encode_video`).

    Args:
        latent: (1, 16, F', h, w) normalised latent (any float dtype).
    Returns:
        (4(F' - 1) + 1, 8h, 8w, 3) float32 in [0, 1], on the CPU.
    """
    z_dim = int(model.vae.config.z_dim)
    if not isinstance(latent, torch.Tensor) or latent.ndim != 5 or latent.shape[:2] != (1, z_dim):
        shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise InputError(f"A Wan latent must have shape (1, {z_dim}, F', h, w); got {shape}. "
                         f"Decode one video at a time.")
    device, dtype = _vae_device_dtype(model)
    z = latent.detach().to(device, dtype)
    mean, inv_std = _normalisation(model, device, dtype)
    with explain_out_of_memory("Wan VAE decoding"), evaluation():
        video = model.vae.decode(z / inv_std + mean, return_dict=False)[0]  # (1, 3, F, H, W) in [-1, 1]
    return (video[0].float().permute(1, 2, 3, 0) / 2 + 0.5).clamp_(0, 1).cpu().contiguous()


def _clean_prompts(prompts: Sequence[str]) -> list[str]:
    # WanPipeline's own cleaning (HTML entities, ftfy when installed, runs of whitespace): imported
    # rather than re-implemented so the embeddings stay those of the pipeline.
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    return [prompt_clean(p) for p in prompts]


def encode_prompt(model: Wan, prompt: str | Sequence[str],
                  max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH) -> torch.Tensor:
    """Encode prompts as WanPipeline does: cleaned, tokenised and padded to `max_sequence_length`
    tokens (longer prompts are cut), UMT5 with the attention mask, then every position after a
    prompt's last real token set to zero.

    Args:
        prompt: one prompt, or several (one row each).
        max_sequence_length: L, in tokens (WanPipeline's default 512).
    Returns:
        (B, L, D) in the text encoder's dtype on the model's device (B = 1 for one prompt).
    """
    if isinstance(prompt, str):
        installed = _INSTALLED.get(id(model), {}).get((prompt, max_sequence_length))
        if installed is not None:
            return installed.to(model.device)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, (list, tuple)) else []
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise InputError(f"A prompt must be a string or a non-empty list of strings, not {prompt!r}.")
    if isinstance(max_sequence_length, bool) or not isinstance(max_sequence_length, int) or max_sequence_length < 1:
        raise InputError(f"max_sequence_length must be a whole number of tokens >= 1 (Wan uses 512), "
                         f"not {max_sequence_length!r}.")
    tokens = model.tokenizer(_clean_prompts(prompts), padding="max_length", max_length=max_sequence_length,
                             truncation=True, add_special_tokens=True, return_attention_mask=True,
                             return_tensors="pt")
    encoder = model.text_encoder
    encoder_device = next(encoder.parameters()).device
    mask = tokens.attention_mask
    with explain_out_of_memory("Wan prompt encoding"), evaluation():
        hidden = encoder(tokens.input_ids.to(encoder_device), mask.to(encoder_device)).last_hidden_state
    hidden = hidden.to(device=model.device, dtype=encoder.dtype)
    keep = (torch.arange(max_sequence_length) < mask.gt(0).sum(dim=1, keepdim=True)).to(hidden.device)
    return torch.where(keep.unsqueeze(-1), hidden, hidden.new_zeros(()))


#: id(model) → {(prompt, max_sequence_length): embedding}: embeddings installed by prompt_embeddings
_INSTALLED: dict[int, dict[tuple[str, int], torch.Tensor]] = {}


def encode_prompts(model: Wan, prompts: Iterable[str],
                   max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH) -> dict[tuple[str, int], torch.Tensor]:
    """Every distinct prompt encoded once (one text-encoder pass each), for `prompt_embeddings`.
    Returns {(prompt, max_sequence_length): (1, L, D) embedding} on the model's device."""
    return {(p, max_sequence_length): encode_prompt(model, p, max_sequence_length) for p in dict.fromkeys(prompts)}


@contextlib.contextmanager
def prompt_embeddings(model: Wan, embeddings: dict[tuple[str, int], torch.Tensor]) -> Iterator[None]:
    """Inside the block `encode_prompt(model, p)` returns the given embedding of p (moved to the
    model's device) without running the text encoder, so the text encoder can be elsewhere (on
    the CPU, or evicted) while the transformer runs: Wan's UMT5-XXL (about 11 GB in bf16) then
    never shares the GPU with the transformer. Prompts not given are encoded as usual. Nests;
    the previous embeddings are back on exit."""
    key = id(model)
    previous = _INSTALLED.get(key)
    _INSTALLED[key] = {**(previous or {}), **embeddings}
    try:
        yield
    finally:
        if previous is None:
            _INSTALLED.pop(key, None)
        else:
            _INSTALLED[key] = previous


def predict_velocity(model: Wan, latent: torch.Tensor, t: float | torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """v = transformer(latent, t, text): the flow-matching velocity.

    Runs in the transformer's dtype (latent and text are cast as WanPipeline casts them, without
    autocast); gradients flow to `latent` when the caller enables them.

    Args:
        latent: (B, 16, F', h, w), h and w even.
        t: the timestep sigma · 1000 in [0, 1000] (a float, or a (B,) tensor).
        text: (B, L, D) or (1, L, D) prompt embeddings (see `encode_prompt`), broadcast over B.
    Returns:
        (B, 16, F', h, w) float32.
    """
    if latent.ndim != 5:
        raise InputError(f"A Wan latent must have shape (B, 16, F', h, w); got {tuple(latent.shape)}.")
    batch = latent.shape[0]
    if text.ndim != 3 or text.shape[0] not in (1, batch):
        raise InputError(f"Text embeddings must have shape ({batch}, L, D) or (1, L, D) for a batch of {batch}; "
                         f"got {tuple(text.shape)}.")
    device, dtype = model.device, model.dtype
    timestep = torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1).expand(batch)
    out = model.transformer(hidden_states=latent.to(device, dtype), timestep=timestep,
                            encoder_hidden_states=text.to(device, dtype).expand(batch, -1, -1),
                            return_dict=False)[0]
    return out.float()
