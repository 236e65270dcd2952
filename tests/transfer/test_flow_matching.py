"""dmt.transfer.flow_matching: the sigma schedule equals diffusers' set_timesteps, and Euler inversion
followed by Euler sampling on an exact straight-path velocity returns x0."""

from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

import dmt
from dmt.models.random_wan import WAN_SCHEDULER_CONFIG
from dmt.transfer.flow_matching import (FlowSchedule, euler_step, flow_schedule, invert_flow, noise_latent,
                                        sample_flow)

STEP_COUNTS = [1, 2, 7, 50, 999, 1000]


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
@pytest.mark.parametrize("steps", STEP_COUNTS)
def test_unipc_flow_sigmas_equal_diffusers(shift, steps):
    sched = UniPCMultistepScheduler(**dict(WAN_SCHEDULER_CONFIG, flow_shift=shift))
    sched.set_timesteps(steps)
    ours = flow_schedule(sched, steps)
    assert ours.rule == "unipc" and ours.shift == shift and ours.num_steps == steps
    assert ours.sigmas.dtype == torch.float32 and torch.equal(ours.sigmas, sched.sigmas)
    assert ours.sigmas[-1] == 0 and ours.sigmas[0] < 1  # UniPC lowers a first sigma of 1 by 1e-6
    # UniPC hands the model integer timesteps (truncated); ours are the exact sigma · 1000
    gap = ours.timesteps - sched.timesteps.float()
    assert gap.min() >= -1e-3 and gap.max() <= 1 + 1e-3  # float32 rounding either side
    assert torch.equal(flow_schedule(dict(sched.config), steps).sigmas, ours.sigmas)  # config alone


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", STEP_COUNTS)
def test_flow_match_euler_sigmas_equal_diffusers(shift, steps):
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(steps)
    ours = flow_schedule(sched.config, steps)
    assert ours.rule == "euler"
    assert torch.equal(ours.sigmas, sched.sigmas) and torch.equal(ours.timesteps, sched.timesteps)


def test_the_hub_schedule_at_50_steps():
    sched = UniPCMultistepScheduler(**WAN_SCHEDULER_CONFIG)
    s = flow_schedule(sched, 50).sigmas
    assert s.shape == (51,) and bool((s[1:] < s[:-1]).all())
    assert abs(float(s[25]) - 3 * 0.5005 / (1 + 2 * 0.5005)) < 1e-6  # shift 3 pushes the midpoint up to 0.75


@pytest.mark.parametrize("bad", [0, -1, 1001, 2.5, True, "50", None])
def test_bad_step_counts_are_refused(bad):
    with pytest.raises(dmt.InputError, match="from 1 to 1000"):
        flow_schedule(UniPCMultistepScheduler(**WAN_SCHEDULER_CONFIG), bad)


@pytest.mark.parametrize("config, words", [
    (dict(WAN_SCHEDULER_CONFIG, use_flow_sigmas=False), "not flow matching"),
    ({"num_train_timesteps": 1000, "beta_schedule": "linear"}, "not a flow-matching scheduler"),
    (dict(WAN_SCHEDULER_CONFIG, use_karras_sigmas=True), "use_karras_sigmas"),
    ({"shift": 3.0, "use_dynamic_shifting": True}, "use_dynamic_shifting"),
    (dict(WAN_SCHEDULER_CONFIG, final_sigmas_type="sigma_min"), "final_sigmas_type=sigma_min"),
])
def test_configs_whose_sigmas_are_not_reproduced_are_refused(config, words):
    with pytest.raises(dmt.InputError, match=words):
        flow_schedule(config, 10)


def test_euler_step_and_noising():
    x0, noise = torch.randn(2, 3), torch.randn(2, 3)
    x = noise_latent(x0, noise, 0.25)
    torch.testing.assert_close(x, 0.75 * x0 + 0.25 * noise)
    assert torch.equal(noise_latent(x0, noise, 0.0), x0) and torch.equal(noise_latent(x0, noise, 1.0), noise)
    torch.testing.assert_close(euler_step(x, noise - x0, 0.25, 0.0), x0)  # the straight path is exact
    torch.testing.assert_close(euler_step(x, noise - x0, 0.25, 1.0), noise)


@pytest.mark.parametrize("steps", [1, 4, 50])
def test_inversion_then_sampling_returns_x0_on_the_straight_path(steps):
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 16, 3, 4, 6, generator=gen), torch.randn(1, 16, 3, 4, 6, generator=gen)
    schedule = flow_schedule(UniPCMultistepScheduler(**WAN_SCHEDULER_CONFIG), steps)
    seen = []

    def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
        assert isinstance(sigma, float)
        seen.append(sigma)
        return noise - x0

    path = invert_flow(velocity, x0, schedule)
    assert len(path) == steps + 1 and all(p.shape == x0.shape and p.dtype == torch.float32 for p in path)
    assert torch.equal(path[-1], x0) and path[-1] is not x0
    for latent, sigma in zip(path, schedule.sigmas.tolist()):  # element k lies at sigmas[k]
        torch.testing.assert_close(latent, noise_latent(x0, noise, sigma), rtol=0, atol=1e-5)
    assert seen == schedule.sigmas.tolist()[1:][::-1]  # read at the less noisy end, from sigma = 0 up
    torch.testing.assert_close(sample_flow(velocity, path[0], schedule), x0, rtol=0, atol=1e-5)
    if steps > 1:  # a later start: sampling from the kept latent of that step
        torch.testing.assert_close(sample_flow(velocity, path[1], schedule, start=1), x0, rtol=0, atol=1e-5)


def test_progress_and_cancel_points():
    calls = []
    sigmas = torch.tensor([1.0, 0.5, 0.0])
    invert_flow(lambda x, s: x, torch.zeros(1), sigmas, on_step=lambda *a: calls.append(a[:3]))
    assert calls == [("inversion", 1, 2), ("inversion", 2, 2)]
    with pytest.raises(dmt.Interrupted):
        sample_flow(lambda x, s: x, torch.zeros(1), sigmas, check_interrupt=lambda: True)


@pytest.mark.parametrize("sigmas", [[1.0], [1.0, 0.5], [0.5, 0.7, 0.0], [2.0, 0.0], [[1.0, 0.0]]])
def test_bad_sigma_lists_are_refused(sigmas):
    with pytest.raises(dmt.InputError, match="Sigmas"):
        invert_flow(lambda x, s: x, torch.zeros(1), torch.tensor(sigmas))


def test_bad_start_step_is_refused():
    with pytest.raises(dmt.InputError, match="from 0 to 1"):
        sample_flow(lambda x, s: x, torch.zeros(1), torch.tensor([1.0, 0.5, 0.0]), start=2)


def test_schedule_is_frozen_data():
    schedule = flow_schedule(FlowMatchEulerDiscreteScheduler(shift=3.0).config, 4)
    assert isinstance(schedule, FlowSchedule)
    with pytest.raises(AttributeError):
        schedule.shift = 1.0  # type: ignore[misc]
