"""The SMM loss: invariances, its minimum, and gradients against finite differences."""

from __future__ import annotations

import pytest
import torch

from dmt.transfer.features import spatial_marginal_mean
from dmt.transfer.loss import smm_loss, total_loss

F_, D = 5, 7


@pytest.fixture
def phi():
    return torch.randn(F_, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_cosine_minimum_is_one_over_f_at_source_plus_constant(phi):
    c = torch.randn(D, dtype=torch.float64)
    # The j = i term has zero vectors, cosine 0, so it counts as 1: the floor is 1/F.
    assert smm_loss(phi + c, phi, "cosine").item() == pytest.approx(1 / F_, abs=1e-6)
    assert smm_loss(phi, phi, "cosine").item() == pytest.approx(1 / F_, abs=1e-6)
    other = torch.randn(F_, D, dtype=torch.float64)
    assert smm_loss(other, phi, "cosine").item() > 1 / F_ + 0.1


def test_l2_is_zero_at_source_plus_constant(phi):
    c = torch.randn(D, dtype=torch.float64)
    assert smm_loss(phi + c, phi, "l2").item() == pytest.approx(0.0, abs=1e-9)
    assert smm_loss(torch.randn(F_, D, dtype=torch.float64), phi, "l2").item() > 1.0


@pytest.mark.parametrize("form", ["cosine", "l2"])
def test_invariant_to_spatial_permutation(form):
    g = torch.Generator().manual_seed(1)
    act_src = torch.randn(F_, D, 4, 6, generator=g)
    act_gen = torch.randn(F_, D, 4, 6, generator=g)
    perm = torch.randperm(24, generator=g)
    permuted = act_gen.flatten(2)[:, :, perm].reshape(F_, D, 4, 6)
    src = spatial_marginal_mean(act_src, F_)[0]
    a = smm_loss(spatial_marginal_mean(act_gen, F_)[0], src, form)
    b = smm_loss(spatial_marginal_mean(permuted, F_)[0], src, form)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["cosine", "l2"])
def test_gradient_matches_finite_differences(phi, form):
    gen = torch.randn(F_, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    # smm_loss computes in float32 by design; check the float64 maths through a double-precision copy.
    def loss64(x):
        g_diff = x[None] - x[:, None]
        s_diff = phi[None] - phi[:, None]
        if form == "cosine":
            return (1 - torch.nn.functional.cosine_similarity(g_diff, s_diff, dim=-1).mean(1)).mean()
        return (g_diff - s_diff).pow(2).sum()

    assert torch.autograd.gradcheck(loss64, (gen,), eps=1e-6, atol=1e-5)
    # ...and smm_loss's own float32 gradient agrees with central differences of smm_loss itself.
    x = gen.detach().float().requires_grad_(True)
    smm_loss(x, phi.float(), form).backward()
    num = torch.zeros_like(x)
    h = 1e-2 if form == "cosine" else 1e-3
    for idx in [(0, 0), (2, 3), (4, 6), (1, 5)]:
        xp, xm = x.detach().clone(), x.detach().clone()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = (smm_loss(xp.double(), phi, form) - smm_loss(xm.double(), phi, form)) / (2 * h)
        assert x.grad[idx].item() == pytest.approx(num[idx].item(), rel=2e-2, abs=2e-4)


def test_total_loss_sums_activations(phi):
    a = {"x": phi, "y": phi * 2}
    b = {"x": phi + 1, "y": torch.randn(F_, D, dtype=torch.float64)}
    assert total_loss(b, a).item() == pytest.approx(
        (smm_loss(b["x"], a["x"]) + smm_loss(b["y"], a["y"])).item(), rel=1e-6)
    with pytest.raises(ValueError, match="differ"):
        total_loss({"x": phi}, a)
