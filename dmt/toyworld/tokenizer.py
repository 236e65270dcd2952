"""An offline CLIPTokenizer whose BPE merges make every toy-world word one token.

The byte-level vocabulary (every text still tokenizes) plus, for each word, the chain of merges
that joins its characters left to right ("r e" → "re", "re d</w>" → "red</w>"). With whole-word
tokens a 2-layer text encoder binds a word such as "left" to a motion much faster than from
byte sequences.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer

from ..models.random_model import _byte_chars
from .world import COLOURS, DIRECTIONS, SHAPES, SPEEDS

#: every word a toy caption, prompt prefix or customization caption uses
WORDS = sorted({"a", "moving", "doing", "the", "move", "and", "sks", "zxq", "amazing", "quality",
                "masterpiece", *COLOURS, *SHAPES, *DIRECTIONS, *SPEEDS})


def _bpe(parts: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one word: merge the lowest-ranked adjacent pair until none applies."""
    while len(parts) > 1:
        pairs = [(ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
    return parts


def _merges(words: list[str]) -> list[tuple[str, str]]:
    """Merges that leave every word as one token: for each word, apply the merges so far and
    append (lowest rank) the merge of its first two remaining pieces until one piece is left.
    A word already whole is unaffected by later, lower-ranked merges."""
    ranks: dict[tuple[str, str], int] = {}
    for w in words:
        parts = _bpe(list(w[:-1]) + [w[-1] + "</w>"], ranks)
        while len(parts) > 1:
            ranks[(parts[0], parts[1])] = len(ranks)
            parts = _bpe(parts, ranks)
    return list(ranks)


def save_word_tokenizer(folder: str | Path) -> CLIPTokenizer:
    """Write vocab.json / merges.txt (and the tokenizer config) into `folder`; return the tokenizer.
    Raises RuntimeError if a toy word does not come out as one token."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    tokens = chars + [c + "</w>" for c in chars]
    merges = _merges(WORDS)
    for a, b in merges:
        if a + b not in tokens:
            tokens.append(a + b)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    for w in WORDS:
        ids = tok(w, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise RuntimeError(f"toy word '{w}' tokenizes to {len(ids)} tokens")
    tok.save_pretrained(str(folder))
    return tok
