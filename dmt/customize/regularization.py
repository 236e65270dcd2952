"""Regularization clips (prior preservation): clips of *related* motions with their own captions,
mixed into training with weight λ so the model does not forget those motions nor tie the token to
the examples' appearance. The paper found real videos better than generated ones; generating with
the frozen model remains the fallback when a user has none.

- `load_regularization(folder, ...)`: real clips, the same folder layout as the examples, no
  token required (their captions should *not* contain it).
- `generate_regularization(model, captions, count, token, ...)`: `count` clips sampled with the
  frozen model from the example captions with the token removed (seeds seed, seed+1, ...). Only
  their latents are needed (no VAE decode); they are cached on disk by the SHA-256 of prompt,
  seed, sampling settings and model, so they are made once.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress
from ..models.text import DEFAULT_NEGATIVE_PROMPT
from ..models.zeroscope import ZeroScope
from ..settings import TRAIN
from .encode import EncodedExample, _read_entry, _write_entry, content_key, encode_text_cached, encoder_identity
from .examples import DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_WIDTH, MotionExample, load_examples, strip_token
from .generate import GenerateSettings, sample_latents

DEFAULT_REG_WEIGHT: float = TRAIN["reg_weight"].default  # 1.0


def load_regularization(
    path: str | Path,
    caption: str | None = None,
    num_frames: int = DEFAULT_FRAMES,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    stride: int = 1,
) -> list[MotionExample]:
    """Real regularization clips with captions (<name>.txt or one `caption`); see load_examples."""
    return load_examples(path, caption=caption, token=None, num_frames=num_frames, height=height,
                         width=width, stride=stride)


def prior_prompts(captions: list[str], token: str, count: int) -> list[str]:
    """`count` prompts cycling over `captions` with the token removed."""
    if count < 1:
        raise InputError(f"Number of regularization clips to generate must be >= 1, got {count}.")
    prompts = [strip_token(c, token) for c in captions]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise InputError("The example captions are empty without the token: write captions that describe "
                         "the scene, e.g. 'a person doing the sks dance'.")
    return [prompts[i % len(prompts)] for i in range(count)]


def generate_regularization(
    model: ZeroScope,
    captions: list[str],
    count: int,
    token: str,
    settings: GenerateSettings = GenerateSettings(),
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
    cache_dir: str | Path | None = None,
    on_step: OnStep = no_progress,
    check_interrupt: CheckInterrupt = never_interrupt,
) -> list[EncodedExample]:
    """Sample `count` prior clips with the frozen model, ZeroScope or Wan (clip i uses seed
    settings.seed + i).

    Returns EncodedExample items (latents + the prompt's embedding) ready for `train_motion`.
    on_step("regularization", k, count * steps, latent) per sampling step.
    """
    settings.validate()
    prompts = prior_prompts(captions, token, count)
    ident = encoder_identity(model)
    texts: dict[str, torch.Tensor] = {}
    negative = encode_text_cached(model, negative_prompt, texts)
    out = []
    for i, prompt in enumerate(prompts):
        checkpoint(check_interrupt)
        s = GenerateSettings(settings.num_frames, settings.height, settings.width, settings.steps,
                             settings.guidance_scale, settings.seed + i)
        key = content_key("regularization", prompt, negative_prompt, s.__dict__, ident)
        path = Path(cache_dir) / f"{key}.safetensors" if cache_dir is not None else None
        cached = _read_entry(path) if path is not None and path.is_file() else None
        if cached is None:
            text = encode_text_cached(model, prompt, texts)

            def tick(stage, step, total, lat, _i=i):
                on_step("regularization", _i * s.steps + step, count * s.steps, lat)

            latents = sample_latents(model, text, negative, s, tick, check_interrupt).float().cpu()
            cached = {"latents": latents, "text": text}
            if path is not None:
                _write_entry(path, cached, {"caption": prompt, "source": f"generated seed {s.seed}"})
        out.append(EncodedExample(cached["latents"], cached["text"], prompt, f"generated seed {s.seed}"))
    return out
