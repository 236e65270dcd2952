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


def save_word_t5_tokenizer(folder: str | Path, model_max_length: int = 512):
    """The toy Wan's tokenizer: a T5 tokenizer (pad 0, eos 1, unk 2 as T5's; a Unigram model with
    Metaspace word starts) whose pieces are the toy words ("▁red") and punctuation (the authors'
    prompt prefix has commas), lower-cased, each prompt ending with "</s>". Every toy word is one
    token; any other word is "<unk>". Written to `folder` (tokenizer.json and the config files with
    which `AutoTokenizer` loads it as a T5TokenizerFast); returns the loaded tokenizer."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import AutoTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marks = [",", ".", "!", "?", ";", ":"]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -10.0)]
    pieces += [(m, -1.0) for m in marks] + [("\u2581" + w, -1.0) for w in WORDS]
    tok = Tokenizer(Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)])
    tok.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)])
    tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
        "extra_ids": 0, "additional_special_tokens": [], "model_max_length": model_max_length}, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2))
    loaded = AutoTokenizer.from_pretrained(str(folder))
    for w in WORDS:
        if len(loaded(w, add_special_tokens=False).input_ids) != 1:
            raise RuntimeError(f"toy word '{w}' tokenizes to more than one token")
    return loaded
