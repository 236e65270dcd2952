"""The library installs from a wheel into a fresh virtual environment and works from outside
the checkout: `import dmt` and the `dmt-motion` console script.

The fresh venv sees this venv's site-packages through a .pth file (torch, diffusers... are not
downloaded again) and the wheel is installed with --no-deps; nothing else of the checkout is
importable there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(args, cwd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, **kw)  # a hang guard only


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    try:
        import build  # noqa: F401
    except ImportError:
        if os.environ.get("DMT_REQUIRE_COMFY") == "1":  # CI (.ci/run installs build)
            pytest.fail("the 'build' package is missing (pip install build)")
        pytest.skip("the 'build' package is missing (pip install build)")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "dmt", src / "dmt", ignore=shutil.ignore_patterns("__pycache__"))
    # the repository's other top-level folders must not end up in the wheel: give the build some
    shutil.copytree(REPO / "nodes", src / "nodes", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "tests").mkdir()
    (src / "tests" / "__init__.py").write_text("")
    out = tmp_path_factory.mktemp("dist")
    r = _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, src], cwd=src)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (whl,) = out.glob("*.whl")
    return whl


def test_wheel_holds_only_the_library_with_licence(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"dmt"}, tops
    for sub in ("models", "transfer", "metrics", "io", "cli"):
        assert f"dmt/{sub}/__init__.py" in names, sub
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    for weights in ("model/unet/diffusion_pytorch_model.safetensors",  # the bundled toy models
                    "wan_model/transformer/diffusion_pytorch_model.safetensors", "wan_model/README.md"):
        assert f"dmt/toyworld/{weights}" in names, weights
    assert "License-Expression: MIT" in meta
    assert "dmt-motion = dmt.cli:main" in entry


def test_wheel_installs_and_runs_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    r = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip())
    (site / "ci_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch etc. from this venv
    r = _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index", wheel],
             cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    r = _run([py, "-c", "import dmt, sys; print(dmt.__file__); print(dmt.transfer.__module__, dmt.motion_fidelity.__name__)"],
             cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith(str(site)), r.stdout  # the installed copy, not the checkout
    script = venv / "bin" / "dmt-motion"
    assert script.is_file()
    r = _run([script, "--help"], cwd=work, env=env)
    assert r.returncode == 0 and "transfer" in r.stdout and "score" in r.stdout, r.stdout + r.stderr
    assert r.stdout.startswith("usage: dmt-motion"), r.stdout[:200]
