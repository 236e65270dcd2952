"""Low-frequency init: low band from the inverted latent, high band from the seed noise."""

from __future__ import annotations

import pytest
import torch

import dmt
from dmt.transfer.inversion import Inversion
from dmt.models.random_model import SCHEDULER_CONFIG
from diffusers import DDIMScheduler


def _fake_inversion(h=64, w=64, frames=3) -> Inversion:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 4, frames, h, w, generator=g) * 0.5
    noisiest = torch.randn(1, 4, frames, h, w, generator=g)
    return Inversion(x0=x0, latents={981: noisiest}, noisiest_t=981, source_prompt="", num_inversion_steps=50,
                     num_sampling_steps=50, scheduler_config=dict(DDIMScheduler(**SCHEDULER_CONFIG).config))


def _band_error(a, b, low: bool, cutoff: float = 0.035):
    """Relative L2 error of a vs b over the spatial frequencies below (low) / above the cutoff (cycles/px)."""
    fy = torch.fft.fftfreq(a.shape[-2]).abs()[:, None]
    fx = torch.fft.fftfreq(a.shape[-1]).abs()[None, :]
    band = (torch.maximum(fy, fx) < cutoff) if low else (torch.maximum(fy, fx) > 0.25)
    A, B = torch.fft.fft2(a)[..., band], torch.fft.fft2(b)[..., band]
    return ((A - B).abs().norm() / B.abs().norm()).item()


def test_low_band_from_latent_high_band_from_noise():
    inv = _fake_inversion()
    eps0 = torch.randn(inv.x0.shape, generator=torch.Generator().manual_seed(5))
    out = dmt.low_frequency_init(inv, noise=eps0, downsample_factor=4)
    x_T = dmt.low_frequency_init(inv, downsample_factor=1)  # no replacement: x_T alone
    assert torch.allclose(x_T, inv.noisiest, atol=1e-5)  # T == T_inv: the inverted latent itself
    low_to_xT, low_to_eps = _band_error(out, x_T, True), _band_error(out, eps0, True)
    high_to_eps, high_to_xT = _band_error(out, eps0, False), _band_error(out, x_T, False)
    print(f"low band: err vs x_T {low_to_xT:.3f}, vs eps0 {low_to_eps:.3f}; "
          f"high band: err vs eps0 {high_to_eps:.3f}, vs x_T {high_to_xT:.3f}")
    # Bilinear down/up by 4 is a soft filter: at |f| < 0.035 cycles/px (the lowest two of 64
    # frequencies) the result follows x_T; above 0.25 cycles/px it is eps0.
    assert low_to_xT < 0.25 and low_to_eps > 1.0
    assert high_to_eps < 0.1 and high_to_xT > 1.0


def test_renoising_to_another_timestep_uses_the_inverted_noise():
    inv = _fake_inversion()
    sched = DDIMScheduler(**SCHEDULER_CONFIG)
    a = sched.alphas_cumprod
    out = dmt.low_frequency_init(inv, downsample_factor=1, start_timestep=901)
    eps_inv = (inv.noisiest - a[981].sqrt() * inv.x0) / (1 - a[981]).sqrt()
    assert torch.allclose(out, a[901].sqrt() * inv.x0 + (1 - a[901]).sqrt() * eps_inv, atol=1e-5)


def test_seed_matches_explicit_noise_and_differs_across_seeds():
    inv = _fake_inversion()
    eps0 = torch.randn(inv.x0.shape, generator=torch.Generator().manual_seed(7))
    assert torch.equal(dmt.low_frequency_init(inv, seed=7), dmt.low_frequency_init(inv, noise=eps0))
    assert not torch.allclose(dmt.low_frequency_init(inv, seed=7), dmt.low_frequency_init(inv, seed=8))


def test_bad_noise_shape_and_factor():
    inv = _fake_inversion()
    with pytest.raises(dmt.InputError, match="does not match"):
        dmt.low_frequency_init(inv, noise=torch.zeros(1, 4, 2, 8, 8))
    with pytest.raises(dmt.InputError, match="whole number from 1 to"):
        dmt.low_frequency_init(inv, downsample_factor=0)


def test_latent_preview_shapes_and_range():
    z = torch.randn(1, 4, 3, 8, 10) * 3
    one, all_ = dmt.latent_preview(z), dmt.latent_preview(z, frame=None)
    assert one.shape == (8, 10, 3) and all_.shape == (3, 8, 10, 3)
    assert 0 <= all_.min() and all_.max() <= 1 and torch.equal(one, all_[0])
    with pytest.raises(ValueError, match="Expected latents"):
        dmt.latent_preview(torch.zeros(3, 8, 8))
