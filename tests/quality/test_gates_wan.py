"""Quality gates on the committed toy-world Wan 2.1 (dmt/toyworld/wan_model): the same world, gates
and thresholds as the toy ZeroScope's (dmt.toyworld.evaluate.THRESHOLDS), on Wan's classes.

CI runs G1 (base model), the caption-word probe, G3 with the circle alone in LoRA mode and G4
(long video in context windows, pyramid fuse); `python -m dmt toyworld eval --model wan` runs the
whole table (G2 with attention motion flow, SMM and guidance off; G3 in both modes and with two
motions; G4 with both fuses and guidance off). Gates the toy Wan does not
meet yet are strict expected failures, never silent passes.
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


def test_g1_toy_wan_gives_the_prompted_colour(g1):
    """93.8 % on the gate's 48 seeds (93.8 % and 95.8 % on two other sets); the wrong samples are
    yellow triangles drawn red. The toy Wan before 2026-12-06 (a VAE that washed out the first
    frame, 8000 transformer steps) gave 85.4 %: its card says what changed."""
    assert g1.figures["colour_accuracy"] >= TH["G1"]["colour_accuracy_min"], _report(g1)


def test_the_toy_wan_reads_the_direction_word(toy_wan):
    """`toyworld words` at the noisiest step: swapping the direction word (left↔right, up↔down)
    raises the x0 error as swapping the colour does. The same probe on the toy ZeroScope gives
    −0.0001 (its direction words unbound), so this fails on a model that ignores them."""
    gaps = caption_word_gaps(toy_wan, timestep=999, clips=8)
    assert gaps["direction"] > 0.02 and gaps["colour"] > 0.02, gaps


@not_met("attention motion flow: trajectory ratio 0.72 (threshold 0.5), guidance off 0.80; `toyworld eval --model wan`",
         run=False)
def test_g2_toy_wan_transfer_follows_the_source(toy_wan):
    g2 = ev.gate_transfer(toy_wan, count=TH["G2"]["clips_min"], preset="amf")
    assert g2.figures["ratio"] <= TH["G2"]["ratio_max"], _report(g2)


@pytest.fixture(scope="module")
def g3_circle(toy_wan):
    """The circle learnt with LoRA (600 steps, the toy ZeroScope's settings), as CI runs G3 on the
    toy ZeroScope."""
    return ev.gate_customize(toy_wan, modes=("lora",), second_motion=False)


@not_met("LoRA velocity error 8.9 vs 9.9 px/frame (ratio 0.90, threshold 0.5); what limits it: "
         "test_g3_the_toy_wan_vae_carries_the_taught_motion")
def test_g3_toy_wan_learns_the_held_out_motion(g3_circle):
    assert g3_circle.figures["lora"]["ratio"] <= TH["G3"]["ratio_max"], _report(g3_circle)


@not_met("the example circles' latents decoded again: 9.7 px/frame against the base model's 9.9 (ratio 0.98)")
def test_g3_the_toy_wan_vae_carries_the_taught_motion(g3_circle):
    """What G3 on the toy Wan needs first: its VAE must give back the examples' circle (the toy
    ZeroScope's: ratio 0.013). At 9 frames the circle moves 9.6 px a frame, and 4 frames share a
    latent frame; the VAE, trained on straight lines only, gives back a stalled and jumping path."""
    assert g3_circle.figures["ratio_roundtrip"] <= TH["G3"]["ratio_max"], _report(g3_circle)


def test_g3_toy_wan_prior_holds_with_the_motion_applied(g3_circle):
    """Vocabulary prompts without the token keep their direction with the circle applied (the toy
    ZeroScope cannot: its direction words are not bound)."""
    assert g3_circle.figures["lora"]["prior_accuracy"] >= TH["G3"]["prior_accuracy_min"], _report(g3_circle)


def test_g3_toy_wan_strength_zero_is_the_base_model(g3_circle):
    assert g3_circle.figures["lora"]["strength0_equals_base"], _report(g3_circle)


@pytest.fixture(scope="module")
def g4(toy_wan):
    """A 49-frame held-out circle (13 latent frames) in windows of 16 frames (4 latent frames, 6
    windows) onto a blue square. The windows' plumbing is tested on the tiny random Wan
    (tests/transfer/test_wan_context.py); here only the gate, which the toy Wan does not meet: its
    windows are longer than its training clips (9 frames, 3 latent frames), and beyond those it
    draws blobs (text-to-video of 17 frames or more, looked at as frames; its card)."""
    return ev.gate_long_video(toy_wan, fuses=("pyramid",))


@not_met("trajectory 21.0 px vs text-to-video 15.7 (ratio 1.34, threshold 0.5; guidance off 20.8)")
def test_g4_toy_wan_long_video_follows_the_source(g4):
    f = g4.figures
    assert f["pyramid"]["err_px"] <= TH["G4"]["ratio_max"] * f["baseline_err_px"], _report(g4)


@not_met("largest step at a seam 1.64 x the median step elsewhere (threshold 1.5)")
def test_g4_toy_wan_long_video_has_no_jump_at_seams(g4):
    assert g4.figures["pyramid"]["seam_ratio"] <= TH["G4"]["seam_ratio_max"], _report(g4)
