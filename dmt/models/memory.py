"""Memory options (opt-in; the defaults change nothing and run the authors' way).

- `gradient_checkpointing(unet, enabled)`: activation checkpointing of the guided pass (the
  truncated UNet forward + backward of the SMM optimisation). diffusers (0.42) declares
  UNet3DConditionModel `_supports_gradient_checkpointing = False` and its 3D blocks ignore their
  `gradient_checkpointing` flag, so this module checkpoints the UNet's layers itself, with
  `torch.utils.checkpoint` (non-reentrant), for the duration of the block only.
- `on_device(module, device)`: a module on `device` for the block, back where it was after.
- `offloaded(module, compute_device, idle_device)`: a module parked on `idle_device` and moved to
  `compute_device` only while its forward runs (the text encoder: three prompt encodings per edit).
- `low_memory_mode(model)`: all of the above for a ZeroScope (used by `pipeline.transfer(low_memory=True)`).

Every context manager restores the model exactly on every exit path (return, exception,
KeyboardInterrupt): devices, forward methods, hooks; nothing global is touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

#: Children of the UNet's down/mid/up blocks that are checkpointed one by one (diffusers'
#: usual granularity: every resnet, temporal conv, spatial and temporal transformer, resampler).
_LAYER_LISTS = ("resnets", "temp_convs", "attentions", "temp_attentions", "downsamplers", "upsamplers")
#: Marker set on a module whose forward is wrapped (so nested use never wraps twice).
_MARK = "_dmt_checkpointed_forward"


def checkpoint_targets(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """The UNet layers `gradient_checkpointing` wraps: `transformer_in` (the full-resolution
    temporal transformer after conv_in) and every layer of every down, mid and up block. Whole
    blocks are not wrapped: the feature hooks of `up_blocks[1]` stop the forward from inside it."""
    blocks = list(getattr(unet, "down_blocks", [])) + list(getattr(unet, "up_blocks", []))
    if getattr(unet, "mid_block", None) is not None:
        blocks.append(unet.mid_block)
    targets = [unet.transformer_in] if isinstance(getattr(unet, "transformer_in", None), torch.nn.Module) else []
    for block in blocks:
        for name in _LAYER_LISTS:
            layers = getattr(block, name, None)
            if layers is not None:
                targets.extend(layers)
    return targets


def is_checkpointing(unet: torch.nn.Module) -> bool:
    """Whether dmt's gradient checkpointing is active on `unet` (inside `gradient_checkpointing`)."""
    return any(_MARK in m.__dict__ for m in unet.modules())


def _checkpointed(forward):
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():  # no graph (inversion, targets, denoise): plain call
            return forward(*args, **kwargs)
        return _checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


@contextlib.contextmanager
def gradient_checkpointing(unet: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Recompute the UNet's layer activations in the backward pass instead of storing them (when
    `enabled`); everything is restored on exit.

    Less memory for the guided step (only each layer's input is kept across the forward), the
    same gradients (non-reentrant checkpointing: activations captured by hooks inside a wrapped
    layer still carry their graph), about one extra truncated forward of compute per Adam
    iteration. Only forwards under grad mode are checkpointed: no-grad passes are untouched.
    A model on which diffusers' own checkpointing is already on is left as it is.
    """
    if not enabled or bool(getattr(unet, "is_gradient_checkpointing", False)) or is_checkpointing(unet):
        yield
        return
    wrapped: list[torch.nn.Module] = []
    try:
        for layer in checkpoint_targets(unet):
            if "forward" in layer.__dict__:  # someone else's instance override: leave it alone
                continue
            layer.forward = _checkpointed(layer.forward)
            layer.__dict__[_MARK] = True
            wrapped.append(layer)
        yield
    finally:
        for layer in wrapped:
            layer.__dict__.pop("forward", None)
            layer.__dict__.pop(_MARK, None)


@contextlib.contextmanager
def native_gradient_checkpointing(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """diffusers' own gradient checkpointing of `model` (non-reentrant torch.utils.checkpoint
    around every block; Wan's transformer supports it) inside the block when `enabled`; off again
    on exit unless it was on before. The same gradients, less memory, one more forward per
    backward (a stopped forward recomputes only up to where it stopped: torch's early stop)."""
    if not enabled or bool(getattr(model, "is_gradient_checkpointing", False)):
        yield
        return
    model.enable_gradient_checkpointing()
    try:
        yield
    finally:
        model.disable_gradient_checkpointing()


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of the module's first parameter (or buffer); cpu for an empty module."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def _move(module: torch.nn.Module, device: torch.device | str) -> None:
    # Outside inference mode, so that moved weights are ordinary tensors (ComfyUI runs nodes in it).
    with torch.inference_mode(False), torch.no_grad():
        module.to(device)


@contextlib.contextmanager
def on_device(module: torch.nn.Module, device: torch.device | str) -> Iterator[torch.nn.Module]:
    """`module` on `device` inside the block, back on its previous device after (every exit path)."""
    before = module_device(module)
    if torch.device(device) == before:
        yield module
        return
    _move(module, device)
    try:
        yield module
    finally:
        _move(module, before)


def _to_device(obj, device: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


@contextlib.contextmanager
def offloaded(
    module: torch.nn.Module,
    compute_device: torch.device | str,
    idle_device: torch.device | str = "cpu",
) -> Iterator[torch.nn.Module]:
    """Keep `module` on `idle_device` and move it to `compute_device` only while its forward runs.

    Inside the block a forward pre-hook moves the module and its tensor inputs to the compute
    device and a forward hook moves the module back to the idle device (its outputs stay on the
    compute device). On exit the hooks are removed and the module is put back where it was,
    whatever the exit. For modules used through `forward` (the text encoder); for the VAE, whose
    encode/decode are not forwards, use `on_device` around the call.
    """
    compute_device, idle_device = torch.device(compute_device), torch.device(idle_device)
    before = module_device(module)
    handles = []

    def pre_hook(mod, args, kwargs):
        _move(mod, compute_device)
        return _to_device(args, compute_device), _to_device(kwargs, compute_device)

    def post_hook(mod, _args, _kwargs, output):
        _move(mod, idle_device)
        return output

    try:
        _move(module, idle_device)
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(post_hook, with_kwargs=True, always_call=True))
        yield module
    finally:
        for h in handles:
            h.remove()
        _move(module, before)


@contextlib.contextmanager
def low_memory_mode(model, idle_device: torch.device | str = "cpu") -> Iterator[None]:
    """For a whole edit on `model` (a dmt.ZeroScope): the text encoder is offloaded (on
    `idle_device` except while it encodes a prompt) and the VAE parked on `idle_device` (wrap
    encode/decode calls in `on_device(model.vae, model.device)`). Gradient checkpointing is a
    sampler setting (GuidanceSettings.gradient_checkpointing). Restores the placement on exit."""
    compute = model.device
    with contextlib.ExitStack() as stack:
        stack.enter_context(offloaded(model.text_encoder, compute, idle_device))
        stack.enter_context(on_device(model.vae, idle_device))
        yield


def hook_counts(modules: Iterable[torch.nn.Module]) -> dict[str, int]:
    """Number of hooks and instance `forward` overrides over all submodules of `modules` (for
    checking that a run left a model as loaded)."""
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
             "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called",
             "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
             "_load_state_dict_post_hooks")
    counts = {n: 0 for n in names}
    counts["forward_overrides"] = 0
    for root in modules:
        for m in root.modules():
            for n in names:
                counts[n] += len(getattr(m, n, {}) or {})
            counts["forward_overrides"] += int("forward" in m.__dict__ or _MARK in m.__dict__)
    return counts
