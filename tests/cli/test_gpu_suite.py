"""bench/gpu_suite.sh runs only where a GPU is (never in CI): check here that every option it passes
exists in the script or command it calls, so that a rare GPU session is not lost to a typo."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = (ROOT / "bench" / "gpu_suite.sh").read_text()

#: what the suite calls -> the arguments that print its options (the script's or `dmt`'s main)
PROGRAMS = {
    "bench/bench_dmt.py": ["--help"],
    "bench/bench_wan.py": ["--help"],
    "-m dmt toyworld train": ["toyworld", "train", "--help"],
    "-m dmt toyworld eval": ["toyworld", "eval", "--help"],
}


def _help(program: str, capsys, monkeypatch) -> str:
    """The help text `program` prints, from its own argument parser, in this process (a subprocess
    per program would spend most of its time importing torch)."""
    args = PROGRAMS[program]
    if program.startswith("bench/"):
        spec = importlib.util.spec_from_file_location(Path(program).stem, ROOT / program)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setattr(sys, "argv", [program, *args])  # bench_wan.main() reads sys.argv
        main = module.main
    else:
        from dmt.cli import main as dmt_main

        def main():
            return dmt_main(args)
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code in (0, None), f"{program} {' '.join(args)} failed"
    out = capsys.readouterr().out
    assert out.startswith("usage:"), f"{program} printed no help: {out[:200]!r}"
    return out


def _calls(program: str) -> list[str]:
    """The suite's calls of `program`, each joined across its backslash-continued lines."""
    text = SUITE.replace("\\\n", " ")
    return [line for line in text.splitlines() if f"python {program}" in line]


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_option_the_gpu_suite_passes_exists(program, capsys, monkeypatch):
    calls = _calls(program)
    assert calls, f"gpu_suite.sh no longer calls {program}: update this test"
    flags = {f for call in calls for f in re.findall(r"\s(--[a-z][a-z0-9-]*)", call.split(">")[0])}
    if program == "bench/bench_dmt.py":  # the shared options of every run()
        flags |= set(re.findall(r"(--[a-z][a-z0-9-]*)", SUITE.split("COMMON=(")[1].split(")")[0]))
    helptext = _help(program, capsys, monkeypatch)
    missing = sorted(f for f in flags if f not in helptext)
    assert not missing, f"gpu_suite.sh passes {missing} to {program}, which has no such options"


def test_the_gpu_suite_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_suite.sh")], check=True)
