"""The JSON header that every DMT safetensors file (motions, positional offsets) carries under
the metadata key "dmt", read without loading any tensor, with one set of messages for files that
are missing, unreadable, someone else's, or from a newer DMT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open


def read_dmt_header(path: str | Path, fmt: str, version: int, error: type[Exception], noun: str,
                    kind_text: str) -> dict[str, Any]:
    """The header of `path` when its "format" is `fmt` and its version at most `version`.

    noun: what the file is called in messages ("motion file"); kind_text: what it is not when
    its header names another format ("a DMT motion"). Raises `error` otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{noun[0].upper()}{noun[1:]} '{path}' not found.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"'{path}' is not a readable {noun} (truncated, damaged or not safetensors): {exc}") from exc
    try:
        header = json.loads(meta["dmt"])
        ok = header.get("format") == fmt
    except (KeyError, ValueError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise error(f"'{path}' is a safetensors file but not {kind_text} (no '{fmt}' metadata).")
    if int(header.get("version", 0)) > version:
        raise error(f"'{path}' was written by a newer DMT ({noun.split()[0]} format {header['version']}); update DMT.")
    return header
