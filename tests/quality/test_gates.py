"""Quality gates on the committed toy-world model (dmt/toyworld/model): does the method work?

Each gate compares with a baseline on the same seeds and prompts, and its thresholds are
dmt.toyworld.evaluate.THRESHOLDS (also printed by `python -m dmt toyworld eval`). Each was shown
once to fail with the method switched off (guidance off for G2/G4, a random motion file for G3, a
reversed/shuffled/other motion for G5): the figures are in bench/README.md. This runs the CI
subset (fast preset; G3 with the circle alone in LoRA mode; pyramid fuse); `toyworld eval` runs
the whole table. Gates the bundled model does not meet yet are strict expected failures
(`not_met`), never silent passes.
"""

from __future__ import annotations

import pytest
import torch
from helpers import gate_report as _report
from helpers import not_met_by

from dmt import load_zeroscope
from dmt.toyworld import evaluate as ev
from dmt.toyworld.card import BUNDLED_MODEL, read_card

TH = ev.THRESHOLDS


def not_met(measured: str, run: bool = True):
    """A gate the bundled toy model does not meet yet (see helpers.not_met_by)."""
    return not_met_by("the bundled toy model", "dmt/toyworld/model/README.md", measured, run)


@pytest.fixture(scope="module")
def toy():
    assert read_card(BUNDLED_MODEL) is not None, f"the trained toy model is missing from {BUNDLED_MODEL}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64x64 model only loses time to more threads on a busy machine
    yield load_zeroscope(BUNDLED_MODEL, "float32", "cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def g1(toy):
    return ev.gate_base(toy, samples=TH["G1"]["samples_min"])


@pytest.fixture(scope="module")
def g2(toy):
    return ev.gate_transfer(toy, count=TH["G2"]["clips_min"], preset="fast")


@pytest.fixture(scope="module")
def g3_circle(toy):
    """The circle learnt with LoRA (600 steps), without the second motion (CI's share of G3)."""
    return ev.gate_customize(toy, modes=("lora",), second_motion=False)


@pytest.fixture(scope="module")
def g3(toy):
    return ev.gate_customize(toy, modes=("lora",))


@pytest.fixture(scope="module")
def g4(toy):
    return ev.gate_long_video(toy, fuses=("pyramid",))


def test_g1_base_model_gives_the_prompted_colour(g1):
    assert g1.figures["colour_accuracy"] >= TH["G1"]["colour_accuracy_min"], _report(g1)


@not_met("direction 16.7 % of 48 (threshold 90 %; chance 25 %)")
def test_g1_base_model_gives_the_prompted_direction(g1):
    assert g1.figures["direction_accuracy"] >= TH["G1"]["direction_accuracy_min"], _report(g1)


@not_met("error 13.7 px vs 18.0 px for text-to-video, ratio 0.76 (threshold 0.5)")
def test_g2_transfer_follows_the_held_out_source(g2):
    assert g2.figures["ratio"] <= TH["G2"]["ratio_max"], _report(g2)


def test_g2_transfer_gives_the_prompted_colour(g2):
    assert g2.figures["colour_accuracy"] >= TH["G2"]["colour_accuracy_min"], _report(g2)


def test_g2_transfer_keeps_more_motion_than_text_to_video(g2):
    assert g2.figures["mf_transfer"] >= g2.figures["mf_baseline"] + TH["G2"]["mf_margin_min"], _report(g2)


def test_g3_strength_zero_is_the_base_model(toy):
    """A motion applied at strength 0 gives the base model's latents bit for bit."""
    from dmt.customize.generate import GenerateSettings, generate_video

    motion = ev.learn_motion(toy, "circle", "sks", ev.toy_train_settings("lora", 5))
    s = GenerateSettings(num_frames=8, height=64, width=64, steps=10, seed=3)
    a = generate_video(toy, "a blue ball doing the sks move", motions=[(motion, 0.0)], negative_prompt="",
                       settings=s, decode=False).latents
    b = generate_video(toy, "a blue ball doing the sks move", negative_prompt="", settings=s, decode=False).latents
    c = generate_video(toy, "a blue ball doing the sks move", motions=[(motion, 1.0)], negative_prompt="",
                       settings=s, decode=False).latents
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_g3_lora_learns_the_held_out_motion(g3_circle):
    assert g3_circle.figures["lora"]["ratio"] <= TH["G3"]["ratio_max"], _report(g3_circle)


@not_met("direction accuracy 25 % of 8 with the motion applied (threshold 85 %; the base model's direction "
         "words are not bound, see G1)")
def test_g3_prior_holds_with_the_motion_applied(g3_circle):
    assert g3_circle.figures["lora"]["prior_accuracy"] >= TH["G3"]["prior_accuracy_min"], _report(g3_circle)


@not_met("ratios 1.63 (circle) and 1.52 (zigzag) with both applied (threshold 0.5)", run=False)
def test_g3_two_motions_together(g3):
    two = g3.figures["two_motions"]
    assert max(two["ratio_circle"], two["ratio_zigzag"]) <= TH["G3"]["ratio_max"], _report(g3)


def test_g4_long_video_follows_the_source(g4):
    f = g4.figures
    assert f["pyramid"]["err_px"] <= TH["G4"]["ratio_max"] * f["baseline_err_px"], _report(g4)


def test_g4_no_jump_at_window_seams(g4):
    assert g4.figures["pyramid"]["seam_ratio"] <= TH["G4"]["seam_ratio_max"], _report(g4)


def test_g5_motion_fidelity_separates_same_from_other_motions():
    r = ev.gate_metric()
    text = _report(r)
    assert r.figures["margin"] >= TH["G5"]["margin_min"], text
    assert r.figures["min_same"] > max(r.figures["reversed"], r.figures["other"]), text
