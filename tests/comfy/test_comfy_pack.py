"""The node pack inside a real ComfyUI 0.3.75 server on the CPU, with a tiny random ZeroScope.

Run: DMT_COMFYUI_DIR=.ci-work/ComfyUI pytest tests/comfy   (see .ci/setup_comfyui.sh)
"""

from __future__ import annotations

import os

import asyncio
import concurrent.futures
import copy
import json
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from comfy_helpers import (ONE_FRAME_VIDEO, PACK_NAME, REPO, SMALL_FRAMES, SMALL_SIZE, WAN_SMALL, WAN_SMALL_FRAMES,
                           WORKFLOW_DIR, Frontend,
                           Server, chromium_path, error_of, find, frontend_version, latest_frontend_root,
                           make_base, output_files, shrink, status_messages, ui_to_api, video_frames, video_info)

DMT_NODES = ["DMTLoadZeroScope", "DMTInvertVideo", "DMTExtractTargets", "DMTLowFrequencyInit",
             "DMTGuidedSampler", "DMTSaveInversion", "DMTLoadInversion", "DMTLoadWan", "DMTSavePositions",
             "DMTLoadPositions"]
# The motion-customization workflows need a trained motion; tests/comfy/test_customize_nodes.py runs them.
CUSTOMIZE_WORKFLOWS = {"dmt_customize_motion.json", "dmt_text_to_video.json"}
ALL_WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))
WORKFLOWS = [p for p in ALL_WORKFLOWS if p.name not in CUSTOMIZE_WORKFLOWS]
SCREENSHOTS = Path(os.environ.get("DMT_SCREENSHOT_DIR", "/tmp/dmt_workflow_screenshots"))
DOWNLOAD_ENTRY = "zeroscope_v2_576w (download cerspense/zeroscope_v2_576w on first use)"


def load_workflow(name: str) -> dict:
    return json.loads((WORKFLOW_DIR / name).read_text())


def basic_prompt(object_info: dict, **sampler) -> dict:
    prompt = shrink(ui_to_api(load_workflow("dmt_basic.json"), object_info))
    for nid in find(prompt, "DMTGuidedSampler"):
        prompt[nid]["inputs"].update(sampler)
    return prompt


def saved_files(base: Path, entry: dict) -> list[Path]:
    """The files a prompt saved to output/ (previews in temp/, e.g. a loss curve, are not counted)."""
    return [f for nid in entry["outputs"] for f in output_files(base, entry, nid, "images")
            if base / "temp" not in f.parents]


def assert_success(entry: dict) -> None:
    status = entry["status"]
    if status["status_str"] != "success":
        err = status_messages(entry).get("execution_error", status)
        err = {k: v for k, v in err.items() if k in ("node_type", "exception_type", "exception_message", "traceback")}
        raise AssertionError(f"prompt failed: {json.dumps(err, indent=1)[:4000]}")


# --- the pack loads ------------------------------------------------------------------------

def test_pack_loads_with_tooltips_and_descriptions(server, object_info):
    missing = [n for n in DMT_NODES if n not in object_info]
    assert not missing, f"nodes not registered: {missing}"
    ours = {k: v for k, v in object_info.items() if k.startswith("DMT")}
    if (REPO / "nodes" / "motion_fidelity_node.py").exists():
        assert "DMTMotionFidelity" in ours
    for name, info in ours.items():
        assert info["category"] == "DMT", name
        assert len(info["description"]) > 40, f"{name} needs a description a newcomer understands"
        for group in ("required", "optional"):
            for inp, spec in info["input"].get(group, {}).items():
                opts = spec[1] if len(spec) > 1 else {}
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"
    log = server.log()
    ours_lines = [line for line in log.splitlines() if PACK_NAME in line]
    assert ours_lines, "the pack was not even tried"
    assert not [l for l in ours_lines if "IMPORT FAILED" in l], ours_lines
    assert "Error while calling comfy_entrypoint" not in log
    # The model list holds the tiny model and the download entry; never anything outside models/.
    options = object_info["DMTLoadZeroScope"]["input"]["required"]["model_name"][1]["options"]
    assert "dmt-tiny" in options and DOWNLOAD_ENTRY in options


# --- workflows run end to end --------------------------------------------------------------

@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_runs(server, object_info, path):
    workflow = json.loads(path.read_text())
    types = {n["type"] for n in workflow["nodes"]}
    assert types <= set(object_info) | {"Note", "MarkdownNote"}, types - set(object_info)
    wan = "DMTLoadWan" in types
    prompt = shrink(ui_to_api(workflow, object_info), WAN_SMALL if wan else None)
    if path.name == "dmt_prompt_sweep.json":  # add exact (deterministic) outputs to compare the two samplers
        for k, nid in enumerate(find(prompt, "DMTGuidedSampler")):
            prompt[f"9{k}0"] = {"class_type": "SaveAnimatedWEBP", "inputs": {
                "images": [nid, 0], "filename_prefix": f"sweep_check_{k}", "fps": 8.0, "lossless": True,
                "quality": 100, "method": "default"}}
    entry = server.run(prompt)
    assert_success(entry)
    files = saved_files(server.base, entry)
    n_video = sum(1 for n in prompt.values() if n["class_type"] in ("SaveVideo", "SaveAnimatedWEBP"))
    assert len(files) == n_video and n_video >= 1
    for f in files:
        assert f.is_file(), f
        if f.parent.name == "dmt" and f.name.startswith("compare"):  # input | result side by side
            frames, width, height = video_info(f)
            assert frames == SMALL_FRAMES and width > 2 * height, (f, frames, width, height)
        else:
            assert video_info(f) == (WAN_SMALL_FRAMES if wan else SMALL_FRAMES, *SMALL_SIZE), f
    if path.name == "dmt_prompt_sweep.json":
        a, b = [video_frames(f) for f in files if f.suffix == ".webp"]
        assert not np.array_equal(a, b), "two prompts/seeds gave the same video"


# --- the real frontend: the pinned package and the newest one, workflows from the template endpoint ---

def _need_browser() -> None:
    missing = None if chromium_path() else "no chromium (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = "no playwright (pip install playwright)"
    if missing:
        if os.environ.get("DMT_REQUIRE_COMFY") == "1":
            pytest.fail(missing + " (DMT_REQUIRE_COMFY=1: CI must run the frontend tests)")
        pytest.skip(missing)


@pytest.fixture(scope="module", params=["pinned", "latest"])
def frontend(request, server, comfy_dir, tmp_path_factory):
    """The frontend of the pinned comfyui-frontend-package (ComfyUI's requirement), and the newest
    one (.ci/setup_comfyui.sh puts it in WORK/frontend-latest; a second server serves it)."""
    _need_browser()
    srv, own = server, None
    if request.param == "latest":
        root = latest_frontend_root(comfy_dir)
        if root is None:
            msg = "the newest frontend is not installed (bash .ci/setup_comfyui.sh WORK)"
            if os.environ.get("DMT_REQUIRE_COMFY") == "1":
                pytest.fail(msg)
            pytest.skip(msg)
        base = make_base(tmp_path_factory.mktemp("comfy-base-latest-frontend"))
        srv = own = Server(comfy_dir, base, cache=False, front_end_root=root).start()
    try:
        with Frontend(srv) as fe:
            fe.version = frontend_version(srv.front_end_root)
            fe.label = request.param
            yield fe
    finally:
        if own is not None:
            own.stop()


def test_workflows_are_templates_with_thumbnails(server):
    """ComfyUI's template browser lists every workflow of the pack, and serves it and its .jpg."""
    listed = server.get("/workflow_templates")
    assert sorted(listed.get(PACK_NAME, [])) == sorted(p.stem for p in ALL_WORKFLOWS), listed
    for path in ALL_WORKFLOWS:
        assert server.get(f"/api/workflow_templates/{PACK_NAME}/{path.name}") == json.loads(path.read_text())
        with urllib.request.urlopen(f"{server.url}/api/workflow_templates/{PACK_NAME}/{path.stem}.jpg") as r:
            assert r.headers["Content-Type"] == "image/jpeg" and r.read(3) == b"\xff\xd8\xff", path.stem


def test_example_clip_is_copied_into_input(server):
    """The pack copies its example clips into ComfyUI's input folder on load (the workflows name them)."""
    names = {n["widgets_values"][0] for p in WORKFLOWS for n in json.loads(p.read_text())["nodes"]
             if n["type"] == "LoadVideo"}
    assert names == {p.name for p in (REPO / "example_inputs").glob("*.mp4")}
    for name in names:
        assert (server.base / "input" / name).read_bytes() == (REPO / "example_inputs" / name).read_bytes()


def test_toyworld_demo_runs_as_loaded(server, object_info):
    """The toy-world example runs exactly as shipped (bundled toy model, no shrinking) and writes the
    transferred clip and the input | output comparison, 8 frames each."""
    prompt = ui_to_api(load_workflow("dmt_toyworld_demo.json"), object_info)
    entry = server.run(prompt, timeout=600)
    assert_success(entry)
    files = sorted(saved_files(server.base, entry), key=lambda f: f.name)
    assert len(files) == 2, files
    frames, width, height = video_info(files[0])  # compare_toyworld...: input | output
    assert frames == 8 and width > 2 * height
    assert video_info(files[1]) == (8, 64, 64)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_in_frontend(frontend, object_info, path):
    """Open each workflow from the template endpoint in the real frontend, as a user would: no
    missing node types, and the frontend's conversion matches ours, so what it queues is the prompt
    that test_workflow_runs queues and runs (tiny model, shipped clip). Queuing it again here would
    run the same prompt twice more (both frontends) for nothing new: 2-3 minutes of CI."""
    srv = frontend.server
    workflow = srv.get(f"/api/workflow_templates/{PACK_NAME}/{path.name}")
    missing = frontend.load(workflow, path.name)
    assert missing == [], f"frontend {frontend.version} lacks node types {missing}"
    frontend.page.wait_for_timeout(800)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    frontend.page.screenshot(path=str(SCREENSHOTS / f"{frontend.label}-{frontend.version}-{path.stem}.png"))
    ui_prompt = frontend.graph_to_prompt()
    def strip(p):  # drop frontend-only widget values (e.g. LoadVideo's 'video-preview'); the server ignores them
        known = lambda t: {**object_info[t]["input"].get("required", {}), **object_info[t]["input"].get("optional", {})}
        return {k: {"class_type": v["class_type"],
                    "inputs": {n: x for n, x in v["inputs"].items() if n in known(v["class_type"])}} for k, v in p.items()}
    assert strip(ui_prompt) == ui_to_api(workflow, object_info), f"frontend {frontend.version} converts differently"


# --- errors --------------------------------------------------------------------------------

def _error_prompt(object_info, **changes) -> dict:
    prompt = basic_prompt(object_info)
    for class_type, values in changes.items():
        for nid in find(prompt, class_type):
            prompt[nid]["inputs"].update(values)
    return prompt


@pytest.mark.parametrize("case", ["incomplete_model", "offline_download", "one_frame_video", "bad_size",
                                  "bad_guidance"])
def test_errors_are_readable_and_server_recovers(server, object_info, case):
    if case == "incomplete_model":
        prompt = _error_prompt(object_info, DMTLoadZeroScope={"model_name": "broken-model"})
        expect_type, expect = "ModelLoadError", ["incomplete", "missing", "unet/"]
    elif case == "offline_download":  # the server runs with HF_HUB_OFFLINE=1
        prompt = _error_prompt(object_info, DMTLoadZeroScope={"model_name": DOWNLOAD_ENTRY})
        expect_type, expect = "ModelLoadError", ["Could not download", "cerspense/zeroscope_v2_576w"]
    elif case == "one_frame_video":
        prompt = _error_prompt(object_info, LoadVideo={"file": ONE_FRAME_VIDEO})
        expect_type, expect = "InputError", ["1 frame", "at least 2"]
    elif case == "bad_size":
        prompt = _error_prompt(object_info, DMTInvertVideo={"width": 100})
        expect_type, expect = "InputError", ["100x64", "multiples of 8"]
    else:
        prompt = _error_prompt(object_info, DMTExtractTargets={"guidance_min": 1.0, "guidance_max": 1.0})
        expect_type, expect = "InputError", ["guides no step"]
    err = error_of(server.run(prompt))
    assert err["exception_type"].endswith(expect_type), err["exception_type"]
    for text in expect:
        assert text in err["exception_message"], err["exception_message"]
    assert server.get("/queue")["queue_running"] == []


def test_names_outside_models_folder_are_refused(server, object_info):
    """A model name from a workflow never reaches outside models/diffusers: refused at queue
    time (combo validation) or, where the server lets it through, by the loader itself."""
    for bad in ("../../etc", "/etc", "dmt-tiny/../../x", "..", "C:\\Windows"):
        prompt = _error_prompt(object_info, DMTLoadZeroScope={"model_name": bad})
        status, body = server.post("/prompt", {"prompt": prompt, "client_id": "x"})
        if status == 400:
            continue
        assert status == 200, body
        err = error_of(server.wait(body["prompt_id"]))
        assert err["exception_type"].endswith("ModelLoadError"), err
        assert "refused" in err["exception_message"] or "outside" in err["exception_message"], err


def test_server_runs_after_errors(server, object_info):
    assert_success(server.run(basic_prompt(object_info)))


# --- save / load an inversion ------------------------------------------------------------------

def test_saved_inversion_reproduces_the_run(server, object_info):
    prompt = basic_prompt(object_info)
    inv_id, tg_id = find(prompt, "DMTInvertVideo")[0], find(prompt, "DMTExtractTargets")[0]
    prompt["90"] = {"class_type": "DMTSaveInversion",
                    "inputs": {"inversion": [inv_id, 0], "targets": [tg_id, 0], "filename_prefix": "dmt/inv"}}
    first = server.run(prompt)
    assert_success(first)
    saved = first["outputs"]["90"]["inversions"][0]
    assert (server.base / "output" / saved["subfolder"] / saved["filename"]).is_file()

    second = copy.deepcopy(prompt)
    for nid in (inv_id, tg_id, "90", *find(prompt, "LoadVideo"), *find(prompt, "GetVideoComponents")):
        del second[nid]
    comps = find(prompt, "GetVideoComponents")[0]
    for node in second.values():  # the frame rate came from the (now removed) input video
        if node["inputs"].get("fps") == [comps, 2]:
            node["inputs"]["fps"] = 8.0
    loader = find(prompt, "DMTLoadZeroScope")[0]
    second["91"] = {"class_type": "DMTLoadInversion",
                    "inputs": {"model": [loader, 0], "file": f"{saved['subfolder']}/{saved['filename']} [output]"}}
    init, sampler = find(second, "DMTLowFrequencyInit")[0], find(second, "DMTGuidedSampler")[0]
    second[init]["inputs"].update(inversion=["91", 0], targets=["91", 1])
    second[sampler]["inputs"]["targets"] = ["91", 1]
    entry = server.run(second)
    assert_success(entry)
    a = [f for f in saved_files(server.base, first) if f.suffix == ".webp"][0]  # webp: deterministic encoder
    b = [f for f in saved_files(server.base, entry) if f.suffix == ".webp"][0]
    np.testing.assert_array_equal(video_frames(a), video_frames(b))


# --- progress and previews over the websocket ------------------------------------------------

def _collect_ws(server, prompt: dict) -> tuple[list[dict], list[bytes]]:
    import aiohttp

    async def go():
        client_id = uuid.uuid4().hex
        texts, binaries = [], []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{server.url}/ws?clientId={client_id}") as ws:
                status, body = server.post("/prompt", {"prompt": prompt, "client_id": client_id})
                assert status == 200, body
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        binaries.append(msg.data)
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        data = json.loads(msg.data)
                        texts.append(data)
                        if data["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                            break
        return texts, binaries

    # In a thread of its own: playwright's sync API keeps an event loop on the main thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(asyncio.wait_for(go(), 240))).result()


def test_progress_and_live_previews(server, object_info):
    prompt = basic_prompt(object_info)
    inv = prompt[find(prompt, "DMTInvertVideo")[0]]["inputs"]
    texts, binaries = _collect_ws(server, prompt)
    assert texts[-1]["type"] == "execution_success", texts[-1]
    progress = [m["data"] for m in texts if m["type"] == "progress"]
    by_node: dict[str, list] = {}
    for p in progress:
        by_node.setdefault(p["node"], []).append((p["value"], p["max"]))
    invert_id = find(prompt, "DMTInvertVideo")[0]
    sampler_id = find(prompt, "DMTGuidedSampler")[0]
    # Inversion: one step per VAE-encoded frame, then one per inversion step, on one bar.
    frames = inv["frame_count"]
    assert by_node[invert_id][-1] == (frames + inv["inversion_steps"],) * 2
    assert len(by_node[invert_id]) == frames + inv["inversion_steps"]
    # Sampler: 4 guided steps x 2 Adam iterations + 10 denoise + 9 restart denoise passes, then
    # one step per VAE-decoded frame.
    assert by_node[sampler_id][-1] == (8 + 10 + 9 + frames,) * 2
    assert find(prompt, "DMTExtractTargets")[0] in by_node
    jpegs = [b for b in binaries if b[8:10] == b"\xff\xd8"]  # event type, image type, JPEG data
    assert len(jpegs) >= 8 + 19 + frames, f"expected a preview per sampler and decode step, got {len(jpegs)}"


# --- caching, cancel --------------------------------------------------------------------------

def test_changing_target_prompt_reruns_only_the_sampler(caching_server, object_info):
    srv = caching_server
    first = srv.run(basic_prompt(object_info, target_prompt="a blue bus on a road"))
    assert_success(first)
    second = srv.run(basic_prompt(object_info, target_prompt="a yellow taxi on a road"))
    assert_success(second)
    prompt = basic_prompt(object_info)
    cached = set(status_messages(second)["execution_cached"]["nodes"])
    rerun = set(prompt) - cached
    downstream = set(find(prompt, "CreateVideo") + find(prompt, "SaveVideo") + find(prompt, "SaveAnimatedWEBP"))
    assert rerun == set(find(prompt, "DMTGuidedSampler")) | downstream, sorted(rerun)


def test_interrupt_is_prompt_and_leaves_the_model_clean(server, caching_server, object_info):
    """Cancel a sampler mid-optimisation on the caching server, whose model object stays loaded;
    the next run with that same model must equal a clean run on a freshly loaded model."""
    srv = caching_server
    reference = server.run(basic_prompt(object_info, target_prompt="a green tram", seed=5))
    assert_success(reference)
    ref_video = [f for f in saved_files(server.base, reference) if f.suffix == ".webp"][0]

    assert_success(srv.run(basic_prompt(object_info, target_prompt="warm-up run")))  # caches model, inversion
    long_run = basic_prompt(object_info, target_prompt="a purple boat", optimization_steps=1000)
    pid = srv.queue(long_run)
    time.sleep(1.5)
    assert srv.get("/queue")["queue_running"], "the long run ended before it could be cancelled"
    t0 = time.time()
    srv.post("/interrupt")
    entry = srv.wait(pid, timeout=60)
    elapsed = time.time() - t0
    msgs = status_messages(entry)
    assert "execution_interrupted" in msgs, entry["status"]
    assert msgs["execution_interrupted"]["node_type"] == "DMTGuidedSampler"
    assert elapsed < 5, f"interrupt took {elapsed:.1f}s"

    after = srv.run(basic_prompt(object_info, target_prompt="a green tram", seed=5))
    assert_success(after)
    cached = set(status_messages(after)["execution_cached"]["nodes"])
    assert find(long_run, "DMTLoadZeroScope")[0] in cached, "the model was reloaded; the check proves nothing"
    video = [f for f in saved_files(srv.base, after) if f.suffix == ".webp"][0]
    np.testing.assert_array_equal(video_frames(video), video_frames(ref_video))


def test_motion_fidelity_node_in_the_server(server, object_info):
    """The metric node runs in a real server (inference mode): a video against itself scores ~1,
    and its visualisation (original | edited side by side) is saved."""
    base = basic_prompt(object_info)
    (load,) = find(base, "LoadVideo")
    (comps,) = find(base, "GetVideoComponents")
    prompt = {
        load: base[load], comps: base[comps],
        "mf": {"class_type": "DMTMotionFidelity", "inputs": {"original": [comps, 0], "edited": [comps, 0], "grid": 20}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["mf", 1], "filename_prefix": "mf/vis"}},
    }
    entry = server.run(prompt)
    assert_success(entry)
    text = json.dumps(entry["outputs"].get("mf", {}))
    assert "motion fidelity 1.0000" in text or "motion fidelity 0.99" in text, text[:500]
    vis = output_files(server.base, entry, "save", "images")
    assert len(vis) >= 2 and all(f.is_file() for f in vis)
