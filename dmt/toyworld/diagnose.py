"""Which caption words a toy model uses: the x0 error of its prediction at a noisy timestep with the
true caption, and with one word swapped (colour, speed, direction). A word the model uses raises
the error when swapped; one it ignores leaves it unchanged. The model card's "why the direction
words are not bound" figures come from here (`python -m dmt toyworld words`)."""

from __future__ import annotations

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
    """Mean x0-MSE (scaled latent units) at `timestep` over `clips` fresh vocabulary clips (seeded):
    {"true": with the true caption, "colour"/"speed"/"direction": the increase when that word is
    swapped (red↔blue, green↔yellow; quickly↔slowly; left↔right, up↔down), "latent_variance"}.
    The same noise is used for every caption of a clip."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    a = model.scheduler.alphas_cumprod[timestep].float()
    sums = {"true": 0.0, **{k: 0.0 for k in SWAPS}}
    var = 0.0
    size = model.vae.config.sample_size
    for _ in range(clips):
        clip = random_vocabulary_clip(rng, 8, size, size, **world_options(model.name))
        x0 = encode_frames(model, clip.frames).float()
        noise = torch.randn(x0.shape, generator=gen)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        direction, speed = clip.motion.split("/")
        words = {"colour": clip.colour, "shape": clip.shape, "direction": direction, "speed": speed}

        def err(w: dict) -> float:
            text = encode_prompt(model, _caption(w["colour"], w["shape"], w["direction"], w["speed"]))
            eps = predict_noise(model, x_t, timestep, text).float()
            return (((x_t - (1 - a).sqrt() * eps) / a.sqrt() - x0) ** 2).mean().item()

        base = err(words)
        sums["true"] += base
        for k, swap in SWAPS.items():
            sums[k] += err({**words, k: swap[words[k]]}) - base
        var += x0.var().item()
    out = {k: v / clips for k, v in sums.items()}
    out["latent_variance"] = var / clips
    return out
