"""Save / Load Positions (DMT): Wan's optimised rotary-position offsets (DiTFlow's positional
mode, dmt.transfer.rope_offsets) as files in ComfyUI/models/dmt_positions, so that one
reference's motion can be given to many prompts through Text to Video without guidance.
Thin adapters: the work is dmt.transfer.rope_offsets.save_positions / load_positions."""

from __future__ import annotations

import logging
import os

from comfy_api.latest import io

from .. import dmt
from ..dmt.transfer.rope_offsets import load_positions, save_positions
from .comfy_glue import CATEGORY, DMTPositions
from .customize_nodes import find_motion_file, list_motion_files, motion_roots, register_motion_folder, save_path

log = logging.getLogger("dmt")

POSITIONS_FOLDER = "dmt_positions"
register_motion_folder(POSITIONS_FOLDER)


class DMTSavePositions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DMTSavePositions",
            display_name="Save Positions (DMT)",
            category=CATEGORY,
            description=(
                f"Saves the positional offsets of a Wan sampler run with optimise 'positions' to ComfyUI/models/"
                f"{POSITIONS_FOLDER}/<name>.safetensors. Loaded again with 'Load Positions (DMT)' and connected to "
                "'Text to Video (DMT)', they make new videos move like the reference, for any prompt, without "
                "guidance (the same frame count and size as the reference)."
            ),
            is_output_node=True,
            inputs=[
                DMTPositions.Input("positions", tooltip="The 'positions' output of the SMM-Guided Sampler (optimise 'positions', Wan)."),
                io.String.Input("name", default="dmt_positions",
                                tooltip=(f"File name inside models/{POSITIONS_FOLDER} ('.safetensors' is added; sub-folders "
                                         "with '/'). An existing file of that name is replaced.")),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, positions, name: str) -> io.NodeOutput:
        if positions is None:
            raise dmt.InputError("No positions to save: set 'optimise' to 'positions' on the SMM-Guided Sampler "
                                 "(Wan only) and connect its 'positions' output.")
        path = save_path(name, POSITIONS_FOLDER)
        save_positions(path, positions)
        rel = os.path.relpath(path, motion_roots(POSITIONS_FOLDER)[0]).replace(os.sep, "/")
        log.info("DMT: saved positions to %s", path)
        return io.NodeOutput(ui={"text": [f"saved models/{POSITIONS_FOLDER}/{rel}"]})


class DMTLoadPositions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        files = list_motion_files(POSITIONS_FOLDER)
        return io.Schema(
            node_id="DMTLoadPositions",
            display_name="Load Positions (DMT)",
            category=CATEGORY,
            description=(
                f"Loads positional offsets saved by 'Save Positions (DMT)' from ComfyUI/models/{POSITIONS_FOLDER}; "
                "connect them to 'Text to Video (DMT)' with a Wan model. Press 'R' (refresh) after saving a new one."
            ),
            inputs=[
                io.Combo.Input("positions_name", options=files, default=files[0] if files else None,
                               tooltip=f"A DMT positions file (.safetensors) in models/{POSITIONS_FOLDER}."),
            ],
            outputs=[DMTPositions.Output("positions", display_name="positions",
                                         tooltip="The loaded offsets; connect to 'Text to Video (DMT)'.")],
        )

    @classmethod
    def fingerprint_inputs(cls, positions_name: str):
        try:
            path = find_motion_file(positions_name, POSITIONS_FOLDER, "Save Positions (DMT)")
            return f"{positions_name}:{path.stat().st_mtime_ns}"
        except dmt.DMTError:
            return f"{positions_name}:missing"

    @classmethod
    def execute(cls, positions_name: str) -> io.NodeOutput:
        return io.NodeOutput(load_positions(find_motion_file(positions_name, POSITIONS_FOLDER, "Save Positions (DMT)")))


NODES: list[type[io.ComfyNode]] = [DMTSavePositions, DMTLoadPositions]
