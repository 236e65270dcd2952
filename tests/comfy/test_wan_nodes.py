"""The DMT nodes on Wan 2.1 (Load Wan → Invert → Targets → Init → Sampler) inside a real ComfyUI
server on the CPU, with the tiny random Wan: the sampler's guidance choice, Wan inversion files,
and the messages for what Wan cannot take."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from comfy_helpers import (TINY_WAN, WAN_SMALL, WORKFLOW_DIR, error_of, find, output_files, shrink, status_messages,
                           ui_to_api, video_frames)

WAN_WORKFLOW = "dmt_wan_motion_transfer.json"


def wan_prompt(object_info: dict, **changes: dict) -> dict:
    """The Wan workflow at the small settings, with a lossless WEBP of the sampler's frames
    (node 'webp'; h264 is not deterministic enough to compare), `changes` by class type."""
    prompt = shrink(ui_to_api(json.loads((WORKFLOW_DIR / WAN_WORKFLOW).read_text()), object_info), WAN_SMALL)
    for class_type, values in changes.items():
        for nid in find(prompt, class_type):
            prompt[nid]["inputs"].update(values)
    (sampler,) = find(prompt, "DMTGuidedSampler")
    prompt["webp"] = {"class_type": "SaveAnimatedWEBP", "inputs": {
        "images": [sampler, 0], "filename_prefix": "dmt/wan_check", "fps": 8.0, "lossless": True, "quality": 100,
        "method": "default"}}
    return prompt


def ok(entry: dict) -> dict:
    if entry["status"]["status_str"] != "success":
        err = status_messages(entry).get("execution_error", entry["status"])
        err = {k: v for k, v in err.items() if k in ("node_type", "exception_type", "exception_message")}
        raise AssertionError(f"prompt failed: {json.dumps(err, indent=1)[:3000]}")
    return entry


def frames(server, entry: dict) -> np.ndarray:
    (path,) = output_files(server.base, entry, "webp", "images")
    return video_frames(path)


def test_the_guidance_choice_reaches_the_sampler(server, object_info):
    runs = {g: frames(server, ok(server.run(wan_prompt(object_info, DMTGuidedSampler={"guidance": g}))))
            for g in ("auto", "attention_flow", "smm")}
    assert runs["auto"].shape == (5, 64, 64, 3)
    np.testing.assert_array_equal(runs["auto"], runs["attention_flow"])  # auto on Wan = DiTFlow's guidance
    assert not np.array_equal(runs["smm"], runs["attention_flow"])


def test_zeroscope_only_settings_are_noted_not_silently_dropped(server, object_info):
    entry = ok(server.run(wan_prompt(object_info, DMTGuidedSampler={"restart_sampling": True})))
    (sampler,) = find(entry["prompt"][2], "DMTGuidedSampler")
    notes = entry["outputs"][sampler]["text"]
    assert any("'restart_sampling' is ZeroScope's" in n for n in notes), notes


def test_a_wan_inversion_file_reproduces_the_run_and_zeroscope_refuses_it(server, object_info):
    prompt = wan_prompt(object_info)
    (inv,), (loader,) = find(prompt, "DMTInvertVideo"), find(prompt, "DMTLoadWan")
    prompt["90"] = {"class_type": "DMTSaveInversion", "inputs": {"inversion": [inv, 0], "filename_prefix": "dmt/wan_inv"}}
    first = ok(server.run(prompt))
    saved = first["outputs"]["90"]["inversions"][0]
    name = f"{saved['subfolder']}/{saved['filename']} [output]"

    second = copy.deepcopy(prompt)
    del second["90"]
    second["91"] = {"class_type": "DMTLoadInversion", "inputs": {"model": [loader, 0], "file": name}}
    for nid in (*find(second, "DMTExtractTargets"), *find(second, "DMTLowFrequencyInit")):
        second[nid]["inputs"]["inversion"] = ["91", 0]
    np.testing.assert_array_equal(frames(server, ok(server.run(second))), frames(server, first))

    third = copy.deepcopy(second)
    third["92"] = {"class_type": "DMTLoadZeroScope",
                   "inputs": {"model_name": "dmt-tiny", "dtype": "float32", "device": "cpu"}}
    third["91"]["inputs"]["model"] = ["92", 0]
    err = error_of(server.run(third))
    assert "made with Wan, but the model is ZeroScope" in err["exception_message"], err


@pytest.mark.parametrize("case", ["frames", "size", "guidance_max", "steps", "attention_flow_on_zeroscope",
                                  "wan_folder_in_zeroscope_loader"])
def test_what_wan_cannot_take_gets_a_message(server, object_info, case):
    if case == "frames":
        prompt, expect = wan_prompt(object_info, DMTInvertVideo={"frame_count": 6}), ["6 frames", "5 or 9"]
    elif case == "size":
        prompt, expect = wan_prompt(object_info, DMTInvertVideo={"width": 72}), ["72x64", "64x64", "80x64"]
    elif case == "guidance_max":
        prompt, expect = wan_prompt(object_info, DMTExtractTargets={"guidance_max": 0.9}), ["set it to 1.0"]
    elif case == "steps":
        prompt, expect = wan_prompt(object_info, DMTExtractTargets={"sampling_steps": 12}), ["12", "Use the same value"]
    elif case == "attention_flow_on_zeroscope":
        prompt = wan_prompt(object_info, DMTGuidedSampler={"guidance": "attention_flow"})
        (loader,) = find(prompt, "DMTLoadWan")
        prompt[loader] = {"class_type": "DMTLoadZeroScope",
                          "inputs": {"model_name": "dmt-tiny", "dtype": "float32", "device": "cpu"}}
        prompt = shrink(prompt)  # ZeroScope's small frame count (the Wan one is not 6)
        expect = ["ZeroScope runs the paper's SMM guidance"]
    else:
        prompt = wan_prompt(object_info)
        (loader,) = find(prompt, "DMTLoadWan")
        prompt[loader] = {"class_type": "DMTLoadZeroScope",
                          "inputs": {"model_name": TINY_WAN, "dtype": "float32", "device": "cpu"}}
        status, body = server.post("/prompt", {"prompt": prompt, "client_id": "x"})
        if status == 400:  # refused by combo validation: not among ZeroScope's folders
            assert TINY_WAN in json.dumps(body), body
            return
        assert status == 200, body  # or let through to the loader, which says what the folder is
        err = error_of(server.wait(body["prompt_id"]))
        assert err["exception_type"].endswith("ModelLoadError") and "Wan" in err["exception_message"], err
        return
    err = error_of(server.run(prompt))
    for text in expect:
        assert text in err["exception_message"], err["exception_message"]
    assert server.get("/queue")["queue_running"] == []


def test_the_wan_loader_lists_only_wan_folders(object_info):
    wan = object_info["DMTLoadWan"]["input"]["required"]["model_name"][1]["options"]
    zeroscope = object_info["DMTLoadZeroScope"]["input"]["required"]["model_name"][1]["options"]
    assert TINY_WAN in wan and "dmt-tiny" not in wan
    assert "dmt-tiny" in zeroscope and TINY_WAN not in zeroscope


def _with_defaults(prompt: dict, object_info: dict) -> dict:
    """Fill every widget a node's inputs leave out with the node's default (as the frontend does)."""
    for node in prompt.values():
        info = object_info[node["class_type"]]["input"]
        for group in ("required", "optional"):
            for key, spec in info.get(group, {}).items():
                if key not in node["inputs"] and len(spec) > 1 and isinstance(spec[1], dict) and "default" in spec[1]:
                    node["inputs"][key] = spec[1]["default"]
    return prompt


def customize_prompt(object_info: dict, base: str = "DMTLoadWan") -> dict:
    """Wan: Motion Examples (5 frames) → Train Motion (2 steps) → Save Motion, and Apply Motion →
    Text to Video (5 frames) → lossless WEBP 'webp'; `base` loads the model the motion is applied to."""
    tiny = {"DMTLoadWan": TINY_WAN, "DMTLoadZeroScope": "dmt-tiny"}
    prompt = {
        "1": {"class_type": "DMTLoadWan", "inputs": {"model_name": TINY_WAN, "dtype": "float32", "device": "cpu"}},
        "2": {"class_type": "LoadVideo", "inputs": {"file": "input_video.mp4"}},
        "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
        "4": {"class_type": "DMTMotionExamples", "inputs": {"images": ["3", 0], "caption": "a ball doing the sks jump",
                                                            "frame_count": 5, "width": 64, "height": 64}},
        "5": {"class_type": "DMTTrainMotion", "inputs": {"model": ["1", 0], "examples": ["4", 0], "rank": 2, "steps": 2,
                                                         "learning_rate": 0.05, "validation_steps": 2}},
        "6": {"class_type": "DMTSaveMotion", "inputs": {"motion": ["5", 0], "name": "wan_motion"}},
        "7": {"class_type": base, "inputs": {"model_name": tiny[base], "dtype": "float32", "device": "cpu"}},
        "8": {"class_type": "DMTApplyMotion", "inputs": {"model": ["7", 0], "motion": ["5", 0], "strength": 1.0}},
        "9": {"class_type": "DMTTextToVideo", "inputs": {"model": ["8", 0], "prompt": "a cat doing the sks jump",
                                                         "frame_count": 5, "width": 64, "height": 64, "steps": 2}},
        "webp": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["9", 0], "filename_prefix": "dmt/wan_t2v",
                                                               "fps": 8.0, "lossless": True, "quality": 100,
                                                               "method": "default"}},
    }
    return _with_defaults(prompt, object_info)


def test_a_motion_trains_on_wan_and_applies_to_wan_only(server, object_info):
    entry = ok(server.run(customize_prompt(object_info)))
    assert (server.base / "models" / "dmt_motions" / "wan_motion.safetensors").is_file()
    assert frames(server, entry).shape == (5, 64, 64, 3)
    err = error_of(server.run(customize_prompt(object_info, base="DMTLoadZeroScope")))
    assert "trained on Wan" in err["exception_message"] and "the model is ZeroScope" in err["exception_message"], err


def test_positions_are_optimised_saved_loaded_and_reused_by_text_to_video(server, object_info):
    prompt = wan_prompt(object_info, DMTGuidedSampler={"optimise": "positions"})
    (sampler,) = find(prompt, "DMTGuidedSampler")
    (loader,) = find(prompt, "DMTLoadWan")
    prompt["70"] = {"class_type": "DMTSavePositions", "inputs": {"positions": [sampler, 2], "name": "wan_pos"}}
    ok(server.run(prompt))
    assert (server.base / "models" / "dmt_positions" / "wan_pos.safetensors").is_file()

    def t2v(with_positions: bool) -> np.ndarray:
        p = {"1": {"class_type": "DMTLoadWan", "inputs": {"model_name": TINY_WAN, "dtype": "float32", "device": "cpu"}},
             "2": {"class_type": "DMTTextToVideo", "inputs": {"model": ["1", 0], "prompt": "a green triangle",
                                                              "frame_count": 5, "width": 64, "height": 64, "steps": 2}},
             "webp": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["2", 0], "filename_prefix": "dmt/pos",
                                                                    "fps": 8.0, "lossless": True, "quality": 100,
                                                                    "method": "default"}}}
        if with_positions:
            p["3"] = {"class_type": "DMTLoadPositions", "inputs": {"positions_name": "wan_pos.safetensors"}}
            p["2"]["inputs"]["positions"] = ["3", 0]
        return frames(server, ok(server.run(_with_defaults(p, object_info))))

    assert not np.array_equal(t2v(True), t2v(False))
    zs = wan_prompt(object_info, DMTGuidedSampler={"optimise": "positions"})
    zs[loader] = {"class_type": "DMTLoadZeroScope", "inputs": {"model_name": "dmt-tiny", "dtype": "float32",
                                                               "device": "cpu"}}
    err = error_of(server.run(shrink(zs)))
    assert "ZeroScope has none" in err["exception_message"], err
    empty = wan_prompt(object_info)
    empty["70"] = {"class_type": "DMTSavePositions",
                   "inputs": {"positions": [find(empty, "DMTGuidedSampler")[0], 2], "name": "none"}}
    err = error_of(server.run(empty))
    assert "No positions to save" in err["exception_message"], err


def test_context_windows_run_on_wan_and_the_sampler_follows_them(server, object_info):
    from dmt.io.video import write_video
    from dmt.toyworld.world import make_clip

    path = server.base / "input" / "wan_long.mp4"
    if not path.exists():  # 17 frames = 5 latent frames
        write_video(path, make_clip("circle", "red", "ball", num_frames=17, height=64, width=64).frames, 8.0)
    prompt = wan_prompt(object_info, DMTInvertVideo={"frame_count": 0}, LoadVideo={"file": path.name})
    (inv,), (sampler,) = find(prompt, "DMTInvertVideo"), find(prompt, "DMTGuidedSampler")
    # windows of 9 frames (3 latent frames) sharing 5 (2): 3 windows; only Invert is connected
    prompt["980"] = {"class_type": "DMTContextOptions",
                     "inputs": {"context_length": 9, "context_overlap": 5, "fuse": "pyramid"}}
    prompt[inv]["inputs"]["context"] = ["980", 0]
    assert frames(server, ok(server.run(prompt))).shape == (17, 64, 64, 3)
    other = copy.deepcopy(prompt)
    other["981"] = {"class_type": "DMTContextOptions",
                    "inputs": {"context_length": 9, "context_overlap": 1, "fuse": "pyramid"}}
    other[sampler]["inputs"]["context"] = ["981", 0]
    err = error_of(server.run(other))
    assert err["node_type"] == "DMTGuidedSampler" and err["exception_type"].endswith("InversionMismatchError")
    assert "overlap 5" in err["exception_message"] and "overlap 1" in err["exception_message"], err
