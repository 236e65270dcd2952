"""Motion Fidelity (DMT) node (ComfyUI V3 schema): a thin adapter over dmt.metrics.motion_fidelity."""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io, ui

from ..dmt.metrics.motion_fidelity import draw_comparison, motion_fidelity
from ..dmt.settings import SCORE
from .validation import widget_range

log = logging.getLogger("dmt")


class DMTMotionFidelity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTMotionFidelity",
            display_name="Motion Fidelity (DMT)",
            category="DMT",
            description=(
                "Measures how well an edited video keeps the motion of the original one, even when "
                "the objects changed shape (the paper's Motion-Fidelity score). A grid of points is "
                "tracked through both videos and the directions of their movements are compared. "
                "The score runs from -1 (opposite motion) through 0 (unrelated motion) to 1 (the same "
                "motion); it is the mean of the two directions edited->original and original->edited "
                "(the paper prints their sum, from -2 to 2). The offline Lucas-Kanade tracker is used. "
                "Both videos need the same number of frames; their sizes may differ."
            ),
            inputs=[
                io.Image.Input(
                    "original", tooltip="The input video (frames as an IMAGE batch) whose motion was transferred."
                ),
                io.Image.Input(
                    "edited",
                    tooltip="The generated video (IMAGE batch), e.g. the SMM-Guided Sampler's output. "
                            "Must have as many frames as the original.",
                ),
                io.Int.Input(
                    "grid", **widget_range(SCORE["grid"]), step=1,
                    tooltip="Points per side of the tracking grid (grid x grid points). The authors use 55; "
                            "smaller is faster, larger is finer.",
                ),
                io.Mask.Input(
                    "mask", optional=True,
                    tooltip="Optional foreground mask of the original's first frame (white = object). Only "
                            "grid points inside its bounding box are tracked, in both videos, so the score "
                            "judges the object's motion rather than the background's.",
                ),
            ],
            outputs=[
                io.Float.Output(
                    "score", display_name="score",
                    tooltip="Motion fidelity in [-1, 1]: mean of edited->original and original->edited.",
                ),
                io.Image.Output(
                    "visualisation", display_name="visualisation",
                    tooltip="Original | edited side by side with the tracked points' trails and the score.",
                ),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(
        cls, original: torch.Tensor, edited: torch.Tensor, grid: int, mask: torch.Tensor | None = None
    ) -> io.NodeOutput:
        result = motion_fidelity(original, edited, grid=grid, mask=mask)
        summary = (
            f"motion fidelity {result.combined:.4f} (edited->original {result.edited_to_original:.4f}, "
            f"original->edited {result.original_to_edited:.4f}, paper sum {result.paper_sum:.4f}; "
            f"{result.num_original} / {result.num_edited} tracklets)"
        )
        log.info("Motion Fidelity (DMT): %s", summary)
        vis = draw_comparison(original, edited, result)
        return io.NodeOutput(result.combined, vis, ui=ui.PreviewText(summary))
