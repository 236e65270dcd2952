"""The ``random-model`` sub-command: write a random-weight model folder, no download.

    dmt-motion random-model --kind zeroscope|wan [--size tiny|full] --out DIR [--seed N]
                            [--small-text-encoder]

The folder is a real diffusers folder that the loaders (and the ComfyUI loader nodes) load: for
tests, for speed and memory benchmarks at the real size without a download, and to check an
install. The weights are random, so the videos are noise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from ..errors import InputError
from .common import HelpFormatter

#: bytes on disk (measured from the parameter counts and dtypes; tiny folders are under 1 MB)
FULL_BYTES = {"zeroscope": 7.2e9, "wan": 17.6e9, "wan-small-text": 6.4e9}


def add_random_model_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``random-model`` sub-command (sets ``func=run_random_model``)."""
    p = sub.add_parser(
        "random-model", formatter_class=HelpFormatter,
        help="write a random-weight ZeroScope or Wan folder (tests, real-size benchmarks, install check; no download)",
        description=(
            "Writes a diffusers folder with random weights and the real classes of the chosen model, which "
            "the loaders load like a downloaded one. --size tiny: the block structure at tiny widths "
            "(under 1 MB, seconds; what the tests use). --size full: the real configuration, for speed and "
            "memory measurements without a download: ZeroScope v2 576w ~7.2 GB (fp32); Wan2.1-T2V-1.3B "
            "17.5 GB (transformer and VAE in fp32, the 5.7 G-parameter UMT5-XXL text encoder in bf16, "
            "written block by block; measured: 4.7 min and 6.5 GB of memory on a 2-core machine), or "
            "6.3 GB with --small-text-encoder. The output folder must be new or empty."),
    )
    p.add_argument("--kind", required=True, choices=("zeroscope", "wan"), help="which base model")
    p.add_argument("--size", default="tiny", choices=("tiny", "full"),
                   help="tiny (tests) or full (the real configuration)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="new or empty folder to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--small-text-encoder", action="store_true",
                   help="Wan at --size full only: a one-layer UMT5 of the real output width (4096) instead of "
                        "UMT5-XXL (5.7 G parameters, 11.4 GB). The transformer sees text embeddings of the right "
                        "shape; the text encoder's own time and memory are then not the real ones.")
    p.set_defaults(func=run_random_model)
    return p


def _check_out(out: Path, needed: float) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' is a file; give a new or empty folder.")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"--out '{out}' is not empty; give a new or empty folder (random-model never "
                         f"overwrites files).")
    parent = out.parent
    if not parent.exists():
        raise InputError(f"The parent folder of --out, '{parent}', does not exist; create it first.")
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise InputError(f"Not enough disk space for '{out}': it needs about {needed / 1e9:.1f} GB and "
                         f"{free / 1e9:.1f} GB are free. Free some space or choose another folder.")


def _folder_bytes(folder: Path) -> tuple[int, int]:
    files = [f for f in folder.rglob("*") if f.is_file()]
    return len(files), sum(f.stat().st_size for f in files)


def run_random_model(args: argparse.Namespace) -> int:
    """Run the `random-model` sub-command."""
    out: Path = args.out
    small = bool(args.small_text_encoder)
    if small and not (args.kind == "wan" and args.size == "full"):
        raise InputError("--small-text-encoder applies to --kind wan --size full only (the tiny models' text "
                         "encoders are already tiny, ZeroScope's CLIP is 0.3 G parameters).")
    needed = 1e7 if args.size == "tiny" else FULL_BYTES["wan-small-text" if small else args.kind]
    _check_out(out, needed)
    label = {"zeroscope": "ZeroScope", "wan": "Wan2.1-T2V"}[args.kind]
    if args.size == "full":
        print(f"writing a random {label} at full size (~{needed / 1e9:.1f} GB): this takes minutes ...", flush=True)
    # Write beside the target and rename at the end: an interrupted run never leaves a folder that
    # looks complete.
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    start = time.perf_counter()
    try:
        if args.kind == "wan":
            from ..models.random_wan import save_random_wan
            save_random_wan(partial, args.size, seed=args.seed, text_encoder="small" if small else "full")
        else:
            from ..models.random_model import save_random_model
            save_random_model(partial, args.size, seed=args.seed)
        if out.is_dir():
            out.rmdir()  # checked empty above
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    count, size = _folder_bytes(out)
    loader = "dmt.load_wan" if args.kind == "wan" else "dmt.load_zeroscope"
    print(f"wrote {out}: a random-weight {label} ({args.size}{', small text encoder' if small else ''}, seed "
          f"{args.seed}), {count} files, {size / 1e6:.1f} MB, in {time.perf_counter() - start:.1f} s. Load it with "
          f"{loader}('{out}') or pass it as the model folder; its videos are noise (random weights).")
    return 0
