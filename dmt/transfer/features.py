"""Space-time features of the UNet decoder, captured with forward hooks.

The three activations of `up_blocks[1]` the authors guide with (their defaults):
  resnets.1.conv2   — the resnet branch before the residual add   (B·F, 1280, h/4, w/4)
  temp_convs.1      — the temporal conv layer's output            (B·F, 1280, h/4, w/4)
  upsamplers.0      — the block's upsampler output                (B·F, 1280, h/2, w/2)
(h, w: latent size; channels as in ZeroScope.) The SMM of an activation is its mean over the
spatial dims: one (F, D) matrix per activation and video.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch

from ..models.zeroscope import ZeroScope
from ..models.unet import autocast_for

FEATURE_PATHS: tuple[str, ...] = (
    "up_blocks.1.resnets.1.conv2",
    "up_blocks.1.temp_convs.1",
    "up_blocks.1.upsamplers.0",
)


class _StopForward(Exception):
    """Raised from the last hook to end the UNet forward early."""


def _submodules(unet: torch.nn.Module, paths: Sequence[str]) -> dict[str, torch.nn.Module]:
    """name → submodule, by direct lookup (no walk over the UNet's ~1,700 modules)."""
    found, unknown = {}, []
    for p in paths:
        try:
            found[p] = unet.get_submodule(p)
        except AttributeError:
            unknown.append(p)
    if unknown:
        raise KeyError(f"The UNet has no submodule(s) {unknown}; is this a ZeroScope UNet3DConditionModel?")
    return found


@contextlib.contextmanager
def capture_features(
    unet: torch.nn.Module, paths: Sequence[str] = FEATURE_PATHS, stop_after: str | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named submodules during forwards inside the block.

    Args:
        unet: the UNet (any nn.Module).
        paths: dotted submodule names, as in `named_modules()`.
        stop_after: a name in `paths`; its hook raises to stop the forward right after it (use
            `truncated_forward`, which catches that). None: the forward runs to the end.
    Yields:
        dict name → the latest output of that module (overwritten by every forward).
    Every hook is removed on exit, whatever the exit (return, exception, KeyboardInterrupt).
    """
    modules = _submodules(unet, paths)
    if stop_after is not None and stop_after not in paths:
        raise ValueError(f"stop_after={stop_after!r} is not one of the captured paths {list(paths)}.")
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            store[name] = output[0] if isinstance(output, tuple) else output
            if name == stop_after:
                raise _StopForward

        return hook

    try:
        for p in paths:
            handles.append(modules[p].register_forward_hook(make_hook(p)))
        yield store
    finally:
        for h in handles:
            h.remove()


TruncatedForward = Callable[[torch.Tensor, int, torch.Tensor], dict[str, torch.Tensor]]


@contextlib.contextmanager
def truncated_unet(model: ZeroScope, paths: Sequence[str] = FEATURE_PATHS) -> Iterator[TruncatedForward]:
    """`truncated_forward` as a function that can be called many times inside the block.

    The submodules are looked up and the hooks registered once for the block instead of once
    per call (the guided step calls it 10 times per timestep). The
    hooks record only while the yielded function runs its forward (not, e.g., when gradient
    checkpointing recomputes a layer in the backward pass), and the function hands its
    activations over without keeping a reference. Same operations, same numbers as
    `truncated_forward`. Every hook is removed on exit, whatever the exit.

    Yields:
        run(latents, t, text) → dict name → activation (B·F, D, h', w') in the autocast dtype.
    """
    paths = tuple(paths)
    if not paths:
        raise ValueError("No feature paths given.")
    modules = _submodules(model.unet, paths)
    last = paths[-1]
    store: dict[str, torch.Tensor] = {}
    recording = False

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            if not recording:
                return
            store[name] = output[0] if isinstance(output, tuple) else output
            if name == last:
                raise _StopForward

        return hook

    def run(latents: torch.Tensor, t: int, text: torch.Tensor) -> dict[str, torch.Tensor]:
        nonlocal recording
        store.clear()
        recording = True
        try:
            with autocast_for(model):
                model.unet(latents, t, encoder_hidden_states=text, return_dict=False)
        except _StopForward:
            pass
        else:
            raise RuntimeError(f"The UNet forward never reached '{last}'.")
        finally:
            recording = False
        out = dict(store)
        store.clear()
        return out

    handles = []
    try:
        for p in paths:
            handles.append(modules[p].register_forward_hook(make_hook(p)))
        yield run
    finally:
        store.clear()
        for h in handles:
            h.remove()


def truncated_forward(
    model: ZeroScope,
    latents: torch.Tensor,
    t: int,
    text: torch.Tensor,
    paths: Sequence[str] = FEATURE_PATHS,
) -> dict[str, torch.Tensor]:
    """Run the UNet only up to the last of `paths` and return those activations.

    The forward stops after `paths[-1]` (which must be the last to run), so nothing after
    up_blocks[1] is computed; gradients w.r.t. `latents` equal those of a full forward. For
    many calls in a row use `truncated_unet` (hooks registered once).
    Returns:
        dict name → activation (B·F, D, h', w') in the autocast dtype.
    """
    with truncated_unet(model, paths) as run:
        return run(latents, t, text)


def spatial_marginal_mean(activation: torch.Tensor, num_frames: int) -> torch.Tensor:
    """SMM: mean over the spatial dims of a (B·F, D, h, w) activation → (B, F, D).

    The mean runs in the activation's dtype (as the authors'); the result is returned as float32.
    """
    bf, d = activation.shape[:2]
    if bf % num_frames:
        raise ValueError(f"Activation batch {bf} is not a multiple of {num_frames} frames.")
    return activation.mean(dim=(-2, -1)).reshape(bf // num_frames, num_frames, d).float()
