"""Fixtures that run this pack inside a real ComfyUI server (CPU).

Needs DMT_COMFYUI_DIR (a ComfyUI checkout, see .ci/setup_comfyui.sh). Without it these tests are
skipped, unless DMT_REQUIRE_COMFY=1, when they fail.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_helpers import Server, make_base  # noqa: E402


def _comfy_dir() -> Path:
    value = os.environ.get("DMT_COMFYUI_DIR")
    required = os.environ.get("DMT_REQUIRE_COMFY") == "1"
    reason = None
    if not value:
        reason = ("DMT_COMFYUI_DIR is not set: no ComfyUI to run the pack in "
                  "(bash .ci/setup_comfyui.sh WORK, then DMT_COMFYUI_DIR=WORK/ComfyUI)")
    elif not (Path(value) / "main.py").is_file():
        reason = f"DMT_COMFYUI_DIR={value} holds no ComfyUI main.py"
    if reason:
        if required:
            pytest.fail(reason + " (DMT_REQUIRE_COMFY=1)")
        pytest.skip(reason)
    return Path(value).resolve()


@pytest.fixture(scope="session")
def comfy_dir() -> Path:
    return _comfy_dir()


@pytest.fixture(scope="session")
def server(comfy_dir, tmp_path_factory):
    """One server for the session, --cache-none: every prompt runs every node."""
    base = make_base(tmp_path_factory.mktemp("comfy-base"))
    srv = Server(comfy_dir, base, cache=False).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def caching_server(comfy_dir, tmp_path_factory):
    """A server with ComfyUI's default output cache (the user's normal setup)."""
    base = make_base(tmp_path_factory.mktemp("comfy-base-cached"))
    srv = Server(comfy_dir, base, cache=True).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def object_info(server) -> dict:
    return server.get("/object_info")
