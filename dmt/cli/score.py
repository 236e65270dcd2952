"""The ``score`` sub-command: Motion-Fidelity score of an edited video against its original.

    dmt score ORIGINAL EDITED [--grid N] [--mask MASK.png] [--backend lk|cotracker]
              [--cotracker-checkpoint PATH] [--static-threshold T] [--json OUT.json]
              [--vis OUT.mp4|DIR]

ORIGINAL / EDITED: a video file or a folder of frame images (same frame count).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..metrics.motion_fidelity import MotionFidelity, draw_comparison, motion_fidelity
from ..metrics.tracking import BACKENDS, load_mask
from ..io.video import read_video, write_video
from ..settings import SCORE
from .common import add_setting, check_args


def add_score_command(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``score`` sub-command (sets ``func=run_score``) to an argparse sub-parser set."""
    p = subparsers.add_parser(
        "score",
        help="Motion-Fidelity score: how well an edited video keeps the original's motion.",
        description=(
            "Track a grid of points in both videos and compare the directions of their motion "
            "(paper eq. 5). Prints both directions (edited->original, original->edited), their "
            "mean ('combined', in [-1, 1], 1 = same motion) and the paper's sum (in [-2, 2])."
        ),
    )
    p.add_argument("original", type=Path, help="original (input) video file or folder of frames")
    p.add_argument("edited", type=Path, help="edited (output) video file or folder of frames")
    add_setting(p, SCORE["grid"])
    p.add_argument("--mask", type=Path, default=None, metavar="MASK.png",
                   help="first-frame foreground mask image (white = object); only grid points "
                        "inside its bounding box are tracked")
    p.add_argument("--backend", choices=BACKENDS, default="lk",
                   help="point tracker: lk = OpenCV Lucas-Kanade (offline, default); "
                        "cotracker = Meta CoTracker (needs the package and --cotracker-checkpoint)")
    p.add_argument("--cotracker-checkpoint", type=Path, default=None, metavar="PATH",
                   help="local CoTracker checkpoint file (backend cotracker)")
    add_setting(p, SCORE["static_threshold"])
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the result as JSON to this file")
    p.add_argument("--vis", type=Path, default=None, metavar="OUT.mp4|DIR",
                   help="write a side-by-side track visualisation: a .mp4 file or a folder of PNGs")
    p.set_defaults(func=run_score)


def format_result(result: MotionFidelity, original: Path, edited: Path) -> str:
    """Human-readable multi-line summary."""
    o, e = result.original_tracks, result.edited_tracks
    return "\n".join([
        f"Motion fidelity ({o.backend} tracker, {o.num_frames} frames)",
        f"  original  {original}  {o.width}x{o.height}: {result.num_original} of {o.num_points} points tracked",
        f"  edited    {edited}  {e.width}x{e.height}: {result.num_edited} of {e.num_points} points tracked",
        f"  edited -> original   {result.edited_to_original:7.4f}",
        f"  original -> edited   {result.original_to_edited:7.4f}",
        f"  combined (mean)      {result.combined:7.4f}   in [-1, 1], 1 = same motion",
        f"  paper sum (eq. 5)    {result.paper_sum:7.4f}   in [-2, 2]",
    ])


def run_score(args: argparse.Namespace) -> int:
    """Run the ``score`` sub-command. Returns 0 on success, 2 on bad input (message on stderr)."""
    check_args(args, SCORE)
    try:
        original = read_video(args.original)
        edited = read_video(args.edited)
        mask = load_mask(args.mask) if args.mask is not None else None
        result = motion_fidelity(
            original.frames, edited.frames, grid=args.grid, mask=mask, backend=args.backend,
            static_threshold=args.static_threshold, cotracker_checkpoint=args.cotracker_checkpoint,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_result(result, args.original, args.edited))
    if args.json is not None:
        data = {"original": str(args.original), "edited": str(args.edited), "grid": args.grid,
                "mask": str(args.mask) if args.mask else None, **result.to_dict()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.vis is not None:
        vis = draw_comparison(original.frames, edited.frames, result)
        print(f"wrote {write_video(args.vis, vis, fps=original.fps)}")
    return 0
