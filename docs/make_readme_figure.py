"""Make docs/example_strip.jpg for the README (run from the repository root, CPU, about a minute):

    python docs/make_readme_figure.py

What `dmt-motion demo` does, as a picture: the bundled toy-world model (a tiny ZeroScope trained
here on coloured shapes moving in straight lines) transfers a held-out motion - a red ball on a
stop-and-go path (move, stop, move on), never seen in training and named by no caption - onto "a blue square". Top row: the
8 input frames; bottom row: the 8 output frames, each with the object's centroid track of the
input drawn in white, so that how closely the output follows can be read off. A toy world, not
ZeroScope's real quality.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dmt.toyworld.demo import run_demo  # noqa: E402
from dmt.toyworld.measure import track_object  # noqa: E402

SCALE = 3  # 64 px frames shown at 192 px


def row(frames: torch.Tensor, label: str, track: np.ndarray) -> np.ndarray:
    cells = []
    for f in frames.numpy():
        img = cv2.resize((f * 255).astype(np.uint8), None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
        pts = (track * SCALE).astype(np.int32)
        cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, (255, 255, 255), 1, cv2.LINE_AA)
        cells.append(np.pad(img, ((0, 0), (2, 2), (0, 0)), constant_values=255))
    strip = np.concatenate(cells, 1)
    bar = np.full((26, strip.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, strip], 0)


def main() -> None:
    torch.set_num_threads(1)
    res = run_demo()
    track = track_object(res.source).positions
    img = np.concatenate([
        row(res.source, f"input: '{res.source_prompt}' on a held-out stop-and-go path (white: its centroid track)", track),
        row(res.output, f"output of the bundled TOY model: '{res.target_prompt}' - Motion-Fidelity "
                        f"{res.fidelity:.2f}, mean centroid distance {res.error_px:.1f} px", track),
    ], 0)
    out = REPO / "docs" / "example_strip.jpg"
    cv2.imwrite(str(out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print("wrote", out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
