"""G2 on the bundled toy ZeroScope (fixture `toy`, conftest.py), the paper's claim: held-out
source motions transferred onto another object, against plain text-to-video of the same prompt
and seed. Thresholds: dmt.toyworld.evaluate.THRESHOLDS."""

from __future__ import annotations

import pytest
from helpers import gate_report as _report
from helpers import toy_not_met

from dmt.toyworld import evaluate as ev

TH = ev.THRESHOLDS


@pytest.fixture(scope="module")
def g2(toy):
    return ev.gate_transfer(toy, count=TH["G2"]["clips_min"], preset="fast")


@toy_not_met("error 13.7 px vs 18.0 px for text-to-video, ratio 0.76 (threshold 0.5)")
def test_g2_transfer_follows_the_held_out_source(g2):
    assert g2.figures["ratio"] <= TH["G2"]["ratio_max"], _report(g2)


def test_g2_transfer_gives_the_prompted_colour(g2):
    assert g2.figures["colour_accuracy"] >= TH["G2"]["colour_accuracy_min"], _report(g2)


def test_g2_transfer_keeps_more_motion_than_text_to_video(g2):
    assert g2.figures["mf_transfer"] >= g2.figures["mf_baseline"] + TH["G2"]["mf_margin_min"], _report(g2)


def test_g2_guidance_lowers_its_loss_within_each_step_and_the_vae_leaves_the_gate_reachable(g2):
    """What limits G2, measured with it: the guidance's optimiser lowers the SMM loss within its
    guided steps (an optimiser that did nothing scores 0), and the source encoded and decoded by
    the toy VAE (a perfect copy of the source latent) scores well inside the threshold, so the gate
    asks for what this model can show. On the toy Wan the round trip alone scores 0.40 (its card)."""
    f = g2.figures
    assert f["loss_step_drop"] > 0.01 and f["loss_end"] < f["loss_start"], _report(g2)
    assert f["ratio_roundtrip"] < TH["G2"]["ratio_max"] / 2, _report(g2)
