"""Flow matching (Wan 2.1's scheduler) as data and pure functions.

Convention (rectified flow, as Wan is trained): the latent at noise level sigma in [0, 1] is
x_sigma = (1 - sigma) · x0 + sigma · noise, and the model predicts the velocity
v = dx/dsigma = noise - x0. Sampling walks sigma from ~1 down to 0, inversion walks it up.
A model's timestep is sigma · num_train_timesteps (1000).

The sampling sigmas are those of the model's scheduler config, reproduced from the config alone
(no scheduler object, nothing mutated): UniPCMultistepScheduler with use_flow_sigmas / flow_shift
(Wan's hub scheduler) or FlowMatchEulerDiscreteScheduler with shift. The step here is always the
first-order Euler step (UniPC's multistep corrector is not used: inversion needs the step to be
invertible one step at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io.progress import CheckInterrupt, OnStep, checkpoint, never_interrupt, no_progress

__all__ = ["FlowSchedule", "flow_schedule", "euler_step", "noise_latent", "invert_flow", "sample_flow",
           "Velocity"]

#: velocity(x, sigma) → v: the model's velocity at latent x (B, C, F', h, w) and noise level sigma
Velocity = Callable[[torch.Tensor, float], torch.Tensor]

# config switches whose sigma rules dmt does not reproduce (the hub's Wan config sets none of them)
_UNSUPPORTED = ("use_dynamic_shifting", "shift_terminal", "use_karras_sigmas", "use_exponential_sigmas",
                "use_beta_sigmas", "invert_sigmas")


@dataclass(frozen=True)
class FlowSchedule:
    """The sampling schedule of N steps.

    sigmas: (N + 1,) float32, decreasing from ~1 (1 - 1e-6 for UniPC, 1 for Euler) to exactly 0;
        step k goes from sigmas[k] to sigmas[k + 1].
    timesteps: (N,) float32 model timesteps sigmas[:-1] · num_train_timesteps. (UniPC's own
        set_timesteps truncates these to integers; the difference is below one timestep.)
    shift: the shift applied to the sigmas; rule: "unipc" or "euler" (whose sigma list it reproduces).
    """

    sigmas: torch.Tensor
    timesteps: torch.Tensor
    shift: float
    num_train_timesteps: int
    rule: str

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])


def _shifted(s, shift: float):
    """The shift rule sigma' = shift · s / (1 + (shift - 1) · s) (any array type, its own dtype)."""
    return shift * s / (1 + (shift - 1) * s)


def _config_of(scheduler: Any) -> Mapping[str, Any]:
    config = getattr(scheduler, "config", scheduler)
    if not isinstance(config, Mapping):
        raise TypeError(f"Expected a scheduler or its config (a mapping), got {type(scheduler).__name__}.")
    return config


def flow_schedule(scheduler: Any, num_steps: int) -> FlowSchedule:
    """The sigmas a flow-matching scheduler's set_timesteps(num_steps) gives, from its config.

    Args:
        scheduler: a UniPCMultistepScheduler (use_flow_sigmas) or FlowMatchEulerDiscreteScheduler,
            or its config as a mapping (the keys decide: flow_shift → UniPC's rule, shift → Euler's).
        num_steps: N sampling steps, 1 to num_train_timesteps.
    Returns:
        FlowSchedule (see its fields). UniPC: s = linspace(1, 1/T, N + 1)[:-1], shifted, its first
        value lowered by 1e-6 when it is 1. Euler: the linspace runs from the shifted sigma_max to
        the shifted sigma_min of its T training sigmas and is then shifted (again), so its smallest
        non-zero sigma is shifted twice, as diffusers does.
    Raises:
        InputError: a bad step count, or a config that is not flow matching or asks for a sigma
            rule dmt does not reproduce.
    """
    config = _config_of(scheduler)
    T = int(config.get("num_train_timesteps", 1000))
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or not 1 <= num_steps <= T:
        raise InputError(f"The number of sampling steps must be a whole number from 1 to {T} (Wan's usual "
                         f"value is 50); got {num_steps!r}.")
    n = int(num_steps)
    unsupported = [key for key in _UNSUPPORTED if config.get(key)]
    if "flow_shift" in config or "use_flow_sigmas" in config:
        if not config.get("use_flow_sigmas") or config.get("prediction_type") != "flow_prediction":
            raise InputError("The scheduler config is not flow matching (it needs use_flow_sigmas and "
                             "prediction_type flow_prediction, as Wan's). Use the model's own scheduler/ folder.")
        if config.get("final_sigmas_type", "zero") != "zero":
            unsupported.append("final_sigmas_type=" + str(config["final_sigmas_type"]))
        rule, shift = "unipc", float(config.get("flow_shift", 1.0))
    elif "shift" in config:
        rule, shift = "euler", float(config["shift"])
    else:
        raise InputError("The scheduler config has neither flow_shift (UniPC with flow sigmas) nor shift "
                         "(FlowMatchEulerDiscreteScheduler): it is not a flow-matching scheduler.")
    if unsupported:
        raise InputError(f"The scheduler config sets {', '.join(unsupported)}; dmt reproduces only the plain "
                         f"shifted flow sigmas (Wan 2.1's hub config). Remove those settings.")
    if rule == "unipc":
        s = _shifted(np.linspace(1, 1 / T, n + 1)[:-1], shift)
        if abs(s[0] - 1) < 1e-6:
            s[0] -= 1e-6
        sigmas = torch.from_numpy(np.concatenate([s, [0.0]]).astype(np.float32))
    else:
        train = _shifted(torch.from_numpy(np.linspace(1, T, T, dtype=np.float32)[::-1].copy()) / T, shift)
        sigma_max, sigma_min = train[0].item(), train[-1].item()
        s = _shifted(np.linspace(sigma_max * T, sigma_min * T, n) / T, shift)
        sigmas = torch.cat([torch.from_numpy(s).to(torch.float32), torch.zeros(1)])
    return FlowSchedule(sigmas=sigmas, timesteps=sigmas[:-1] * T, shift=shift, num_train_timesteps=T, rule=rule)


def euler_step(x: torch.Tensor, v: torch.Tensor, sigma: float | torch.Tensor,
               sigma_next: float | torch.Tensor) -> torch.Tensor:
    """One Euler step of the flow ODE: x + (sigma_next - sigma) · v (down when sigma_next < sigma,
    up for inversion). x, v: latents of one shape; sigmas: floats or 0-d tensors."""
    return x + (sigma_next - sigma) * v


def noise_latent(x0: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """The forward (noising) process: x_sigma = (1 - sigma) · x0 + sigma · noise."""
    return (1 - sigma) * x0 + sigma * noise


def _check_sigmas(sigmas: torch.Tensor | FlowSchedule) -> list[float]:
    values = sigmas.sigmas if isinstance(sigmas, FlowSchedule) else torch.as_tensor(sigmas)
    if values.ndim != 1 or values.numel() < 2:
        raise InputError(f"Sigmas must be a 1-D list of at least 2 noise levels; got shape {tuple(values.shape)}.")
    out = [float(s) for s in values]
    if out[-1] != 0 or any(a <= b for a, b in zip(out, out[1:])) or out[0] > 1:
        raise InputError("Sigmas must decrease strictly from at most 1 to exactly 0 (a sampling schedule, "
                         "see flow_schedule).")
    return out


def invert_flow(velocity: Velocity, x0: torch.Tensor, sigmas: torch.Tensor | FlowSchedule, *,
                on_step: OnStep = no_progress,
                check_interrupt: CheckInterrupt = never_interrupt) -> list[torch.Tensor]:
    """Deterministic Euler inversion: from x0 (sigma = 0) up the sampling schedule to its noisiest level.

    Step k (k = N-1 … 0) is x[k] = x[k+1] + (sigmas[k] - sigmas[k+1]) · velocity(x[k+1], sigmas[k+1]):
    the velocity is read at the less noisy end, as DDIM inversion reads its noise.

    Args:
        velocity: velocity(x, sigma) → v (B, C, F', h, w); sigma a Python float (timestep = sigma · 1000).
        x0: (B, C, F', h, w) clean latent.
        sigmas: (N + 1,) decreasing to 0, or a FlowSchedule.
        on_step: called after each step as on_step("inversion", i, N, x).
        check_interrupt: called before each step (a cancel point).
    Returns:
        N + 1 float32 latents aligned with `sigmas`: element k is the latent at sigmas[k], so the
        first is the noisiest and the last is x0 (a copy). Sampling step k starts from element k.
    """
    levels = _check_sigmas(sigmas)
    n = len(levels) - 1
    x = x0.detach().float().clone()
    path = [x]
    for i, k in enumerate(range(n - 1, -1, -1)):
        checkpoint(check_interrupt)
        x = euler_step(x, velocity(x, levels[k + 1]).float(), levels[k + 1], levels[k])
        path.append(x)
        on_step("inversion", i + 1, n, x)
    return path[::-1]


def sample_flow(velocity: Velocity, x: torch.Tensor, sigmas: torch.Tensor | FlowSchedule, start: int = 0, *,
                on_step: OnStep = no_progress,
                check_interrupt: CheckInterrupt = never_interrupt) -> torch.Tensor:
    """Euler sampling: from x at sigmas[start] down to sigma = 0.

    Args:
        velocity: velocity(x, sigma) → v; sigma a Python float.
        x: (B, C, F', h, w) latent at noise level sigmas[start].
        start: the first step to run (0: from the noisiest level).
    Returns:
        (B, C, F', h, w) float32 clean latent.
    """
    levels = _check_sigmas(sigmas)
    n = len(levels) - 1
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < n:
        raise InputError(f"The start step must be a whole number from 0 to {n - 1}; got {start!r}.")
    x = x.float()
    for i, k in enumerate(range(start, n)):
        checkpoint(check_interrupt)
        x = euler_step(x, velocity(x, levels[k]).float(), levels[k], levels[k + 1])
        on_step("sampling", i + 1, n - start, x)
    return x
