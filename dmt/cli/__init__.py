"""Command line: `python -m dmt SUBCOMMAND ...` (also installed as the `dmt-motion` console script).

Sub-commands: transfer (motion transfer), batch (many transfers from a job file, in-process or on
Ray), customize (teach a motion from example clips), generate (text-to-video with motions), score
(Motion-Fidelity score), demo (offline install check), toyworld (train or evaluate the toy-world
model that measures quality on a CPU). `python -m dmt SUBCOMMAND --help` lists
every option and its default.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import DMTError
from .customize import add_customize_command
from .batch import add_batch_command
from .demo import add_demo_command
from .generate import add_generate_command
from .random_model import add_random_model_command
from .score import add_score_command
from .toyworld import add_toyworld_command
from .transfer import add_transfer_command, preset_defaults


def build_parser() -> argparse.ArgumentParser:
    prog = "dmt-motion" if sys.argv and sys.argv[0].endswith("dmt-motion") else "python -m dmt"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    parser.transfer_parser = add_transfer_command(sub)  # type: ignore[attr-defined]
    add_customize_command(sub)
    add_generate_command(sub)
    add_demo_command(sub)
    add_score_command(sub)
    add_batch_command(sub)
    add_toyworld_command(sub)
    add_random_model_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 user error, 130 cancelled)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "preset", None):  # re-parse with the preset's values as defaults
        parser.transfer_parser.set_defaults(**preset_defaults(args.preset))
        args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DMTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # VideoReadError and friends from the metric
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
