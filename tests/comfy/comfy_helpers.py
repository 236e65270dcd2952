"""Helpers for running this pack in a real ComfyUI server (CPU) from tests.

A server runs ComfyUI's main.py from $DMT_COMFYUI_DIR with a private --base-directory that holds
custom_nodes/<pack> (a symlink to this checkout), a tiny random ZeroScope in
models/diffusers/dmt-tiny and a small synthetic input video.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = "comfyui-dmt"
TINY_MODEL = "dmt-tiny"
TINY_WAN = "dmt-tiny-wan"
INPUT_VIDEO = "input_video.mp4"   # the tests' own clip; the workflows use the pack's example clip
WORKFLOW_DIR = REPO / "workflows"  # served by ComfyUI as the pack's templates (/api/workflow_templates/<pack>/)
INPUT_FRAMES, INPUT_SIZE = 8, (96, 64)   # (W, H) of the synthetic input video
ONE_FRAME_VIDEO = "one_frame.mp4"

# Small settings that keep a whole workflow at a few seconds on one CPU thread. 50 inversion
# steps visit every timestep of a 10-step schedule (its guided steps are 901, 801, 701, 601).
SMALL = {
    "DMTInvertVideo": {"inversion_steps": 50, "width": 64, "height": 64, "frame_count": 6, "sampling_steps": 10},
    "DMTExtractTargets": {"sampling_steps": 10},
    "DMTGuidedSampler": {"optimization_steps": 2},
    "DMTLoadZeroScope": {"model_name": TINY_MODEL, "dtype": "float32", "device": "cpu"},
    "DMTLoadWan": {"model_name": TINY_WAN, "dtype": "float32", "device": "cpu"},
    "ImageFromBatch": {"length": 6},  # the input cut to the same frame count (Motion Fidelity compares them)
}
SMALL_FRAMES, SMALL_SIZE = 6, (64, 64)
# On Wan (4k + 1 frames): 5 frames, two latent frames. Pass as shrink(prompt, WAN_SMALL).
WAN_SMALL = {"DMTInvertVideo": {**SMALL["DMTInvertVideo"], "frame_count": 5},
             "DMTMotionExamples": {"frame_count": 5, "width": 64, "height": 64},
             "DMTTrainMotion": {"rank": 2, "steps": 2, "learning_rate": 0.05, "validation_steps": 2}}
WAN_SMALL_FRAMES = 5


def latest_frontend_root(comfy_dir: Path) -> Path | None:
    """The static folder of the newest frontend package installed by .ci/setup_comfyui.sh
    (WORK/frontend-latest next to WORK/ComfyUI), or $DMT_FRONTEND_LATEST; None when absent."""
    value = os.environ.get("DMT_FRONTEND_LATEST")
    root = Path(value) if value else Path(comfy_dir).parent / "frontend-latest" / "comfyui_frontend_package" / "static"
    return root if (root / "index.html").is_file() else None


def frontend_version(root: Path | None) -> str:
    """Version of the frontend package whose static folder is `root` (None: the pinned one)."""
    if root is None:
        from importlib.metadata import version

        return version("comfyui-frontend-package")
    for info in root.parent.parent.glob("comfyui_frontend_package-*.dist-info"):
        return info.name.removesuffix(".dist-info").split("-", 1)[1]
    return "unknown"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_base(base: Path) -> Path:
    """Create a ComfyUI base directory with this pack, the tiny model and input videos."""
    sys.path.insert(0, str(REPO)) if str(REPO) not in sys.path else None
    import torch

    from dmt.models.random_model import save_random_model
    from dmt.io.video import write_video

    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / PACK_NAME
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    model = base / "models" / "diffusers" / TINY_MODEL
    if not (model / "unet").is_dir():
        save_random_model(model)
    wan = base / "models" / "diffusers" / TINY_WAN
    if not (wan / "transformer").is_dir():
        from dmt.models.random_wan import save_random_wan

        save_random_wan(wan, "tiny", seed=0)
    # An incomplete model folder (no unet/ weights) for the error tests.
    broken = base / "models" / "diffusers" / "broken-model"
    (broken / "unet").mkdir(parents=True, exist_ok=True)
    (broken / "model_index.json").write_text("{}")
    (base / "input").mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(0)
    w, h = INPUT_SIZE
    # A bright square moving right over a smooth random background: real motion, deterministic.
    bg = torch.rand(1, 3, h // 8, w // 8, generator=g)
    bg = torch.nn.functional.interpolate(bg, size=(h, w), mode="bilinear")[0].permute(1, 2, 0)
    frames = bg.expand(INPUT_FRAMES, h, w, 3).clone()
    for i in range(INPUT_FRAMES):
        x = 4 + 6 * i
        frames[i, 20:40, x:x + 20] = torch.tensor([1.0, 0.9, 0.2])
    write_video(base / "input" / INPUT_VIDEO, frames, fps=8)
    write_video(base / "input" / ONE_FRAME_VIDEO, frames[:1], fps=8)
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    return base


@dataclass
class Server:
    comfy_dir: Path
    base: Path
    cache: bool = False
    front_end_root: Path | None = None  # a frontend's static folder (--front-end-root); None: the pinned package
    env: dict = field(default_factory=dict)
    extra_args: list = field(default_factory=list)  # more main.py options, e.g. ["--verbose", "DEBUG"]
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300) -> "Server":  # a hang guard: startup took over 90 s on a loaded 2-core machine
        self.port = self.port or free_port()
        self.log_path = self.base / f"server-{self.port}.log"
        args = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                "--base-directory", str(self.base), "--disable-auto-launch", "--disable-api-nodes",
                "--database-url", "sqlite:///:memory:"]
        if not self.cache:
            args.append("--cache-none")
        if self.front_end_root is not None:
            args += ["--front-end-root", str(self.front_end_root)]
        args += list(self.extra_args)
        env = dict(os.environ)
        # One thread: a tiny model on a busy 2-core machine is much slower with more (oversubscription).
        env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"})
        env.update(self.env)
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, cwd=self.comfy_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/object_info/DMTLoadZeroScope", timeout=5)
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"ComfyUI did not start in {timeout}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    # --- HTTP -------------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def post(self, path: str, data: dict | None = None, timeout: float = 30):
        req = urllib.request.Request(self.url + path, data=json.dumps(data or {}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                body = r.read()
                return r.status, (json.loads(body) if body else None)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def queue(self, prompt: dict, client_id: str | None = None) -> str:
        status, body = self.post("/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex})
        if status != 200:
            raise AssertionError(f"/prompt refused the graph ({status}): {json.dumps(body)[:3000]}")
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 240) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            h = self.get(f"/history/{prompt_id}")
            if prompt_id in h:  # history holds a prompt once it has finished (any way)
                return h[prompt_id]
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s:\n{self.log()[-3000:]}")

    def run(self, prompt: dict, timeout: float = 240) -> dict:
        return self.wait(self.queue(prompt), timeout)


def status_messages(entry: dict) -> dict[str, dict]:
    """/history status messages by type, e.g. 'execution_error', 'execution_cached'."""
    return {name: data for name, data in entry["status"].get("messages", [])}


def error_of(entry: dict) -> dict:
    msgs = status_messages(entry)
    assert entry["status"]["status_str"] == "error", f"expected an error, got {entry['status']}"
    return msgs["execution_error"]


def output_files(base: Path, entry: dict, node_id: str, key: str) -> list[Path]:
    files = []
    for item in entry["outputs"].get(str(node_id), {}).get(key, []):
        files.append(base / item.get("type", "output") / item.get("subfolder", "") / item["filename"])
    return files


def video_info(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) of a video or animated image, decoded with PyAV."""
    if path.suffix.lower() in (".webp", ".png", ".gif"):  # animated images: FFmpeg decodes few of them
        from PIL import Image

        with Image.open(path) as im:
            return getattr(im, "n_frames", 1), im.width, im.height
    import av

    with av.open(str(path)) as c:
        frames = [f for f in c.decode(video=0)]
        return len(frames), frames[0].width, frames[0].height


def video_frames(path: Path):
    """Decoded frames (F, H, W, 3) uint8. Note: the h264 encoder of SaveVideo is not
    deterministic run to run; compare the (deterministic) animated WEBP output for equality."""
    import numpy as np

    if path.suffix.lower() == ".webp":
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


# --- UI-format workflow → API-format prompt (what the frontend's graphToPrompt does) ---------

FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to an API prompt for plain graphs (no subgraphs): widget
    values in input order (one extra after control_after_generate and upload widgets), links as
    [source id, slot], mute (mode 2) drops a node, bypass (mode 4) rewires by type."""
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {l[0]: l for l in workflow["links"]}  # [id, src, src_slot, dst, dst_slot, type]

    def source(link_id):
        _, src, slot, _, _, typ = links[link_id]
        node = nodes[src]
        if node.get("mode") == 4:  # bypass: pass through the first input of the same type
            for inp in node.get("inputs", []):
                if inp.get("type") == typ and inp.get("link") is not None:
                    return source(inp["link"])
            return None
        if node["type"] == "Reroute":
            return source(node["inputs"][0]["link"])
        return [str(src), slot]

    prompt = {}
    for nid, node in nodes.items():
        if node["type"] in FRONTEND_ONLY or node.get("mode") in (2, 4):
            continue
        info = object_info[node["type"]]
        spec = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
        linked = {i["name"]: i["link"] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs, vi = {}, 0
        for name in order:
            typ, opts = spec[name][0], (spec[name][1] if len(spec[name]) > 1 else {})
            is_widget = isinstance(typ, list) or typ in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
            if is_widget and not opts.get("forceInput"):
                if name not in linked and vi < len(values):
                    inputs[name] = values[vi]
                vi += 1
                if opts.get("control_after_generate") or opts.get("image_upload") or opts.get("video_upload"):
                    vi += 1
            if name in linked:
                src = source(linked[name])
                if src is not None:
                    inputs[name] = src
        prompt[str(nid)] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def shrink(prompt: dict, extra: dict | None = None) -> dict:
    """Point DMT nodes at the tiny model and the small settings (in place; returns prompt)."""
    for node in prompt.values():
        for key, value in {**SMALL, **(extra or {})}.get(node["class_type"], {}).items():
            node["inputs"][key] = value
    return prompt


def find(prompt: dict, class_type: str) -> list[str]:
    return [k for k, v in prompt.items() if v["class_type"] == class_type]


# --- the real frontend (headless chromium through playwright) -------------------------------

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Frontend:
    """A headless chromium page with the ComfyUI frontend of `server` loaded."""

    def __init__(self, server: Server, viewport: tuple[int, int] = (1800, 1000)):
        self.server = server
        self.viewport = viewport

    def __enter__(self) -> "Frontend":
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": self.viewport[0], "height": self.viewport[1]})
        self.page.goto(self.server.url + "/", wait_until="domcontentloaded", timeout=60000)
        self.page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=60000)
        return self

    def __exit__(self, *exc) -> None:
        self.browser.close()
        self._pw.stop()

    def load(self, workflow: dict, name: str = "workflow.json") -> list[str]:
        """Load a UI workflow like the user would; returns the node types the frontend lacks."""
        return self.page.evaluate(
            """async ([wf, name]) => {
                await app.loadGraphData(wf, true, true, name);
                return wf.nodes.map(n => n.type).filter(t => !LiteGraph.registered_node_types[t]);
            }""", [workflow, name])

    def graph_to_prompt(self) -> dict:
        return self.page.evaluate("async () => (await app.graphToPrompt()).output")

    def serialize(self) -> dict:
        return json.loads(self.page.evaluate("() => JSON.stringify(app.graph.serialize())"))
