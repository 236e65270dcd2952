"""Quality gates on the committed toy-world model (dmt/toyworld/model): does the method work?

Each gate compares with a baseline on the same seeds and prompts, and its thresholds are
dmt.toyworld.evaluate.THRESHOLDS (also printed by `python -m dmt toyworld eval`). Each was shown
once to fail with the method switched off (guidance off for G2/G4, a random motion file for G3, a
reversed/shuffled/other motion for G5): the figures are in bench/README.md. This runs the CI
subset (fast preset, LoRA, pyramid fuse); `toyworld eval` runs the whole table.
"""

from __future__ import annotations

import pytest
import torch

from dmt import load_zeroscope
from dmt.toyworld import evaluate as ev
from dmt.toyworld.card import BUNDLED_MODEL, read_card

TH = ev.THRESHOLDS


@pytest.fixture(scope="module")
def toy():
    assert read_card(BUNDLED_MODEL) is not None, f"the trained toy model is missing from {BUNDLED_MODEL}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64x64 model only loses time to more threads on a busy machine
    yield load_zeroscope(BUNDLED_MODEL, "float32", "cpu")
    torch.set_num_threads(threads)


def _report(result) -> str:
    return f"{result.name}: {result.figures}"


def test_g1_base_model_follows_colour_and_direction(toy):
    r = ev.gate_base(toy, samples=TH["G1"]["samples_min"])
    print(_report(r))
    assert all(ev.verdicts(r).values()), _report(r)


def test_g2_transfer_carries_held_out_motion_onto_another_object(toy):
    r = ev.gate_transfer(toy, count=TH["G2"]["clips_min"], preset="fast")
    print(_report(r))
    assert r.figures["ratio"] <= TH["G2"]["ratio_max"], _report(r)
    assert r.figures["colour_accuracy"] >= TH["G2"]["colour_accuracy_min"], _report(r)
    assert r.figures["mf_transfer"] > r.figures["mf_baseline"], _report(r)


def test_g3_customization_learns_a_held_out_motion(toy):
    r = ev.gate_customize(toy, modes=("lora",))
    print(_report(r))
    v = ev.verdicts(r)
    assert v["lora strength 0"], _report(r)  # strength 0 is the base model, bit for bit
    assert v["lora motion"] and v["lora prior"], _report(r)
    assert v["two motions"], _report(r)


def test_g4_long_video_follows_the_source_without_seams(toy):
    r = ev.gate_long_video(toy, fuses=("pyramid",))
    print(_report(r))
    assert all(ev.verdicts(r).values()), _report(r)


def test_g5_motion_fidelity_separates_same_from_other_motions():
    r = ev.gate_metric()
    print(_report(r))
    assert r.figures["margin"] >= TH["G5"]["margin_min"], _report(r)
    assert r.figures["min_same"] > max(r.figures["reversed"], r.figures["other"]), _report(r)
