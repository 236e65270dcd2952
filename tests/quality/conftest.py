"""Quality gates on the committed toy-world models (dmt/toyworld/model, dmt/toyworld/wan_model):
does the method work?

Each gate compares with a baseline on the same seeds and prompts, and its thresholds are
dmt.toyworld.evaluate.THRESHOLDS (also printed by `python -m dmt toyworld eval`). Each was shown
once to fail with the method switched off (guidance off for G2/G4, a random motion file for G3, a
reversed/shuffled/other motion for G5): the figures are in bench/README.md. The toy ZeroScope's
gates are one file each (test_gate_*.py: `.ci/run` spreads files over the CPU's cores), the toy
Wan's are test_gates_wan.py. CI runs a subset (fast preset; G3 with the circle alone in LoRA mode;
pyramid fuse); `toyworld eval` runs the whole table. Gates a bundled model does not meet yet are
strict expected failures (helpers.not_met_by), never silent passes.
"""

from __future__ import annotations

import pytest
import torch

from dmt import load_zeroscope
from dmt.toyworld.card import BUNDLED_MODEL, read_card


@pytest.fixture(scope="module")
def toy():
    """The bundled toy ZeroScope, float32 on the CPU, run on one thread."""
    assert read_card(BUNDLED_MODEL) is not None, f"the trained toy model is missing from {BUNDLED_MODEL}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64x64 model only loses time to more threads on a busy machine
    yield load_zeroscope(BUNDLED_MODEL, "float32", "cpu")
    torch.set_num_threads(threads)
