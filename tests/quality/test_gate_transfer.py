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
