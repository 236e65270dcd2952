"""Load Wan (DMT): Wan 2.1 text-to-video as the second base model of the DMT nodes. It gives the
same DMT_MODEL socket as Load ZeroScope; the Invert / Targets / Init / Sampler nodes run Wan's
stages (dmt.transfer.wan_stages) and the customization nodes Wan's objective (dmt.models.interface)
when they get it. Thin adapter: the work is dmt.load_wan."""

from __future__ import annotations

from pathlib import Path

import folder_paths
from comfy_api.latest import io

from .. import dmt
from ..dmt.models.wan import WAN_LICENCE, wan_missing_files, download_wan
from ..dmt.toyworld.card import BUNDLED_WAN_MODEL, WAN_TOY_ENTRY

from . import model_management
from .comfy_glue import CATEGORY, DMTModel, find_chosen_folder, find_model_folder, list_model_folders

WAN_FOLDER = dmt.DEFAULT_WAN_MODEL.split("/")[-1]  # Wan2.1-T2V-1.3B-Diffusers
WAN_DOWNLOAD_ENTRY = f"{WAN_FOLDER} (download {dmt.DEFAULT_WAN_MODEL} on first use)"


def _download_folder() -> Path:
    """models/diffusers/Wan2.1-T2V-1.3B-Diffusers in ComfyUI's first diffusers folder."""
    return Path(folder_paths.get_folder_paths("diffusers")[0]) / WAN_FOLDER


class DMTLoadWan(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        folders = list_model_folders("wan")
        options = folders + [WAN_DOWNLOAD_ENTRY, WAN_TOY_ENTRY]
        return io.Schema(
            node_id="DMTLoadWan",
            display_name="Load Wan (DMT)",
            category=CATEGORY,
            description=(
                "Loads Wan 2.1 text-to-video (1.3B) as the base model of motion transfer, from a diffusers folder in "
                "ComfyUI/models/diffusers/. Pick the 'download' entry to fetch "
                f"{dmt.DEFAULT_WAN_MODEL} (tens of GB, most of it the UMT5-XXL text encoder) into models/diffusers/"
                f"{WAN_FOLDER} the first time. The DMT nodes run Wan's own stages with it: flow-matching inversion, "
                f"attention-motion-flow or SMM guidance (the sampler's 'guidance'), 4k+1 frames, sizes in multiples "
                f"of 16; Train Motion / Apply Motion / Text to Video also take it. Wan's weights are licensed "
                f"{WAN_LICENCE}. The 'dmt-toyworld-wan' entry is the pack's own tiny toy Wan (64x64, 9 frames, "
                f"coloured shapes; bundled, offline) for trying the nodes on a CPU."
            ),
            inputs=[
                io.Combo.Input(
                    "model_name", options=options,
                    default=WAN_FOLDER if WAN_FOLDER in folders else WAN_DOWNLOAD_ENTRY,
                    tooltip=("A Wan2.1-T2V diffusers folder (transformer/, vae/, text_encoder/, tokenizer/, "
                             "scheduler/) under models/diffusers/, or the download entry, which fills models/diffusers/"
                             f"{WAN_FOLDER} from the Hugging Face hub when it is missing or incomplete, or the bundled "
                             "toy Wan (offline; only knows coloured balls, squares and triangles). The image-to-"
                             "video, 14B and VACE variants are refused with what they are."),
                ),
                io.Combo.Input(
                    "dtype", options=["bfloat16", "float16", "float32"], default="bfloat16",
                    tooltip="Precision of the transformer and text encoder. bfloat16 is Wan's own; use float32 on a CPU.",
                ),
                io.Combo.Input(
                    "device", options=["auto", "cpu"], default="auto",
                    tooltip=("'auto' uses ComfyUI's main device, managed like ComfyUI's own models (loaded when a DMT "
                             "node runs, offloaded to make room for others); 'cpu' forces the CPU (very slow)."),
                ),
            ],
            outputs=[DMTModel.Output("model", display_name="model",
                                     tooltip="The loaded Wan model (transformer, VAE, text encoder, scheduler).")],
        )

    @classmethod
    def execute(cls, model_name: str, dtype: str, device: str) -> io.NodeOutput:
        if model_name == WAN_TOY_ENTRY:
            folder = BUNDLED_WAN_MODEL
        elif model_name == WAN_DOWNLOAD_ENTRY:
            folder = find_model_folder(WAN_FOLDER) or _download_folder()
            if wan_missing_files(folder):
                download_wan(dmt.DEFAULT_WAN_MODEL, folder)
        else:
            folder = find_chosen_folder(model_name, "a Wan2.1-T2V diffusers folder", WAN_DOWNLOAD_ENTRY)
        return io.NodeOutput(model_management.load_managed(dmt.load_wan, folder, model_name, dtype, device))


NODES: list[type[io.ComfyNode]] = [DMTLoadWan]
