"""The trainable set of motion customization and its two parameterisations.

What is tuned (Materzyńska et al., "Customizing Motion in Text-to-Video Diffusion Models"): the
temporal convolutions, the temporal attentions and the key/value projections of the spatial
cross-attention. In diffusers' UNet3DConditionModel these modules are

- every ``*.temp_convs.<i>`` (TemporalConvLayer),
- every ``*.temp_attentions.<i>`` (TransformerTemporalModel) and ``transformer_in`` (the
  temporal transformer after conv_in),
- ``*.attentions.<i>.transformer_blocks.<j>.attn2.to_k`` and ``.to_v`` of every spatial
  Transformer2DModel (the cross-attention, where the text, and so the token, enters).

Everything else (the rest of the UNet, the VAE and the text encoder) stays frozen.

On Wan 2.1's transformer (a DiT: no temporal layers of their own; the self-attention over all
frames' patches carries the motion) the same roles are played by
- every ``blocks.<i>.attn1`` (the space-time self-attention: to_q, to_k, to_v, to_out and its
  q/k norms),
- ``blocks.<i>.attn2.to_k`` and ``.to_v`` (the text cross-attention's key/value: the token).
The rules are chosen by the denoiser's class (`denoiser_kind`).

Parameterisations:
- ``full`` (the paper's): every parameter of those modules (weights, biases, norms) is tuned.
  The shared weights are never written: each one gets an fp32 *delta* through
  ``torch.nn.utils.parametrize`` (weight = base + delta), so the optimiser works on fp32 deltas
  even for an fp16 model, and the motion file holds exactly the deltas.
- ``lora`` (default): a LoRA adapter (``peft``) of rank r on every Linear and Conv3d inside those
  modules (norms and biases have no low-rank form and stay frozen). ΔW = (alpha / r) · B A.

`trainable(unet, mode)` installs either for the duration of a block and puts the UNet back
exactly as it was on every exit path (modules, parameter objects, requires_grad flags, no grads).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.nn.utils import parametrize

from ..errors import InputError

from ..settings import TRAIN

MODES: tuple[str, ...] = TRAIN["mode"].choices  # ("lora", "full")
DEFAULT_RANK: int = TRAIN["rank"].default  # 32
ADAPTER_NAME = "dmt_motion"

_TEMPORAL = re.compile(r"(^|\.)(temp_convs|temp_attentions)\.\d+$")
_SPATIAL_KV = re.compile(r"(^|\.)attentions\.\d+\.transformer_blocks\.\d+\.attn2\.to_[kv]$")
_WAN_SELF = re.compile(r"(^|\.)blocks\.\d+\.attn1$")
_WAN_CROSS_KV = re.compile(r"(^|\.)blocks\.\d+\.attn2\.to_[kv]$")


def denoiser_kind(denoiser: torch.nn.Module) -> str:
    """"wan" for Wan's WanTransformer3DModel, else "zeroscope" (the UNet3DConditionModel)."""
    return "wan" if type(denoiser).__name__ == "WanTransformer3DModel" else "zeroscope"


def is_trainable_module(name: str, kind: str = "zeroscope") -> bool:
    """Whether the denoiser module called `name` is one of the roots of the trainable set of a
    `kind` model ("zeroscope": the UNet's rules, "wan": the transformer's)."""
    if kind == "wan":
        return bool(_WAN_SELF.search(name)) or bool(_WAN_CROSS_KV.search(name))
    return name == "transformer_in" or bool(_TEMPORAL.search(name)) or bool(_SPATIAL_KV.search(name))


def trainable_modules(unet: torch.nn.Module) -> list[str]:
    """Names of the trainable roots in `unet` (ZeroScope: temp_convs.i, temp_attentions.i,
    transformer_in and the spatial attn2.to_k / attn2.to_v; Wan: blocks.i.attn1 and
    blocks.i.attn2.to_k / to_v), in module order."""
    kind = denoiser_kind(unet)
    return [n for n, _ in unet.named_modules() if n and is_trainable_module(n, kind)]


def _under(name: str, roots: list[str]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def trainable_parameter_names(unet: torch.nn.Module) -> list[str]:
    """Every UNet parameter tuned in `full` mode (all parameters under the trainable roots)."""
    roots = trainable_modules(unet)
    return [n for n, _ in unet.named_parameters() if _under(n.rsplit(".", 1)[0], roots)]


def lora_target_names(unet: torch.nn.Module) -> list[str]:
    """The Linear and Conv3d modules under the trainable roots: where `lora` mode puts adapters."""
    roots = trainable_modules(unet)
    return [n for n, m in unet.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv3d)) and _under(n, roots)]


def check_mode(mode: str, rank: int) -> None:
    """Raise InputError for an unknown mode or (lora) a rank outside 1..512 (dmt.settings.TRAIN)."""
    if mode not in MODES:
        raise InputError(f"Training mode must be one of {', '.join(MODES)}; got '{mode}'.")
    if mode == "lora":
        TRAIN["rank"].check(rank)


class _AddDelta(torch.nn.Module):
    """Parametrization weight = base + delta (delta an fp32 Parameter, zero at start)."""

    def __init__(self, like: torch.Tensor):
        super().__init__()
        self.delta = torch.nn.Parameter(torch.zeros(like.shape, dtype=torch.float32, device=like.device))

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        return base + self.delta


@dataclass
class TrainableSet:
    """What the optimiser trains while `trainable(...)` is active.

    params: name → fp32 Parameter, in a fixed order (the optimiser's order). Names are the keys of
        the motion file: ``<module>.lora_A`` / ``<module>.lora_B`` (lora) or ``<unet parameter>``
        (full, the delta of that parameter).
    mode, rank, alpha: the parameterisation (rank/alpha only for lora; ΔW = alpha/rank · B A).
    targets: the LoRA target modules (lora) or tuned parameter names (full).
    """

    mode: str
    params: dict[str, torch.nn.Parameter]
    targets: list[str]
    rank: int | None = None
    alpha: float | None = None
    base_shapes: dict[str, list[int]] = field(default_factory=dict)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Detached fp32 CPU copies of the trained tensors (what a motion file stores)."""
        return {k: v.detach().float().cpu().clone().contiguous() for k, v in self.params.items()}

    @torch.no_grad()
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy saved tensors into the trainable parameters (names and shapes must match)."""
        if set(tensors) != set(self.params):
            raise InputError("The saved training state does not hold the same trainable tensors as this run.")
        for k, p in self.params.items():
            if tuple(tensors[k].shape) != tuple(p.shape):
                raise InputError(f"Saved tensor '{k}' has shape {tuple(tensors[k].shape)}, expected {tuple(p.shape)}.")
            p.copy_(tensors[k].to(p.device, p.dtype))


@contextlib.contextmanager
def _requires_grad_restored(module: torch.nn.Module) -> Iterator[None]:
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        yield
    finally:
        for p, flag, g in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = g


@contextlib.contextmanager
def _full(unet: torch.nn.Module) -> Iterator[TrainableSet]:
    names = trainable_parameter_names(unet)
    registered: list[tuple[torch.nn.Module, str]] = []
    orders: dict[int, tuple[torch.nn.Module, list[str]]] = {}
    params: dict[str, torch.nn.Parameter] = {}
    shapes: dict[str, list[int]] = {}
    try:
        with torch.inference_mode(False):
            for p in unet.parameters():
                p.requires_grad_(False)
            for name in names:
                mod_name, attr = name.rsplit(".", 1)
                module = unet.get_submodule(mod_name)
                base = getattr(module, attr)
                orders.setdefault(id(module), (module, list(module._parameters)))
                shapes[name] = list(base.shape)
                add = _AddDelta(base)
                parametrize.register_parametrization(module, attr, add, unsafe=True)
                registered.append((module, attr))
                params[name] = add.delta
        yield TrainableSet("full", params, names, base_shapes=shapes)
    finally:
        for module, attr in reversed(registered):
            parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
        for module, order in orders.values():  # re-registration appends: restore the original order
            for k in order:
                module._parameters[k] = module._parameters.pop(k)


@contextlib.contextmanager
def _lora(unet: torch.nn.Module, rank: int, alpha: float, seed: int) -> Iterator[TrainableSet]:
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    targets = lora_target_names(unet)
    had_config = "peft_config" in unet.__dict__
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0,
                        init_lora_weights=True, bias="none")
    shapes = {t + ".weight": list(unet.get_submodule(t).weight.shape) for t in targets}
    lora_model = None
    try:
        with torch.inference_mode(False), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))  # peft draws lora_A from the global RNG; keep it reproducible
            lora_model = LoraModel(unet, config, ADAPTER_NAME)
        params: dict[str, torch.nn.Parameter] = {}
        for t in targets:
            layer = unet.get_submodule(t)
            params[t + ".lora_A"] = layer.lora_A[ADAPTER_NAME].weight
            params[t + ".lora_B"] = layer.lora_B[ADAPTER_NAME].weight
        for p in params.values():
            p.requires_grad_(True)
        yield TrainableSet("lora", params, targets, rank=rank, alpha=float(alpha), base_shapes=shapes)
    finally:
        if lora_model is not None:
            lora_model.unload()
        if not had_config:
            unet.__dict__.pop("peft_config", None)


@contextlib.contextmanager
def trainable(
    unet: torch.nn.Module, mode: str = "lora", rank: int = DEFAULT_RANK, alpha: float | None = None, seed: int = 0
) -> Iterator[TrainableSet]:
    """Make the motion layers of `unet` trainable for the duration of the block.

    Args:
        unet: a diffusers UNet3DConditionModel (the shared model: it is restored on exit).
        mode: "lora" (peft adapters, rank `rank`, alpha `alpha` or rank) or "full" (fp32 deltas of
            every parameter of the trainable modules).
        seed: seed of the LoRA A initialisation (B starts at zero, so training starts at the base model).
    Yields:
        TrainableSet: the fp32 parameters to optimise. Every other UNet parameter has
        requires_grad=False inside the block.
    On exit (also on exceptions) the adapters / parametrizations are removed, the original
    parameter objects are back in place untouched, and each parameter's requires_grad and grad
    are what they were.
    """
    check_mode(mode, rank)
    with _requires_grad_restored(unet):
        if mode == "full":
            with _full(unet) as ts:
                yield ts
        else:
            with _lora(unet, int(rank), float(alpha if alpha is not None else rank), seed) as ts:
                yield ts
