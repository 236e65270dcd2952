"""What a diffusers model folder holds, read from its JSON files alone (no weights loaded).

The loaders ask this before anything else, so a folder of the other model or of an unsupported
variant gets a message that names what it is and what is expected, instead of a list of
"missing" files or a shape error deep inside diffusers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: Wan2.1-T2V-1.3B's transformer: 30 layers of width 1536 (12 heads of 128).
WAN_1_3B_LAYERS, WAN_1_3B_DIM = 30, 1536
#: Wan2.1-T2V-14B's transformer: 40 layers of width 5120 (40 heads of 128).
WAN_14B_LAYERS, WAN_14B_DIM = 40, 5120


@dataclass(frozen=True)
class FolderInfo:
    """What `identify_folder` found.

    kind: "zeroscope", "wan", "other" (a diffusers folder of another pipeline) or "unknown"
        (nothing recognisable: an empty or foreign folder; the loaders then list missing files).
    description: human words for it, e.g. "Wan2.1 image-to-video (I2V)".
    supported: False for a recognised variant that dmt cannot run (Wan I2V, 14B, Wan 2.2, VACE).
    """

    kind: str
    description: str
    supported: bool = True


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def identify_folder(folder: str | Path) -> FolderInfo:
    """Tell a ZeroScope folder from a Wan folder (and Wan's variants) by its JSON files.

    Reads model_index.json, unet/config.json, transformer/config.json, vae/config.json and looks
    for image_encoder/ and transformer_2/. Unreadable JSON counts as absent.
    """
    folder = Path(folder)
    index = _read_json(folder / "model_index.json")
    pipeline = str(index.get("_class_name") or "")
    unet = _read_json(folder / "unet" / "config.json")
    tr = _read_json(folder / "transformer" / "config.json")
    vae = _read_json(folder / "vae" / "config.json")

    is_wan = (pipeline.startswith("Wan") or str(tr.get("_class_name", "")).startswith("Wan")
              or vae.get("_class_name") == "AutoencoderKLWan")
    if is_wan:
        return _identify_wan(folder, pipeline, tr, vae, index)
    if pipeline == "TextToVideoSDPipeline" or unet.get("_class_name") == "UNet3DConditionModel":
        return FolderInfo("zeroscope", "ZeroScope (UNet3DConditionModel in unet/)")
    if pipeline:
        return FolderInfo("other", f"a diffusers {pipeline} folder", supported=False)
    return FolderInfo("unknown", "an unrecognised folder", supported=False)


def _identify_wan(folder: Path, pipeline: str, tr: dict, vae: dict, index: dict) -> FolderInfo:
    heads, head_dim = tr.get("num_attention_heads"), tr.get("attention_head_dim")
    dim = heads * head_dim if isinstance(heads, int) and isinstance(head_dim, int) else None
    layers = tr.get("num_layers")
    i2v = [why for why, found in (
        ("an image_encoder/ folder", (folder / "image_encoder").is_dir()),
        (f"model_index.json names {pipeline}", "Image" in pipeline),
        (f"its transformer takes image embeddings (image_dim {tr.get('image_dim')})", tr.get("image_dim") is not None),
        ("its transformer takes 36 input channels (16 noise + 20 image-condition)", tr.get("in_channels") == 36),
    ) if found]
    if i2v:
        return FolderInfo("wan", f"Wan image-to-video (I2V: {'; '.join(i2v)})", supported=False)
    if "VACE" in pipeline or "VACE" in str(tr.get("_class_name", "")):
        return FolderInfo("wan", "Wan VACE (a video-editing variant with control inputs)", supported=False)
    if "Animate" in pipeline or "Animate" in str(tr.get("_class_name", "")):
        return FolderInfo("wan", "Wan Animate (a character-animation variant)", supported=False)
    if (folder / "transformer_2").is_dir() or index.get("boundary_ratio") is not None:
        return FolderInfo("wan", "Wan2.2 A14B (two expert transformers)", supported=False)
    if tr.get("in_channels") == 48 or vae.get("z_dim") == 48:
        return FolderInfo("wan", "Wan2.2 TI2V-5B (48 latent channels)", supported=False)
    if layers == WAN_14B_LAYERS or dim == WAN_14B_DIM:
        return FolderInfo("wan", f"Wan2.1-T2V-14B ({layers} layers of width {dim})", supported=False)
    if layers == WAN_1_3B_LAYERS and dim == WAN_1_3B_DIM:
        return FolderInfo("wan", "Wan2.1-T2V-1.3B")
    if layers is None or dim is None:
        return FolderInfo("wan", "Wan2.1 text-to-video")
    return FolderInfo("wan", f"Wan2.1 text-to-video ({layers} layers of width {dim})")
