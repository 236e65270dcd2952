"""A rough run-time estimate of a whole edit on the current device, before any model is loaded.

estimate = forward equivalents × FLOPs of one UNet forward ÷ effective FLOP rate.

* Forward equivalents: the edit's UNet passes (`dmt.transfer.presets.unet_work`) weighted with
  their cost in units of one full batch-1 forward (`FORWARD_COST`, the values the `fast` preset's
  docstring uses: guided iteration = truncated forward + backward ≈ 2.5, CFG pass at batch 2 ≈ 2,
  truncated target forward ≈ 0.6). Authors' settings: 1709; `fast`: 712.
* FLOPs of one forward of ZeroScope v2 576w's UNet (1.41 B parameters): counted with
  `torch.utils.flop_counter.FlopCounterMode` on the full configuration built on the meta device
  (no weights, no compute): 21.40 TFLOP at 24 frames 576×320, 5.23 at 24×288×160, 7.12 at
  8×576×320, 0.089 at 4×64×64, i.e. close to linear in latent positions
  F·(H/8)·(W/8): 3.0–3.5 × 10⁸ FLOP each (`FLOPS_PER_LATENT_POSITION` = 3.1 × 10⁸, the value at
  full size).
* Effective rate on a CPU: a 1024² float32 matmul timed for a fraction of a second on this
  machine (`matmul_flops`), times `CPU_UNET_EFFICIENCY` = 0.5: a half-width ZeroScope UNet
  (361 M parameters, 8 frames 128×128, float32, 2 threads) ran at 0.41–0.68 (median 0.55) of the
  matmul rate timed just before and after it (2-core machine, Dec 2026).

Only CPU runs are estimated: no GPU time of the full model has been measured for this project
(the authors report about 7 minutes on an A40 for the guided sampling, plus the inversion).
It is an order of magnitude, not a promise: memory bandwidth, threads and other load change it.
"""

from __future__ import annotations

import time

import torch

FORWARD_COST = {"inversion": 1.0, "targets": 0.6, "guided_iterations": 2.5, "denoise": 2.0, "restart": 2.0}
FLOPS_PER_LATENT_POSITION = 3.1e8
CPU_UNET_EFFICIENCY = 0.5


def unet_forward_flops(num_frames: int, height: int, width: int) -> float:
    """FLOPs of one batch-1 forward of ZeroScope's UNet on F frames of H×W pixels (latent H/8×W/8)."""
    return FLOPS_PER_LATENT_POSITION * num_frames * (height // 8) * (width // 8)


def matmul_flops(device: str | torch.device = "cpu", n: int = 1024, seconds: float = 0.2) -> float:
    """FLOP/s of float32 n×n matmuls on `device`, timed for about `seconds` (after one warm-up)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    reps, start = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2.0 * n**3 * reps / elapsed


def estimate_seconds(work: dict[str, int], num_frames: int, height: int, width: int, flops_per_second: float) -> float:
    """Seconds of UNet work for the pass counts `work` (as unet_work) at an effective FLOP rate."""
    equivalents = sum(n * FORWARD_COST[k] for k, n in work.items())
    return equivalents * unet_forward_flops(num_frames, height, width) / flops_per_second


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '3.4 h', '6.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
