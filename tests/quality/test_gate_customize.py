"""G3 on the bundled toy ZeroScope (fixture `toy`, conftest.py): a held-out motion learnt from
example clips under a token, against the same prompt on the base model; the prior; strength 0.
Thresholds: dmt.toyworld.evaluate.THRESHOLDS."""

from __future__ import annotations

import pytest
import torch
from helpers import gate_report as _report
from helpers import toy_not_met

from dmt.toyworld import evaluate as ev

TH = ev.THRESHOLDS


@pytest.fixture(scope="module")
def g3_circle(toy):
    """The circle learnt with LoRA (600 steps), without the second motion (CI's share of G3)."""
    return ev.gate_customize(toy, modes=("lora",), second_motion=False)


@pytest.fixture(scope="module")
def g3(toy):
    return ev.gate_customize(toy, modes=("lora",))


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


def test_g3_the_vae_carries_the_taught_motion(g3_circle):
    """The example clips' latents decoded again keep the circle's velocity profile (0.15 px/frame
    against the base model's 11.3), so G3 measures the customization, not the VAE. The toy Wan's
    VAE cannot (test_gates_wan.py)."""
    assert g3_circle.figures["ratio_roundtrip"] <= 0.1, _report(g3_circle)


def test_g3_lora_learns_the_held_out_motion(g3_circle):
    assert g3_circle.figures["lora"]["ratio"] <= TH["G3"]["ratio_max"], _report(g3_circle)


@toy_not_met("direction accuracy 25 % of 8 with the motion applied (threshold 85 %; the base model's direction "
             "words are not bound, see G1)")
def test_g3_prior_holds_with_the_motion_applied(g3_circle):
    assert g3_circle.figures["lora"]["prior_accuracy"] >= TH["G3"]["prior_accuracy_min"], _report(g3_circle)


@toy_not_met("ratios 1.56 (circle) and 1.43 (zigzag, 1200 steps) with both applied (threshold 0.5; "
             "each alone: 0.40 and 0.25)", run=False)
def test_g3_two_motions_together(g3):
    two = g3.figures["two_motions"]
    assert max(two["ratio_circle"], two["ratio_zigzag"]) <= TH["G3"]["ratio_max"], _report(g3)
