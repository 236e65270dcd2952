"""The torch thread count of the commands that run a model: --threads N, else OMP_NUM_THREADS, else
one thread for a small model (dmt.models.threads), so a tiny model never oversubscribes a busy
machine and nobody has to set OMP_NUM_THREADS=1 by hand."""

from __future__ import annotations

import pytest
import torch

from dmt.cli import build_parser, main
from dmt.errors import InputError
from dmt.models.threads import SMALL_UNET_PARAMETERS, choose_threads


def test_the_rule():
    small, big = 5_000_000, 1_410_000_000  # the toy UNet, ZeroScope's
    assert choose_threads(small, environ={}) == 1
    assert choose_threads(SMALL_UNET_PARAMETERS - 1, environ={}) == 1
    assert choose_threads(SMALL_UNET_PARAMETERS, environ={}) is None  # torch's default
    assert choose_threads(big, environ={}) is None
    assert choose_threads(small, environ={"OMP_NUM_THREADS": "4"}) is None  # the user's setting stands
    assert choose_threads(small, environ={"OMP_NUM_THREADS": ""}) == 1  # empty = not set
    assert choose_threads(small, requested=3, environ={"OMP_NUM_THREADS": "4"}) == 3  # --threads wins
    assert choose_threads(big, requested=2, environ={}) == 2
    with pytest.raises(InputError, match="thread count is 0: it must be a whole number from 1 to 1024"):
        choose_threads(small, requested=0, environ={})


@pytest.mark.parametrize("command", ["transfer", "customize", "generate", "demo", "batch"])
def test_every_command_that_runs_a_model_has_threads(command):
    sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    (action,) = [a for a in sub._actions if "--threads" in a.option_strings]
    assert action.default is None and action.type is int
    assert "OMP_NUM_THREADS" in action.help and "1 for a small model" in action.help


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _generate(tiny_model_dir, tmp_path, *extra):
    return main(["generate", "--model", tiny_model_dir, "--prompt", "a blob", "--frames", "2", "--height", "64",
                 "--width", "64", "--steps", "1", "--out", str(tmp_path / "v.mp4"), *extra])


def test_small_model_gets_one_thread_unless_the_user_chose(tiny_model_dir, tmp_path, capsys, monkeypatch,
                                                           restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    assert _generate(tiny_model_dir, tmp_path) == 0
    assert torch.get_num_threads() == 1
    assert "using 1 CPU thread for this small model" in capsys.readouterr().err
    assert _generate(tiny_model_dir, tmp_path, "--threads", "2") == 0
    assert torch.get_num_threads() == 2
    assert "using 1 CPU thread" not in capsys.readouterr().err
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _generate(tiny_model_dir, tmp_path) == 0
    assert torch.get_num_threads() == 2  # left as the environment says
    assert main(["generate", "--model", tiny_model_dir, "--prompt", "x", "--out", str(tmp_path / "w.mp4"),
                 "--threads", "0"]) == 2
    assert "--threads is 0: it must be a whole number from 1 to 1024." in capsys.readouterr().err
