"""The ``demo`` sub-command: checks an installation offline on a tiny random model."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..transfer.sampler import GuidanceSettings
from .common import HelpFormatter, add_threads_option, progress_bar, start_threads, use_threads


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", formatter_class=HelpFormatter,
        help="check an installation offline: a tiny random model on a synthetic clip (no download)",
        description="Builds a tiny random-weight model with ZeroScope's block structure and a synthetic "
        "clip of a moving square, and runs the whole transfer on it in seconds on a CPU. The output is "
        "noise-like (the weights are random): it proves the install works, not the method. The tiny model runs "
        "on one CPU thread unless --threads or OMP_NUM_THREADS says otherwise (more threads only slow a tiny "
        "model down on a busy machine).",
    )
    p.add_argument("--out", default="dmt_demo.mp4", help="output video")
    add_threads_option(p)
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run the `demo` sub-command."""
    import tempfile

    from ..transfer import pipeline
    from ..models.zeroscope import load_zeroscope
    from ..models.random_model import save_random_model
    from ..io.video import write_video

    # The thread rule (dmt.models.threads): one thread for this tiny model unless the user chose
    # (measured: 188 s with one thread vs 1146 s with two on a loaded 2-core machine).
    start_threads(args)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_zeroscope(save_random_model(Path(tmp) / "tiny"), "float32", "cpu")
    use_threads(args, model)
    t = torch.linspace(0, 1, 8)
    frames = torch.zeros(8, 64, 64, 3)
    for i, v in enumerate(t):
        o = int(8 + 32 * v)
        frames[i, o : o + 16, o : o + 16] = torch.tensor([1.0, 0.6, 0.2])
    result = pipeline.transfer(model, frames, "a square", "a circle", num_steps=10, num_inversion_steps=50,
                               settings=GuidanceSettings(optimization_steps=2),
                               on_step=progress_bar({"inversion": "inverting", "targets": "targets", "sampling": "sampling"}))
    out = write_video(args.out, result.frames, 8.0)
    print(f"wrote {out}: the pipeline works (random weights, so the frames are noise).")
    return 0
