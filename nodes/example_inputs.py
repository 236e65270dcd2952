"""Makes the pack's example clip available in ComfyUI's input folder, so the example workflows
(whose Load Video names it) run as loaded. Copies only files that are absent there; never
overwrites a user's file and needs no network."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import folder_paths

log = logging.getLogger("dmt")

EXAMPLE_INPUTS = Path(__file__).resolve().parent.parent / "example_inputs"


def install_example_inputs(source: Path = EXAMPLE_INPUTS) -> list[Path]:
    """Copy every file of `source` into the input folder when absent (temp name, then rename).
    Returns the files copied. Problems are logged, never raised: the pack still loads."""
    copied: list[Path] = []
    try:
        target = Path(folder_paths.get_input_directory())
        target.mkdir(parents=True, exist_ok=True)
        for src in sorted(source.glob("*")):
            dst = target / src.name
            if not src.is_file() or dst.exists():
                continue
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
            copied.append(dst)
    except OSError as exc:
        log.warning("DMT: could not copy the example clip into ComfyUI's input folder: %s", exc)
    if copied:
        log.info("DMT: copied example input(s) %s into %s", [p.name for p in copied], copied[0].parent)
    return copied
