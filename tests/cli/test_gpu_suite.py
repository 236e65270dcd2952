"""bench/gpu_suite.sh runs only where a GPU is (never in CI): check here that every option it passes
exists in the script or command it calls, so that a rare GPU session is not lost to a typo."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = (ROOT / "bench" / "gpu_suite.sh").read_text()

#: what the suite calls -> the command that prints its options
PROGRAMS = {
    "bench/bench_dmt.py": [sys.executable, "bench/bench_dmt.py", "--help"],
    "bench/bench_wan.py": [sys.executable, "bench/bench_wan.py", "--help"],
    "-m dmt toyworld train": [sys.executable, "-m", "dmt", "toyworld", "train", "--help"],
    "-m dmt toyworld eval": [sys.executable, "-m", "dmt", "toyworld", "eval", "--help"],
}


def _calls(program: str) -> list[str]:
    """The suite's calls of `program`, each joined across its backslash-continued lines."""
    text = SUITE.replace("\\\n", " ")
    return [line for line in text.splitlines() if f"python {program}" in line]


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_option_the_gpu_suite_passes_exists(program):
    calls = _calls(program)
    assert calls, f"gpu_suite.sh no longer calls {program}: update this test"
    flags = {f for call in calls for f in re.findall(r"\s(--[a-z][a-z0-9-]*)", call.split(">")[0])}
    if program == "bench/bench_dmt.py":  # the shared options of every run()
        flags |= set(re.findall(r"(--[a-z][a-z0-9-]*)", SUITE.split("COMMON=(")[1].split(")")[0]))
    helptext = subprocess.run(PROGRAMS[program], cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    missing = sorted(f for f in flags if f not in helptext)
    assert not missing, f"gpu_suite.sh passes {missing} to {program}, which has no such options"


def test_the_gpu_suite_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_suite.sh")], check=True)
