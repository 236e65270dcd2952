"""Timesteps of DDIM sampling, the guidance window and DDIM inversion.

All timesteps are integers in [0, num_train_timesteps). They are computed with the model's own
DDIMScheduler config (spacing, steps_offset), so they match diffusers exactly; for ZeroScope and
50 steps: 981, 961, ..., 1, of which the first 20 (981 ... 601) are guided.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler

from ..errors import InputError


@dataclass(frozen=True)
class Schedule:
    """The sampling timesteps and which of them are guided.

    timesteps: sampling timesteps, noisiest first (the first one is where sampling starts).
    guided: the leading timesteps whose step runs the SMM optimisation.
    num_steps: the number of DDIM steps the scheduler was set to (50 by default).
    guidance_window: (min_guidance_timestep, max_guidance_timestep) as fractions of num_steps.
    """

    timesteps: tuple[int, ...]
    guided: tuple[int, ...]
    num_steps: int
    guidance_window: tuple[float, float]


def scheduler_timesteps(scheduler: DDIMScheduler, num_steps: int) -> list[int]:
    """The timesteps diffusers' DDIMScheduler.set_timesteps(num_steps) yields, noisiest first."""
    if num_steps < 1 or num_steps > scheduler.config.num_train_timesteps:
        raise InputError(
            f"Number of steps must be in 1..{scheduler.config.num_train_timesteps}, got {num_steps}."
        )
    sched = copy.deepcopy(scheduler)
    sched.set_timesteps(num_steps)
    return [int(t) for t in sched.timesteps]


def make_schedule(
    scheduler: DDIMScheduler,
    num_steps: int = 50,
    guidance_window: tuple[float, float] = (0.6, 1.0),
) -> Schedule:
    """Sampling timesteps and guided timesteps, exactly as the authors' `get_timesteps`.

    guidance_window = (min_guidance_timestep, max_guidance_timestep), fractions in [0, 1].
    With max < 1 sampling itself starts later (like img2img strength): the first
    int(num_steps * (1 - max)) steps are skipped. The guided steps are the sampling steps except
    the last int(num_steps * min).
    """
    lo, hi = (float(v) for v in guidance_window)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"Guidance window values must be finite numbers in [0, 1], got ({lo}, {hi}); "
                         f"the authors use (0.6, 1.0).")
    if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
        raise InputError(f"Guidance window values must lie in [0, 1], got ({lo}, {hi}).")
    if lo > hi:
        raise InputError(f"Guidance window (min, max) = ({lo}, {hi}): min must not exceed max.")
    full = scheduler_timesteps(scheduler, num_steps)
    init_timestep = min(int(num_steps * hi), num_steps)
    t_start = max(num_steps - init_timestep, 0)
    t_end = int(num_steps * lo)
    timesteps = full[t_start:]
    if not timesteps:
        raise InputError("Guidance window max is 0: no sampling step is left. Use a max above 0.")
    guided = full[t_start:-t_end] if t_end > 0 else full[t_start:]
    return Schedule(tuple(timesteps), tuple(guided), num_steps, (lo, hi))


def previous_timestep(scheduler: DDIMScheduler, t: int, num_steps: int) -> int:
    """diffusers' DDIM rule: t - num_train_timesteps // num_steps (negative past the end)."""
    return t - scheduler.config.num_train_timesteps // num_steps


def alpha_bar(scheduler: DDIMScheduler, t: int) -> torch.Tensor:
    """ᾱ_t as the scheduler's float32 0-dim tensor; a negative t gives final_alpha_cumprod (DDIM)."""
    return scheduler.alphas_cumprod[t] if t >= 0 else scheduler.final_alpha_cumprod


def inversion_timesteps(scheduler: DDIMScheduler, num_inversion_steps: int) -> list[int]:
    """Timesteps the DDIM inversion visits, least noisy first (999 steps: 1, 2, ..., 999)."""
    ts = scheduler_timesteps(scheduler, num_inversion_steps)[::-1]
    if ts[-1] >= scheduler.config.num_train_timesteps:
        raise InputError(
            f"{num_inversion_steps} inversion steps reach timestep {ts[-1]}, past the model's "
            f"{scheduler.config.num_train_timesteps} train steps; use at most "
            f"{scheduler.config.num_train_timesteps - 1}."
        )
    return ts


def _ranges(values: list[int]) -> str:
    parts, start, prev = [], None, None
    for v in values + [None]:
        if start is None:
            start = prev = v
        elif v is not None and v == prev + 1:
            prev = v
        else:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = v
    return ", ".join(parts)


def valid_inversion_steps(scheduler: DDIMScheduler, needed: tuple[int, ...]) -> list[int]:
    """Every number of inversion steps whose timesteps include all of `needed`."""
    out = []
    for n in range(1, scheduler.config.num_train_timesteps + 1):
        try:
            ts = set(inversion_timesteps(scheduler, n))
        except InputError:
            continue
        if set(needed) <= ts:
            out.append(n)
    return out


def check_inversion_covers(scheduler: DDIMScheduler, num_inversion_steps: int, needed: tuple[int, ...]) -> None:
    """Raise InputError listing the valid choices when the inversion misses a needed timestep."""
    have = set(inversion_timesteps(scheduler, num_inversion_steps))
    lacking = [t for t in needed if t not in have]
    if lacking:
        valid = valid_inversion_steps(scheduler, needed)
        raise InputError(
            f"Inversion steps {num_inversion_steps} do not fit the sampling steps: the inversion must pass through "
            f"every guided sampling timestep and {num_inversion_steps} steps skip "
            f"{lacking[:5]}{' and more' if len(lacking) > 5 else ''}. Set the inversion steps to one of "
            f"{_ranges(valid)} (the authors use 999), or change the sampling steps."
        )
