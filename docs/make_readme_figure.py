"""Make docs/example_strip.jpg for the README (run from the repository root, CPU, ~1 min):

    python docs/make_readme_figure.py

Top row: frames 0, 8, 16, 23 of the pack's example clip (the input). Bottom row: the same frames
of what the real pipeline returns for it with the tests' TINY RANDOM-WEIGHT model (no trained
weights are downloaded here), labelled as such: it shows the plumbing, not the method's quality.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dmt  # noqa: E402
from dmt.io.example_clip import EXAMPLE_CLIP_NAME, EXAMPLE_SOURCE_PROMPT  # noqa: E402
from dmt.models.random_model import save_random_model  # noqa: E402

PICK = (0, 8, 16, 23)
CELL = (288, 160)


def row(frames: torch.Tensor, label: str) -> np.ndarray:
    cells = [cv2.resize((frames[i].numpy() * 255).astype(np.uint8), CELL, interpolation=cv2.INTER_AREA) for i in PICK]
    strip = np.concatenate([np.pad(c, ((0, 0), (2, 2), (0, 0)), constant_values=255) for c in cells], 1)
    bar = np.full((26, strip.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, strip], 0)


def main() -> None:
    torch.manual_seed(0)
    clip = dmt.read_video(REPO / "example_inputs" / EXAMPLE_CLIP_NAME)
    with tempfile.TemporaryDirectory() as tmp:
        model = dmt.load_zeroscope(save_random_model(Path(tmp) / "tiny"), "float32", "cpu")
    frames = dmt.prepare_frames(clip.frames, 128, 72, 24)
    result = dmt.transfer(model, frames, EXAMPLE_SOURCE_PROMPT, "a red sports car driving on a road", num_steps=10,
                          num_inversion_steps=50, settings=dmt.GuidanceSettings(optimization_steps=2))
    img = np.concatenate([
        row(clip.frames, "input: example_inputs/dmt_example_car.mp4 (synthetic), frames 0, 8, 16, 23"),
        row(result.frames, "output of the pipeline with a TINY RANDOM-WEIGHT test model (noise; not ZeroScope)"),
    ], 0)
    out = REPO / "docs" / "example_strip.jpg"
    cv2.imwrite(str(out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print("wrote", out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
