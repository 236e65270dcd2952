"""Pieces shared by the sub-commands: the help formatter, options built from the library's setting
tables (dmt.settings), their range check, the thread rule and the tqdm progress callback."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from ..settings import THREADS, Setting, check_values


class HelpFormatter(argparse.HelpFormatter):
    """Shows '(default: X)' after every option that has a meaningful default. A description or
    epilog that contains line breaks is printed as written (tables); others are wrapped."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        meaningful = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if "default" not in text and meaningful and action.option_strings:
            text += " (default: %(default)s)"
        return text

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def add_setting(group, setting: Setting, **override) -> argparse.Action:
    """Add `setting` (dmt.settings) as the option --kebab-name: its type, default, choices, pair
    (nargs 2) and a help text that states its range. `override`: add_argument keywords that differ
    (a longer help, required=True, ...)."""
    help_text = override.pop("help", setting.help).replace("%", "%%")
    if setting.type in (int, float) and setting.choices is None:
        help_text += f"; {setting.requirement()}"
    kw: dict = {"default": setting.default, "help": help_text}
    if setting.type is bool:
        kw["action"] = "store_true"
    else:
        kw["type"] = setting.type
        if setting.count == 2:
            kw["nargs"] = 2
        if setting.choices is not None:
            kw["choices"] = list(setting.choices)
        if setting.metavar is not None:
            kw["metavar"] = setting.metavar
    kw.update(override)
    return group.add_argument(setting.flag, **kw)


def check_args(args: argparse.Namespace, table: dict[str, Setting]) -> None:
    """Raise InputError naming every option of `table` whose value is out of its range, e.g.
    "--guidance-scale is -3: it must be a number from 0 to 50 (default 10)."."""
    values = {k: getattr(args, k) for k in table if hasattr(args, k)}
    problems = check_values(table, values)
    if len(problems) == 1:
        raise InputError(problems[0])
    if problems:
        raise InputError("these options are out of range:\n  " + "\n  ".join(problems))


def add_threads_option(parser) -> None:
    """--threads N (every command that runs a model)."""
    add_setting(parser, THREADS)


def start_threads(args: argparse.Namespace) -> None:
    """Before loading: --threads N applies at once (the load itself runs on them too)."""
    import torch

    n = getattr(args, "threads", None)
    if n is not None:
        THREADS.check(n, "--threads")
        torch.set_num_threads(n)


def use_threads(args: argparse.Namespace, model) -> int | None:
    """After loading: the thread rule of dmt.models.threads (--threads N, else OMP_NUM_THREADS,
    else 1 thread for a small UNet); says so on stderr when the rule chose for the user."""
    from ..models.threads import set_threads_for

    requested = getattr(args, "threads", None)
    n = set_threads_for(model, requested)
    if n is not None and requested is None:
        print(f"using {n} CPU thread for this small model (--threads N or OMP_NUM_THREADS to choose)",
              file=sys.stderr)
    return n


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


def load_base_model(source: str, device: str | None, dtype: str | None):
    """ZeroScope or Wan 2.1 from a folder or hub id (a Wan one by its JSON files or its name),
    on `device` (default: cuda when available, else cpu) in `dtype` (default: float32 on the
    CPU; on a GPU float16 for ZeroScope, bfloat16 for Wan). Prints what it loads."""
    import torch

    from .transfer_wan import is_wan_source

    wan = is_wan_source(source)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or ("float32" if torch.device(device).type == "cpu" else "bfloat16" if wan else "float16")
    print(f"loading {source} ({'Wan 2.1, ' if wan else ''}{dtype}, {device})", file=sys.stderr)
    if wan:
        from ..models.wan import load_wan

        return load_wan(source, dtype, device)
    from ..models.zeroscope import load_zeroscope

    return load_zeroscope(source, dtype, device)


def read_input_video(args: argparse.Namespace, frame_count) -> tuple:
    """(frames, fps) of `transfer`'s --video, cut and resized by --start/--stride/--width/--height
    to `frame_count(available)` frames (available: what --start and --stride leave; the count's
    rules are the model's), and a line on stderr; (None, --fps) without --video."""
    from ..io.video import read_video
    from ..models.latents import prepare_frames

    if args.video is None:
        return None, args.fps
    clip = read_video(args.video)
    count = frame_count(len(range(args.start, clip.frames.shape[0], args.stride)))
    frames = prepare_frames(clip.frames, args.width, args.height, count, args.start, args.stride)
    print(f"input: {clip.frames.shape[0]} frames {clip.frames.shape[2]}x{clip.frames.shape[1]} -> "
          f"{frames.shape[0]} frames {args.width}x{args.height}", file=sys.stderr)
    return frames, args.fps or clip.fps
