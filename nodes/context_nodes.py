"""The "Context Options (DMT)" node: temporal context windows for long videos. A thin adapter:
the schedule and every use of it live in dmt.transfer.context."""

from __future__ import annotations

from comfy_api.latest import io

from .. import dmt
from ..dmt.settings import TRANSFER as S
from ..dmt.transfer.context import FUSE_MODES, MAX_CONTEXT_LENGTH, MIN_CONTEXT_LENGTH
from .comfy_glue import CATEGORY
from .validation import widget_range

# Carries a dmt.ContextOptions (frozen dataclass: hashable, part of ComfyUI's cache key).
DMTContext = io.Custom("DMT_CONTEXT")

CONTEXT_TIP = (
    "Optional: temporal context windows from 'Context Options (DMT)' for videos longer than the window. "
    "Connect the same one to Invert, Extract Targets and the Sampler (or only to Invert: the others then "
    "follow the inversion). A different schedule than the inversion's is refused."
)


class DMTContextOptions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTContextOptions",
            display_name="Context Options (DMT)",
            category=CATEGORY,
            description=(
                "Long videos: runs every model call of the motion transfer (inversion, targets, guided "
                "steps, denoising) on overlapping windows of frames and blends them, so GPU memory is bounded "
                "by the window instead of the video. A video of at most 'context_length' frames is one window: "
                "exactly the normal transfer. On Wan the windows act on latent frames (4 video frames each "
                "after the first). Connect the output to 'DDIM Invert Video (DMT)' (and optionally "
                "to 'Extract SMM Targets' and the sampler)."
            ),
            inputs=[
                # no "0 = off" here: leaving the context input unconnected is off
                io.Int.Input("context_length", **widget_range(S["context_length"], with_special=False),
                             tooltip=(f"Frames per window ({MIN_CONTEXT_LENGTH}-{MAX_CONTEXT_LENGTH}). ZeroScope was "
                                      "trained on 24-frame clips: 24 is the natural choice; Wan on 81 (on Wan a "
                                      "window of L frames is (L - 1) // 4 + 1 latent frames, at least 5 frames). "
                                      "Memory grows with it.")),
                io.Int.Input("context_overlap", **widget_range(S["context_overlap"]),
                             tooltip=("Frames shared by neighbouring windows (must be less than context_length). "
                                      "More overlap = smoother seams, more windows, slower.")),
                io.Combo.Input("fuse", options=list(FUSE_MODES), default=S["context_fuse"].default,
                               tooltip=("How overlapping windows are blended: 'pyramid' weights fall off toward a "
                                        "window's edges (default); 'flat' averages them equally.")),
            ],
            outputs=[DMTContext.Output("context", display_name="context",
                                       tooltip="The context-window settings; plug into Invert, Targets and Sampler.")],
        )

    @classmethod
    def execute(cls, context_length: int, context_overlap: int, fuse: str) -> io.NodeOutput:
        return io.NodeOutput(dmt.ContextOptions(length=context_length, overlap=context_overlap, fuse=fuse))

