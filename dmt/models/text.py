"""Prompt encoding with ZeroScope's CLIP text encoder."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..models.grad_modes import evaluation
from ..models.zeroscope import ZeroScope
# The authors prepend AUTHORS_PROMPT_PREFIX to the source and the target prompt (their configs do);
# both texts are defined with the other settings in dmt.settings.
from ..settings import AUTHORS_PROMPT_PREFIX, DEFAULT_NEGATIVE_PROMPT  # noqa: F401 (DEFAULT_NEGATIVE_PROMPT: re-exported)

log = logging.getLogger("dmt")


@dataclass(frozen=True)
class PromptTokens:
    """How much of a prompt the text encoder reads.

    used: prompt tokens kept (start/end tokens not counted). total: prompt tokens in all.
    limit: prompt tokens the encoder can read (model_max_length minus the special tokens the
        tokenizer adds: 77 - 2 = 75 for CLIP, 512 - 1 = 511 for Wan's T5 tokenizer).
    dropped_text: the words that were cut off ("" when nothing was).
    """

    used: int
    total: int
    limit: int
    dropped_text: str = ""

    @property
    def truncated(self) -> bool:
        return self.total > self.used

    def message(self, what: str = "prompt") -> str:
        """A user-facing note, "" when nothing was dropped."""
        if not self.truncated:
            return ""
        return (f"The {what} is {self.total} tokens long; ZeroScope's text encoder reads only the first "
                f"{self.used} (its limit is {self.limit}), so the rest was dropped: '{self.dropped_text}'. "
                f"Shorten the {what} to keep every word.")


def count_prompt_tokens(tokenizer, prompt: str) -> PromptTokens:
    """Count the tokens of `prompt` (as encoded, prefix included) against the tokenizer's limit."""
    ids = tokenizer(prompt, truncation=False, add_special_tokens=False).input_ids
    special = len(tokenizer("", add_special_tokens=True).input_ids)  # CLIP: start + end; T5 (Wan): end only
    limit = int(tokenizer.model_max_length) - special
    used = min(len(ids), limit)
    dropped = tokenizer.decode(ids[used:]).strip() if len(ids) > used else ""
    if len(dropped) > 120:
        dropped = dropped[:117] + "..."
    return PromptTokens(used=used, total=len(ids), limit=limit, dropped_text=dropped)


def with_prefix(prompt: str, prefix: str = AUTHORS_PROMPT_PREFIX) -> str:
    """`prefix + prompt`, unless the prompt already starts with the prefix (never doubled)."""
    if not prefix or prompt.startswith(prefix):
        return prompt
    return prefix + prompt


def encode_prompt(model: ZeroScope, prompt: str) -> torch.Tensor:
    """Encode one prompt exactly as the authors do (padded to the tokenizer's max length, 77).

    A prompt longer than the encoder's limit is truncated as the authors' pipeline does; the
    number of tokens used and the dropped words are logged as a warning (logger "dmt").

    Returns:
        (1, 77, hidden) last hidden state in the text encoder's dtype, on the model's device.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"Prompt must be a string, got {type(prompt).__name__}.")
    note = count_prompt_tokens(model.tokenizer, prompt).message()
    if note:
        log.warning("dmt: %s", note)
    ids = model.tokenizer(
        prompt,
        padding="max_length",
        max_length=model.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    with evaluation():
        return model.text_encoder(ids.to(model.text_encoder.device))[0].to(model.device)
