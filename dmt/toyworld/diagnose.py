"""Which caption words a toy model uses: the x0 error of its prediction at a noisy timestep with the
true caption, and with one word swapped (colour, speed, direction). A word the model uses raises
the error when swapped; one it ignores leaves it unchanged. The model card's "why the direction
words are not bound" figures come from here (`python -m dmt toyworld words`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..models.latents import encode_frames
from ..models.text import encode_prompt
from ..models.unet import predict_noise
from ..models.zeroscope import ZeroScope
from .card import world_options
from .world import random_vocabulary_clip, subject

SWAPS = {
    "colour": {"red": "blue", "blue": "red", "green": "yellow", "yellow": "green"},
    "speed": {"quickly": "slowly", "slowly": "quickly"},
    "direction": {"left": "right", "right": "left", "up": "down", "down": "up"},
}


def _caption(colour: str, shape: str, direction: str, speed: str) -> str:
    return f"{subject(colour, shape)} moving {direction} {speed}"


@torch.no_grad()
def caption_word_gaps(model: ZeroScope, timestep: int = 999, clips: int = 32, seed: int = 5) -> dict[str, float]:
    """Mean x0-MSE (latent units: ZeroScope's scaled latents, Wan's normalised ones) at `timestep`
    over `clips` fresh vocabulary clips (seeded): {"true": with the true caption,
    "colour"/"speed"/"direction": the increase when that word is swapped (red↔blue, green↔yellow;
    quickly↔slowly; left↔right, up↔down), "latent_variance"}. The same noise is used for every
    caption of a clip. On a toy Wan `timestep` is its training step k (σ = shift((k + 1) / T), as
    dmt.models.interface.WanOps draws it; 999 is pure noise)."""
    from .evaluate import defaults_of, frames_of

    probe = _wan_probe(model, timestep) if getattr(model, "kind", "zeroscope") == "wan" else \
        _zeroscope_probe(model, timestep)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    sums = {"true": 0.0, **{k: 0.0 for k in SWAPS}}
    var = 0.0
    size = int(defaults_of(model)["width"])
    for _ in range(clips):
        clip = random_vocabulary_clip(rng, frames_of(model), size, size, **world_options(model.name))
        x0 = probe.encode(clip.frames)
        x_t = probe.noisy(x0, torch.randn(x0.shape, generator=gen))
        direction, speed = clip.motion.split("/")
        words = {"colour": clip.colour, "shape": clip.shape, "direction": direction, "speed": speed}

        def err(w: dict) -> float:
            x0_hat = probe.x0(x_t, _caption(w["colour"], w["shape"], w["direction"], w["speed"]))
            return ((x0_hat - x0) ** 2).mean().item()

        base = err(words)
        sums["true"] += base
        for k, swap in SWAPS.items():
            sums[k] += err({**words, k: swap[words[k]]}) - base
        var += x0.var().item()
    out = {k: v / clips for k, v in sums.items()}
    out["latent_variance"] = var / clips
    return out


@dataclass
class _Probe:
    """encode: frames → clean latent; noisy: (x0, noise) → x_t; x0: (x_t, caption) → predicted x0."""

    encode: Callable[[torch.Tensor], torch.Tensor]
    noisy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    x0: Callable[[torch.Tensor, str], torch.Tensor]


def _zeroscope_probe(model: ZeroScope, timestep: int) -> _Probe:
    a = model.scheduler.alphas_cumprod[timestep].float()

    def x0(x_t: torch.Tensor, caption: str) -> torch.Tensor:
        eps = predict_noise(model, x_t, timestep, encode_prompt(model, caption)).float()
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    return _Probe(encode=lambda frames: encode_frames(model, frames).float(),
                  noisy=lambda x0_, noise: a.sqrt() * x0_ + (1 - a).sqrt() * noise, x0=x0)


def _wan_probe(model, step: int) -> _Probe:
    """x_t = (1 − σ)·x0 + σ·ε, x0 = x_t − σ·v (v: the transformer's velocity)."""
    from ..models.interface import model_ops

    ops = model_ops(model)
    k = torch.tensor([step])
    sigma = float(ops.sigmas(model, k)[0])
    t_model = torch.tensor([sigma * model.scheduler.config.num_train_timesteps])

    def x0(x_t: torch.Tensor, caption: str) -> torch.Tensor:
        return x_t - sigma * ops.predict(model, x_t, t_model, ops.encode_text(model, caption))

    return _Probe(encode=lambda frames: ops.encode_clip(model, frames),
                  noisy=lambda x0_, noise: ops.noisy(model, x0_, noise, k)[0], x0=x0)
