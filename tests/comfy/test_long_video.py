"""workflows/dmt_long_video.json in a real ComfyUI server: a clip longer than one context window
runs in windows end to end and is saved at the source's frame rate; a sampler given another
schedule than the inversion's fails with a readable error."""

from __future__ import annotations

import copy
import json

import torch

from comfy_helpers import REPO, SMALL, error_of, find, output_files, shrink, status_messages, ui_to_api, video_info

LONG_VIDEO, LONG_FRAMES, LONG_FPS = "long_video.mp4", 20, 12
# 20 frames in windows of 8 overlapping by 2: windows start at 0, 6, 12 (3 windows).
EXTRA = {
    "DMTInvertVideo": {**SMALL["DMTInvertVideo"], "frame_count": 0, "inversion_steps": 10},
    "DMTContextOptions": {"context_length": 8, "context_overlap": 2, "fuse": "pyramid"},
    "DMTGuidedSampler": {"optimization_steps": 1, "restart_sampling": False},
}


def long_prompt(server, object_info) -> dict:
    from dmt.io.video import write_video

    path = server.base / "input" / LONG_VIDEO
    if not path.exists():
        g = torch.Generator().manual_seed(1)
        frames = (torch.rand(1, 64, 64, 3, generator=g) * 0.3).expand(LONG_FRAMES, 64, 64, 3).clone()
        for i in range(LONG_FRAMES):
            frames[i, 20:36, 2 * i:2 * i + 16] = torch.tensor([1.0, 0.9, 0.2])
        write_video(path, frames, fps=LONG_FPS)
    workflow = json.loads((REPO / "workflows" / "dmt_long_video.json").read_text())
    prompt = shrink(ui_to_api(workflow, object_info), EXTRA)
    for nid in find(prompt, "LoadVideo"):
        prompt[nid]["inputs"]["file"] = LONG_VIDEO
    return prompt


def test_long_video_workflow_runs_in_windows_at_source_fps(server, object_info):
    import av

    prompt = long_prompt(server, object_info)
    assert len(find(prompt, "DMTContextOptions")) == 1
    ctx = find(prompt, "DMTContextOptions")[0]
    for node in ("DMTInvertVideo", "DMTExtractTargets", "DMTGuidedSampler"):
        assert prompt[find(prompt, node)[0]]["inputs"]["context"] == [ctx, 0], node
    entry = server.run(prompt, timeout=600)
    assert entry["status"]["status_str"] == "success", json.dumps(status_messages(entry).get("execution_error"))[:3000]
    (save,) = find(prompt, "SaveVideo")
    (video,) = output_files(server.base, entry, save, "images")
    assert video_info(video) == (LONG_FRAMES, 64, 64)
    with av.open(str(video)) as c:
        assert float(c.streams.video[0].average_rate) == LONG_FPS


def test_sampler_with_another_schedule_is_refused(server, object_info):
    prompt = long_prompt(server, object_info)
    other = copy.deepcopy(prompt[find(prompt, "DMTContextOptions")[0]])
    other["inputs"]["context_overlap"] = 3
    prompt["990"] = other
    prompt[find(prompt, "DMTGuidedSampler")[0]]["inputs"]["context"] = ["990", 0]
    entry = server.run(prompt, timeout=600)
    err = error_of(entry)
    assert err["node_type"] == "DMTGuidedSampler"
    assert err["exception_type"].endswith("InversionMismatchError")
    assert "overlap 2" in err["exception_message"] and "overlap 3" in err["exception_message"]
