"""Named settings presets (data), and the UNet work a whole edit costs under them.

Presets:

``authors`` — the authors' defaults, bit for bit: 999 DDIM inversion steps (timesteps 1…999),
    50 sampling steps of which the first 20 are guided, 10 Adam iterations per guided step,
    restart sampling on. Nothing is traded away; it is the reference for quality and the slowest.

``fast`` — 100 inversion steps instead of 999, restart sampling off, everything else as the
    authors (10 Adam iterations on each of the 20 guided steps, CFG 10, same loss and schedule).
    What it trades away:
    * inversion accuracy: 100 DDIM inversion steps (step 10 instead of 1) follow the ODE less
      closely, so the inverted latents (the targets' inputs and the low-frequency init) drift more
      from the true noise of the input video; the source SMM targets are slightly less faithful
      and the init carries a little less of the input's layout. 100 still visits every guided
      timestep (981…601; see dmt.transfer.schedule.valid_inversion_steps), so no target is approximated.
    * restart sampling: each of the 50 steps is denoised once instead of twice (49 fewer CFG
      passes); the authors' restart re-noising/denoising corrects errors of the guided steps, so
      without it outputs can be slightly less clean/sharp.
    The motion guidance itself (the part that transfers the motion) is kept in full.
    Estimated speed-up — an ESTIMATE, not a measured GPU time: UNet-work counts (`preset_work`)
    weighted with per-operation costs in units of one forward (guided iteration ≈ 2.3–2.7,
    CFG pass ≈ 2 at full size, truncated target forward ≈ 0.6) give 1709 vs 712 forward
    equivalents, about 2.4×; bench/bench_dmt.py's CPU runs (tiny model) estimated 2.3–3.0×. The
    GPU run in bench/README.md gives the number at full size.

Use `apply_preset(name, settings)` → (GuidanceSettings, num_inversion_steps), or
`preset_kwargs(name)` for `dmt.transfer(**kwargs)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError
from ..transfer.sampler import GuidanceSettings


@dataclass(frozen=True)
class Preset:
    """num_inversion_steps: DDIM inversion steps (must be valid for num_steps, see
    dmt.transfer.schedule.valid_inversion_steps). num_steps: sampling steps. guidance_window: (min, max).
    optimization_steps / restart_sampling: the GuidanceSettings fields the preset sets (the other
    settings — CFG scale, learning rates, loss — stay as given)."""

    name: str
    num_inversion_steps: int
    num_steps: int
    guidance_window: tuple[float, float]
    optimization_steps: int
    restart_sampling: bool
    summary: str


PRESETS: dict[str, Preset] = {
    "authors": Preset("authors", 999, 50, (0.6, 1.0), 10, True,
                      "authors' defaults: 999 inversion steps, restart sampling, 10 Adam steps"),
    "fast": Preset("fast", 100, 50, (0.6, 1.0), 10, False,
                   "100 inversion steps, no restart sampling (≈2.4× less UNet work, estimated; slightly less faithful)"),
}
DEFAULT_PRESET = "authors"


def get_preset(preset: str | Preset) -> Preset:
    """A Preset by name (case-insensitive) or the Preset itself; InputError lists the names."""
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[str(preset).strip().lower()]
    except KeyError:
        raise InputError(f"Unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}.") from None


def apply_preset(preset: str | Preset, settings: GuidanceSettings = GuidanceSettings()) -> tuple[GuidanceSettings, int]:
    """`settings` with the preset's optimisation steps and restart flag, and its inversion steps."""
    p = get_preset(preset)
    new = dataclasses.replace(settings, optimization_steps=p.optimization_steps, restart_sampling=p.restart_sampling)
    return new, p.num_inversion_steps


def preset_kwargs(preset: str | Preset, settings: GuidanceSettings = GuidanceSettings()) -> dict:
    """Keyword arguments for dmt.transfer: settings, num_inversion_steps, num_steps, guidance_window."""
    p = get_preset(preset)
    new, n_inv = apply_preset(p, settings)
    return dict(settings=new, num_inversion_steps=n_inv, num_steps=p.num_steps, guidance_window=p.guidance_window)


def unet_work(
    num_inversion_steps: int = 999,
    num_steps: int = 50,
    guidance_window: tuple[float, float] = (0.6, 1.0),
    optimization_steps: int = 10,
    restart_sampling: bool = True,
) -> dict[str, int]:
    """How many UNet passes of each kind a whole edit runs (no model needed).

    Returns counts: inversion (full forward, batch 1), targets (truncated forward, batch 1, no
    grad), guided_iterations (truncated forward + backward, batch 1), denoise (full forward,
    batch 2 = CFG) and restart (full forward, batch 2).
    """
    lo, hi = guidance_window
    n_sampling = min(int(num_steps * hi), num_steps)  # as dmt.transfer.schedule.make_schedule
    t_end = int(num_steps * lo)
    n_guided = max(n_sampling - t_end, 0) if t_end > 0 else n_sampling
    return dict(
        inversion=num_inversion_steps,
        targets=n_guided,
        guided_iterations=n_guided * optimization_steps,
        denoise=n_sampling,
        restart=(n_sampling - 1) if restart_sampling else 0,
    )


def preset_defaults(preset: str | Preset) -> dict:
    """The transfer options a preset sets, by their names in dmt.settings.TRANSFER (the CLI's
    defaults and a batch job's; options given explicitly still win)."""
    p = get_preset(preset)
    return {"inversion_steps": p.num_inversion_steps, "steps": p.num_steps, "guidance_window": p.guidance_window,
            "optimization_steps": p.optimization_steps, "no_restart": not p.restart_sampling}


def preset_work(preset: str | Preset) -> dict[str, int]:
    """unet_work for a preset."""
    p = get_preset(preset)
    return unet_work(p.num_inversion_steps, p.num_steps, p.guidance_window, p.optimization_steps, p.restart_sampling)


def forward_equivalents(work: dict[str, int], cost: dict[str, float]) -> float:
    """Σ count × cost, with costs in units of one full batch-1 UNet forward (keys as unet_work:
    e.g. inversion 1.0, targets ≈ 0.6, guided_iterations ≈ 2, denoise ≈ restart ≈ 1.6–2)."""
    return sum(n * cost[k] for k, n in work.items())
