"""Quality gates on the committed toy-world Wan 2.1 (dmt/toyworld/wan_model): the same world, gates
and thresholds as the toy ZeroScope's (dmt.toyworld.evaluate.THRESHOLDS), on Wan's classes.

CI runs G1 (base model) and the caption-word probe; `python -m dmt toyworld eval --model wan` runs
the whole table (G2 with attention motion flow, SMM and guidance off; G3). G4 is not run on Wan:
context windows are ZeroScope's only for now. Gates the toy Wan does not meet yet are strict
expected failures, never silent passes.
"""

from __future__ import annotations

import pytest
import torch
from helpers import gate_report as _report
from helpers import not_met_by

from dmt.models.wan import load_wan
from dmt.toyworld import evaluate as ev
from dmt.toyworld.card import BUNDLED_WAN_MODEL, WAN_MODEL_KIND, read_card
from dmt.toyworld.diagnose import caption_word_gaps

TH = ev.THRESHOLDS
CARD = "dmt/toyworld/wan_model/README.md"


def not_met(measured: str, run: bool = True):
    return not_met_by("the bundled toy Wan", CARD, measured, run)


@pytest.fixture(scope="module")
def toy_wan():
    card = read_card(BUNDLED_WAN_MODEL)
    assert card is not None and card["kind"] == WAN_MODEL_KIND, f"the toy Wan is missing from {BUNDLED_WAN_MODEL}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_wan(BUNDLED_WAN_MODEL, "float32", "cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def g1(toy_wan):
    return ev.gate_base(toy_wan, samples=TH["G1"]["samples_min"])


def test_g1_toy_wan_gives_the_prompted_direction(g1):
    """The gate the toy ZeroScope fails (its direction words are not bound: 16.7 %). On the toy
    Wan they bind; what differs is in its card (rotary positions that give every token its frame,
    text cross-attention on every space-time token, flow matching)."""
    assert g1.figures["direction_accuracy"] >= TH["G1"]["direction_accuracy_min"], _report(g1)


@not_met("colour 85.4 % of 48 (threshold 90 %): green drawn blue in 4 samples")
def test_g1_toy_wan_gives_the_prompted_colour(g1):
    assert g1.figures["colour_accuracy"] >= TH["G1"]["colour_accuracy_min"], _report(g1)


def test_the_toy_wan_reads_the_direction_word(toy_wan):
    """`toyworld words` at the noisiest step: swapping the direction word (left↔right, up↔down)
    raises the x0 error as swapping the colour does. The same probe on the toy ZeroScope gives
    −0.0001 (its direction words unbound), so this fails on a model that ignores them."""
    gaps = caption_word_gaps(toy_wan, timestep=999, clips=8)
    assert gaps["direction"] > 0.02 and gaps["colour"] > 0.02, gaps


@not_met("attention motion flow: trajectory ratio 0.95 (threshold 0.5), guidance off 0.95; `toyworld eval --model wan`",
         run=False)
def test_g2_toy_wan_transfer_follows_the_source(toy_wan):
    g2 = ev.gate_transfer(toy_wan, count=TH["G2"]["clips_min"], preset="amf")
    assert g2.figures["ratio"] <= TH["G2"]["ratio_max"], _report(g2)
