"""ZeroScope and Wan under ComfyUI's model management.

Each of the three weight-holding components (UNet or transformer, VAE, text encoder) of a
dmt.ZeroScope or dmt.Wan gets a
`comfy.model_patcher.ModelPatcher`, so ComfyUI's memory accounting (`current_loaded_models`)
knows them like its own models:

- before a heavy node runs, `load_models_gpu` loads the components it needs onto ComfyUI's
  device and, to make room, offloads or evicts other models (an SDXL run before ours, say);
- "Free model and node cache" (POST /free with unload_models) and ComfyUI's own evictions move
  ours back to the offload device (the CPU) like any other model;
- `--cpu` keeps everything on the CPU; `--lowvram` / `--novram` load only the UNet through
  ComfyUI and run dmt's low-memory mode (text encoder and VAE parked on the CPU except while
  they run, gradient checkpointing in the guided step; the same result, slower).

Loading and offloading only move whole tensors between devices (exact copies): no ModelPatcher
weight patches are used, so the weights stay bit-identical. ComfyUI's partial ("lowvram")
loading casts weights per layer only for its own comfy.ops layers; ZeroScope's diffusers layers
have no such casting, so our components are always loaded fully (force_full_load).

The DMT_MODEL socket keeps carrying the plain dmt.ZeroScope; the patchers ride along on the
instance (attribute `comfy_patchers`), created on first use, so a ZeroScope made elsewhere (e.g.
by another node of the pack) is managed too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import comfy.model_management as mm
import comfy.model_patcher
import torch

from .. import dmt
from ..dmt.models.memory import low_memory_mode, module_device, on_device

log = logging.getLogger("dmt")

COMPONENTS = ("unet", "vae", "text_encoder")
#: the denoiser's attribute per model kind; callers name it "unet" for either model
_DENOISER = {"zeroscope": "unet", "wan": "transformer"}
_ATTR = "comfy_patchers"


def _attr(model, part: str) -> str:
    """The model attribute holding component `part` ("unet" means the denoiser of either model)."""
    return _DENOISER.get(getattr(model, "kind", "zeroscope"), "unet") if part == "unet" else part


class _Component(torch.nn.Module):
    """A plain container around one diffusers/transformers module. ModelPatcher keeps its own
    `device` attribute on the model it wraps; diffusers' `device` is a read-only property."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module
        self.device = module_device(module)

    def get_dtype(self) -> torch.dtype:
        for p in self.module.parameters():
            return p.dtype
        return torch.float32


# One subclass per component only so that ComfyUI's log names them ("Requested to load ZeroScopeUNet").
class ZeroScopeUNet(_Component):
    pass


class ZeroScopeVAE(_Component):
    pass


class ZeroScopeTextEncoder(_Component):
    pass


class WanTransformer(_Component):
    pass


class WanVAE(_Component):
    pass


class WanTextEncoder(_Component):
    pass


_CLASSES = {"zeroscope": {"unet": ZeroScopeUNet, "vae": ZeroScopeVAE, "text_encoder": ZeroScopeTextEncoder},
            "wan": {"unet": WanTransformer, "vae": WanVAE, "text_encoder": WanTextEncoder}}


def default_devices(choice: str = "auto") -> tuple[torch.device, torch.device]:
    """(load device, offload device): where the weights run and where they wait. 'cpu' pins both
    to the CPU; 'auto' is ComfyUI's main device (the CPU under --cpu) and its offload device."""
    if choice == "cpu":
        cpu = torch.device("cpu")
        return cpu, cpu
    return mm.get_torch_device(), mm.unet_offload_device()


def manage(model: dmt.ZeroScope | dmt.Wan, load_device: torch.device, offload_device: torch.device) -> dict:
    """Attach one ModelPatcher per component to `model` (replacing earlier ones); returns them,
    keyed "unet" (the denoiser: ZeroScope's UNet or Wan's transformer), "vae", "text_encoder"."""
    classes = _CLASSES[getattr(model, "kind", "zeroscope")]
    patchers = {name: comfy.model_patcher.ModelPatcher(classes[name](getattr(model, _attr(model, name))),
                                                       load_device=load_device, offload_device=offload_device)
                for name in COMPONENTS}
    setattr(model, _ATTR, patchers)
    return patchers


def load_managed(load_fn, folder, name: str, dtype: str, device_choice: str):
    """Load a model with `load_fn(folder, dtype=..., device=...)` (dmt.load_zeroscope or
    dmt.load_wan) onto ComfyUI's offload device, name it `name` and attach its patchers: the
    heavy nodes then load it onto the GPU through ComfyUI (which makes room by offloading other
    models). Returns the model."""
    load_device, offload_device = default_devices(device_choice)
    model = load_fn(folder, dtype=dtype, device=offload_device)
    model.name = name
    manage(model, load_device, offload_device)
    return model


def patchers_of(model: dmt.ZeroScope) -> dict:
    """The model's patchers, created on first use (load device: ComfyUI's, or the CPU when the
    model sits on the CPU under --cpu); re-created when a component module was swapped."""
    patchers = getattr(model, _ATTR, None)
    if patchers is None or any(patchers[n].model.module is not getattr(model, _attr(model, n)) for n in COMPONENTS):
        here = module_device(getattr(model, _attr(model, "unet")))
        load, offload = default_devices("cpu" if here.type == "cpu" and mm.get_torch_device().type == "cpu" else "auto")
        patchers = manage(model, load, offload)
    return patchers


def low_vram() -> bool:
    """True under ComfyUI's --lowvram / --novram (or when it chose low-VRAM mode itself)."""
    return mm.vram_state in (mm.VRAMState.LOW_VRAM, mm.VRAMState.NO_VRAM)


def _repair_inference_tensors(module: torch.nn.Module) -> int:
    """ComfyUI may move our weights inside torch.inference_mode() (an eviction triggered by another
    node); such weights cannot be saved for backward. Replace them by ordinary copies (same values)."""
    fixed = 0
    with torch.inference_mode(False), torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_inference():
                t.data = t.data.clone()
                fixed += 1
    return fixed


def load(model: dmt.ZeroScope, parts: Sequence[str] = COMPONENTS, memory_required: int = 0) -> list:
    """Load `parts` of `model` onto their device through comfy.model_management.load_models_gpu
    (other models are offloaded or evicted to make room). Returns the patchers loaded."""
    patchers = patchers_of(model)
    chosen = [patchers[p] for p in parts]
    with torch.inference_mode(False):
        mm.load_models_gpu(chosen, memory_required=memory_required, force_full_load=True)
        for p in chosen:
            _repair_inference_tensors(p.model)
    return chosen


@contextlib.contextmanager
def in_use(model: dmt.ZeroScope, parts: Sequence[str] = COMPONENTS, memory_required: int = 0) -> Iterator[bool]:
    """Around a heavy node: the components it needs loaded through ComfyUI. Under low VRAM only
    the UNet is loaded and dmt's low-memory mode keeps the text encoder and the VAE on the CPU
    except while they run (yields True then: callers wrap VAE calls in `vae_on_device`)."""
    small = low_vram() and "unet" in parts
    load(model, ["unet"] if small else parts, memory_required)
    try:
        if small:
            with low_memory_mode(model, idle_device=patchers_of(model)["unet"].offload_device):
                yield True
        else:
            yield False
    finally:
        mm.soft_empty_cache()


def vae_on_device(model: dmt.ZeroScope, low_memory: bool):
    """Context for one VAE encode/decode: moves the VAE to the UNet's device only in low-memory mode."""
    return on_device(model.vae, model.device) if low_memory else contextlib.nullcontext()


def loaded_components(model: dmt.ZeroScope) -> list[str]:
    """Which components ComfyUI's current_loaded_models holds now (for tests and diagnostics)."""
    patchers = getattr(model, _ATTR, None) or {}
    held = [lm.model for lm in mm.current_loaded_models]
    return [n for n, p in patchers.items() if any(h is p for h in held)]
