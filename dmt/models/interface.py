"""One model interface for the code that serves both base models (ZeroScope and Wan 2.1).

`model_ops(model)` gives the operations a stage needs, by the model's `kind`, so that motion
customization (encode the clips, train, sample, apply) runs one code path for both models:

    denoiser(model)                       the trained network: ZeroScope's UNet, Wan's transformer
    encode_clip(model, frames)            (F, H, W, 3) in [0, 1] → (1, C, F', h, w) float32 latent
    encode_text(model, prompt)            → (1, L, D) prompt embedding (float32, on the CPU)
    decode(model, latents)                latent → (F, H, W, 3) float32 in [0, 1]
    draw_times(n, mode, generator)        n training times (the "coarse"/"uniform" density)
    noisy(model, x0, eps, times)          → (x_t, model timestep, regression target)
    predict(model, x_t, t, text)          the denoiser's output for the target, float32
    sample(model, text, negative, ...)    text-to-video latent with classifier-free guidance
    pixel_size(latent_shape)              (frames, height, width) of a latent's video

The objectives (the model's own training objective in each case):
- ZeroScope (DDPM, ε-prediction): x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, target ε, t an integer step
  (a v-prediction UNet, as the toy-world model's: target √ᾱ_t·ε − √(1−ᾱ_t)·x0).
- Wan (rectified flow, velocity): σ_k = shift((k + 1) / T) for the drawn step k (the model's
  flow shift, as its sampling schedule uses), x_t = (1 − σ)·x0 + σ·ε, target v = ε − x0,
  model timestep σ·T. The step density ("coarse" ramp toward noise or "uniform") is shared.
The ZeroScope operations are the ones the pipeline always used (bit-identical results).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..errors import InputError

KINDS = ("zeroscope", "wan")


def kind_of(model: Any) -> str:
    """"zeroscope" or "wan" (a model without a kind is a ZeroScope, as before Wan existed)."""
    return getattr(model, "kind", "zeroscope")


class ModelOps(Protocol):
    kind: str

    def denoiser(self, model: Any) -> torch.nn.Module: ...
    def encode_clip(self, model: Any, frames: torch.Tensor, vae_slice_size: int = 1) -> torch.Tensor: ...
    def encode_text(self, model: Any, prompt: str) -> torch.Tensor: ...
    def decode(self, model: Any, latents: torch.Tensor, vae_slice_size: int = 1) -> torch.Tensor: ...
    def draw_times(self, model: Any, n: int, mode: str, generator: torch.Generator) -> torch.Tensor: ...
    def noisy(self, model: Any, x0: torch.Tensor, eps: torch.Tensor,
              times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
    def predict(self, model: Any, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor: ...
    def pixel_size(self, model: Any, latent_shape: tuple[int, ...]) -> tuple[int, int, int]: ...


@dataclass(frozen=True)
class ZeroScopeOps:
    kind: str = "zeroscope"

    def denoiser(self, model: Any) -> torch.nn.Module:
        return model.unet

    def encode_clip(self, model: Any, frames: torch.Tensor, vae_slice_size: int = 1) -> torch.Tensor:
        from .latents import encode_frames

        return encode_frames(model, frames, slice_size=vae_slice_size).float().cpu()

    def encode_text(self, model: Any, prompt: str) -> torch.Tensor:
        from .text import encode_prompt

        return encode_prompt(model, prompt).float().cpu()

    def decode(self, model: Any, latents: torch.Tensor, vae_slice_size: int = 1) -> torch.Tensor:
        from .latents import decode_latents

        return decode_latents(model, latents, slice_size=vae_slice_size)

    def draw_times(self, model: Any, n: int, mode: str, generator: torch.Generator) -> torch.Tensor:
        from ..customize.timesteps import sample_timesteps

        return sample_timesteps(n, mode, generator, model.scheduler.config.num_train_timesteps)

    def noisy(self, model: Any, x0: torch.Tensor, eps: torch.Tensor,
              times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = model.scheduler.alphas_cumprod[times].to(torch.float32).view(-1, 1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        from .unet import prediction_type

        if prediction_type(model) == "v_prediction":
            return x_t, times, a.sqrt() * eps - (1 - a).sqrt() * x0  # the toy world's v-prediction UNet
        return x_t, times, eps

    def predict(self, model: Any, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return model.unet(x_t, t.to(x_t.device), encoder_hidden_states=text, return_dict=False)[0]

    def pixel_size(self, model: Any, latent_shape: tuple[int, ...]) -> tuple[int, int, int]:
        return int(latent_shape[2]), int(latent_shape[3]) * 8, int(latent_shape[4]) * 8


@dataclass(frozen=True)
class WanOps:
    kind: str = "wan"

    def denoiser(self, model: Any) -> torch.nn.Module:
        return model.transformer

    def encode_clip(self, model: Any, frames: torch.Tensor, vae_slice_size: int = 1) -> torch.Tensor:
        from .wan_ops import encode_video

        return encode_video(model, frames).float().cpu()  # the whole clip in one VAE call

    def encode_text(self, model: Any, prompt: str) -> torch.Tensor:
        from .wan_ops import encode_prompt

        return encode_prompt(model, prompt).float().cpu()

    def decode(self, model: Any, latents: torch.Tensor, vae_slice_size: int = 1) -> torch.Tensor:
        from .wan_ops import decode_latents

        return decode_latents(model, latents)

    def draw_times(self, model: Any, n: int, mode: str, generator: torch.Generator) -> torch.Tensor:
        from ..customize.timesteps import sample_timesteps

        return sample_timesteps(n, mode, generator, self._num_train(model))

    def sigmas(self, model: Any, times: torch.Tensor) -> torch.Tensor:
        """σ = shift((k + 1) / T) of drawn steps k (float32): k = T − 1 is pure noise."""
        from ..transfer.flow_matching import flow_schedule

        shift = flow_schedule(model.scheduler, 1).shift
        s = (times.to(torch.float32) + 1) / self._num_train(model)
        return shift * s / (1 + (shift - 1) * s)

    def noisy(self, model: Any, x0: torch.Tensor, eps: torch.Tensor,
              times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sigma = self.sigmas(model, times)
        s = sigma.view(-1, 1, 1, 1, 1)
        return (1 - s) * x0 + s * eps, sigma * self._num_train(model), eps - x0

    def predict(self, model: Any, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        from .wan_ops import predict_velocity

        return predict_velocity(model, x_t, t, text)

    def pixel_size(self, model: Any, latent_shape: tuple[int, ...]) -> tuple[int, int, int]:
        from .wan import SPATIAL_FACTOR, TEMPORAL_FACTOR

        return (TEMPORAL_FACTOR * (int(latent_shape[2]) - 1) + 1, int(latent_shape[3]) * SPATIAL_FACTOR,
                int(latent_shape[4]) * SPATIAL_FACTOR)

    @staticmethod
    def _num_train(model: Any) -> int:
        return int(model.scheduler.config.num_train_timesteps)


_OPS: dict[str, ModelOps] = {"zeroscope": ZeroScopeOps(), "wan": WanOps()}


def model_ops(model: Any) -> ModelOps:
    """The operations of `model`'s kind (InputError for an unknown kind)."""
    kind = kind_of(model)
    if kind not in _OPS:
        raise InputError(f"Unknown model kind {kind!r}; dmt runs {', '.join(KINDS)}.")
    return _OPS[kind]


__all__ = ["KINDS", "ModelOps", "ZeroScopeOps", "WanOps", "kind_of", "model_ops"]
