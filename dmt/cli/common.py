"""Pieces shared by the sub-commands: the help formatter and the tqdm progress callback."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.HelpFormatter):
    """Shows '(default: X)' after every option that has a meaningful default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


def progress_bar(desc_by_stage: dict[str, str]):
    from tqdm.auto import tqdm

    bars: dict[str, tqdm] = {}

    def on_step(stage: str, step: int, total: int, latent) -> None:
        key = "sampling" if stage in ("guidance", "denoise") else stage
        bar = bars.get(key)
        if bar is None:
            bar = bars[key] = tqdm(total=total, desc=desc_by_stage.get(key, key), unit="step", leave=True)
        bar.n = step
        bar.refresh()
        if step >= total:
            bar.close()

    return on_step
