"""Shared fixtures: a tiny random ZeroScope saved as a real diffusers folder, synthetic clips."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download anything

import pytest
import torch

torch.set_num_threads(1)  # tiny models: threads only add overhead on a busy 2-core machine

import dmt  # noqa: E402
from dmt.models.random_model import save_random_model  # noqa: E402
from dmt.models.random_wan import save_random_wan  # noqa: E402

from helpers import INV_STEPS, STEPS, moving_square_clip  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    return str(save_random_model(tmp_path_factory.mktemp("models") / "dmt-tiny", size="tiny", seed=0))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir) -> dmt.ZeroScope:
    return dmt.load_zeroscope(tiny_model_dir, "float32", "cpu")


@pytest.fixture(scope="session")
def clip() -> torch.Tensor:
    return moving_square_clip()


@pytest.fixture(scope="session")
def inversion(tiny_model, clip) -> dmt.Inversion:
    return dmt.invert_video(tiny_model, clip, "a square", num_inversion_steps=INV_STEPS, num_sampling_steps=STEPS)


@pytest.fixture(scope="session")
def targets(tiny_model, inversion) -> dmt.Targets:
    return dmt.extract_targets(tiny_model, inversion)


@pytest.fixture(scope="session")
def wan_dir(tmp_path_factory) -> Path:
    """The tiny random Wan 2.1 (diffusers' test configuration) saved as a diffusers folder."""
    return save_random_wan(tmp_path_factory.mktemp("wan") / "wan-tiny", "tiny", seed=0)


@pytest.fixture(scope="session")
def wan(wan_dir) -> dmt.Wan:
    """The tiny random Wan loaded in float32 on the CPU (shared: tests must leave it as they found it)."""
    return dmt.load_wan(wan_dir, "float32", "cpu")
