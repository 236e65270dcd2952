"""G4 on the bundled toy ZeroScope (fixture `toy`, conftest.py): a 48-frame held-out source
transferred in context windows; and G5, the metric: Motion-Fidelity separates same-motion pairs
from other ones (no model involved). Thresholds: dmt.toyworld.evaluate.THRESHOLDS."""

from __future__ import annotations

import pytest
from helpers import gate_report as _report

from dmt.toyworld import evaluate as ev

TH = ev.THRESHOLDS


@pytest.fixture(scope="module")
def g4(toy):
    return ev.gate_long_video(toy, fuses=("pyramid",))


def test_g4_long_video_follows_the_source(g4):
    f = g4.figures
    assert f["pyramid"]["err_px"] <= TH["G4"]["ratio_max"] * f["baseline_err_px"], _report(g4)


def test_g4_no_jump_at_window_seams(g4):
    assert g4.figures["pyramid"]["seam_ratio"] <= TH["G4"]["seam_ratio_max"], _report(g4)


def test_g4_measures_the_windows_not_the_vae(g4):
    """The source's VAE round trip (no windows) follows it and has no seam of its own (ratio 1.00),
    so a jump at a seam is the windows'. The toy Wan's VAE stalls and jumps between latent frames,
    where its seams fall (its card)."""
    f = g4.figures
    assert f["roundtrip_err_px"] < 0.1 * f["baseline_err_px"] and f["roundtrip_seam_ratio"] < 1.2, _report(g4)


def test_g5_motion_fidelity_separates_same_from_other_motions():
    r = ev.gate_metric()
    text = _report(r)
    assert r.figures["margin"] >= TH["G5"]["margin_min"], text
    assert r.figures["min_same"] > max(r.figures["reversed"], r.figures["other"]), text
