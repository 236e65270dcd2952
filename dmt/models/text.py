"""Prompt encoding with ZeroScope's CLIP text encoder."""

from __future__ import annotations

import torch

from ..models.grad_modes import evaluation
from ..models.zeroscope import ZeroScope

#: The authors prepend this to the source and the target prompt (their configs do).
AUTHORS_PROMPT_PREFIX = "Amazing quality, masterpiece, "
DEFAULT_NEGATIVE_PROMPT = "bad quality, distortions, unrealistic, distorted image, watermark, signature"


def with_prefix(prompt: str, prefix: str = AUTHORS_PROMPT_PREFIX) -> str:
    """`prefix + prompt`, unless the prompt already starts with the prefix (never doubled)."""
    if not prefix or prompt.startswith(prefix):
        return prompt
    return prefix + prompt


def encode_prompt(model: ZeroScope, prompt: str) -> torch.Tensor:
    """Encode one prompt exactly as the authors do (padded to the tokenizer's max length, 77).

    Returns:
        (1, 77, hidden) last hidden state in the text encoder's dtype, on the model's device.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"Prompt must be a string, got {type(prompt).__name__}.")
    ids = model.tokenizer(
        prompt,
        padding="max_length",
        max_length=model.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    with evaluation():
        return model.text_encoder(ids.to(model.text_encoder.device))[0].to(model.device)
