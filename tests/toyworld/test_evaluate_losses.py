"""The guidance-loss figures of G2 (dmt.toyworld.evaluate._loss_trace), on hand-made loss records."""

from __future__ import annotations

import pytest

from dmt.toyworld.evaluate import _loss_trace


def test_loss_trace_reads_the_first_and_last_guided_steps_and_the_fall_within_steps():
    # guided step → the loss before each optimiser iteration, in sampling order (ZeroScope keys its
    # steps by timestep, which falls as sampling goes on)
    losses = {981: [1.0, 0.5, 0.5], 961: [0.5, 0.25], 941: []}
    t = _loss_trace(losses)
    assert t["loss_start"] == 1.0 and t["loss_end"] == 0.25
    assert t["loss_step_drop"] == pytest.approx(0.5)  # both steps halve their loss


def test_loss_trace_is_empty_without_guided_steps_and_zero_for_an_idle_optimiser():
    assert _loss_trace({}) == {} and _loss_trace({5: []}) == {}
    assert _loss_trace({1: [0.3, 0.3, 0.3], 2: [0.2, 0.2]})["loss_step_drop"] == 0.0
