"""ComfyUI adapters shared by the DMT nodes: custom socket types, model-folder lookup, devices,
progress bars, Cancel, and latent previews (the library's SD 1.x latent→RGB projection)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

import comfy.model_management
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

from .. import dmt

log = logging.getLogger("dmt")

# Socket types. They carry the library's dataclasses: dmt.ZeroScope, dmt.Inversion, dmt.Targets.
DMTModel = io.Custom("DMT_MODEL")
DMTInversion = io.Custom("DMT_INVERSION")
DMTTargets = io.Custom("DMT_TARGETS")
DMTPositions = io.Custom("DMT_POSITIONS")  # dmt.transfer.rope_offsets.PositionMotion (Wan)

CATEGORY = "DMT"
DEFAULT_FOLDER = "zeroscope_v2_576w"
DOWNLOAD_ENTRY = f"{DEFAULT_FOLDER} (download {dmt.DEFAULT_MODEL} on first use)"


# --- model folders -------------------------------------------------------------------------

def diffusers_roots() -> list[str]:
    """The folders ComfyUI knows as "diffusers" (models/diffusers plus extra_model_paths)."""
    return [p for p in folder_paths.get_folder_paths("diffusers") if os.path.isdir(p)]


def list_model_folders(kind: str = "zeroscope") -> list[str]:
    """Folder names (relative, '/'-separated) under the diffusers roots that look like a
    diffusers model: they hold model_index.json, a unet/ or a transformer/ folder. kind "wan":
    only the folders dmt.models.folders.identify_folder calls Wan (its unsupported variants
    included: the loader then says what they are); "zeroscope": every other one."""
    from ..dmt.models.folders import identify_folder

    names: set[str] = set()
    for root in diffusers_roots():
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            rel = os.path.relpath(dirpath, root)
            depth = 0 if rel == "." else rel.count(os.sep) + 1
            if rel != "." and ("model_index.json" in filenames or "unet" in dirnames or "transformer" in dirnames):
                if (identify_folder(dirpath).kind == "wan") == (kind == "wan"):
                    names.add(rel.replace(os.sep, "/"))
                dirnames[:] = []  # do not descend into a model's components
            elif depth >= 3:
                dirnames[:] = []
    return sorted(names)


def check_relative_name(name: str, what: str, folder: str, error: type[Exception]) -> str:
    """Refuse names that could reach outside `folder` (absolute paths, drives, '..'); returns the
    name normalised to a relative '/'-separated path. `what` names the thing in the message."""
    if not isinstance(name, str) or not name.strip():
        raise error(f"No {what} was chosen.")
    posix, windows = PurePosixPath(name.replace("\\", "/")), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in posix.parts or ":" in name:
        raise error(
            f"{what.capitalize()} '{name}' is not a name under ComfyUI's {folder} folder; "
            f"absolute paths and '..' are refused."
        )
    return "/".join(p for p in posix.parts if p not in ("", "."))


def check_folder_name(name: str) -> str:
    """Refuse model names that could reach outside the models folder; returns the name normalised."""
    return check_relative_name(name, "model folder", "models/diffusers", dmt.ModelLoadError)


def find_model_folder(name: str) -> Path | None:
    """The existing folder `name` under one of the diffusers roots, or None. The result always
    lies inside that root (checked on the normalised path)."""
    rel = check_folder_name(name)
    for root in diffusers_roots():
        root_abs = os.path.abspath(root)
        candidate = os.path.abspath(os.path.join(root_abs, rel))
        if os.path.commonpath([candidate, root_abs]) != root_abs:
            raise dmt.ModelLoadError(f"Model name '{name}' points outside the models folder.")
        if os.path.isdir(candidate):
            return Path(candidate)
    return None


def find_chosen_folder(model_name: str, expected: str, download_entry: str) -> Path:
    """The folder of a loader's `model_name` entry, or ModelLoadError saying where to put
    `expected` (e.g. "a ZeroScope diffusers folder") or to choose `download_entry`."""
    folder = find_model_folder(model_name)
    if folder is None:
        raise dmt.ModelLoadError(
            f"Model folder '{model_name}' was not found in {folder_paths.get_folder_paths('diffusers')}. "
            f"Put {expected} there, or choose '{download_entry}'."
        )
    return folder


def default_download_folder() -> Path:
    """models/diffusers/zeroscope_v2_576w in ComfyUI's first diffusers folder."""
    roots = folder_paths.get_folder_paths("diffusers")
    return Path(roots[0]) / DEFAULT_FOLDER


# --- devices --------------------------------------------------------------------------------

def resolve_device(choice: str) -> torch.device:
    if choice == "cpu":
        return torch.device("cpu")
    return comfy.model_management.get_torch_device()


@contextlib.contextmanager
def run_scope(model: "dmt.ZeroScope | None" = None, parts=("unet", "vae", "text_encoder")) -> Iterator[bool]:
    """Around every heavy node: with `model`, load the components in `parts` through ComfyUI's
    model management first (other models make room; see nodes/model_management.py); free the
    device cache afterwards, however the run ends. Yields True when ComfyUI runs in low-VRAM mode
    and the VAE waits on the CPU (wrap VAE calls in model_management.vae_on_device)."""
    from . import model_management

    try:
        if model is None:
            yield False
        else:
            with model_management.in_use(model, parts) as low_memory:
                yield low_memory
    finally:
        comfy.model_management.soft_empty_cache()


# --- progress, cancel, previews -------------------------------------------------------------

def check_interrupt() -> None:
    """ComfyUI's Cancel: raises InterruptProcessingException when the user cancelled."""
    comfy.model_management.throw_exception_if_processing_interrupted()


def preview_image(latent: torch.Tensor):
    """("JPEG", PIL image, max size) of the first frame of a (1, 4, F, h, w) latent, from the
    library's SD 1.x latent→RGB projection; None when previews cannot be made."""
    try:
        from PIL import Image

        rgb = dmt.latent_preview(latent, frame=0)
        return "JPEG", Image.fromarray((rgb * 255).to(torch.uint8).numpy()), 512
    except Exception as exc:  # a preview must never break a run
        log.debug("DMT preview failed: %s", exc)
        return None


def stage_group(stage: str) -> str:
    """The sampler's "guidance" and "denoise" steps share one count; other stages count alone."""
    return "sampling" if stage in ("guidance", "denoise") else stage


class Progress:
    """The library's on_step callback driving one ComfyUI progress bar through several stages.

    ProgressBar.update_absolute raises InterruptProcessingException on Cancel in a running
    server, so every step is also a cancellation point. With `previews`, steps that carry a
    latent send a live preview image. `then` gives the step counts of the stages that follow the
    first one, by stage group (e.g. {"decode": 24} after sampling), so one bar runs from 0 to the
    end of the last stage instead of restarting at every stage.
    """

    def __init__(self, total: int = 1, previews: bool = False, then: dict[str, int] | None = None):
        self.bar = comfy.utils.ProgressBar(max(int(total), 1))
        self.previews = previews
        self.later = dict(then or {})
        self.group: str | None = None
        self.base = 0
        self.group_total = 0

    def __call__(self, stage: str, step: int, total: int, latent: torch.Tensor | None) -> None:
        group = stage_group(stage)
        if group != self.group:
            if self.group is not None:
                self.base += self.group_total
            self.later.pop(group, None)
            self.group = group
        self.group_total = total
        preview = preview_image(latent) if self.previews and latent is not None else None
        self.bar.update_absolute(self.base + step, self.base + total + sum(self.later.values()), preview=preview)


def node_title(node_cls) -> str:
    """A node's display name as the user sees it (for messages that say which node to change)."""
    try:
        return node_cls.define_schema().display_name or node_cls.__name__
    except Exception:  # a message must never fail
        return node_cls.__name__
