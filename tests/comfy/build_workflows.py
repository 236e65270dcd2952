"""Rebuild workflows/*.json in the real ComfyUI frontend (not a test; run by hand).

    DMT_COMFYUI_DIR=.ci-work/ComfyUI python tests/comfy/build_workflows.py [NAME.json ...]

(names: only those workflows; none: all of them)

Starts a server, builds each graph with LiteGraph in headless chromium (createNode, graph.add,
connect, widget values) and saves `app.graph.serialize()` exactly as the frontend would.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_helpers import INPUT_VIDEO, REPO, Frontend, Server, make_base  # noqa: E402

DOWNLOAD_ENTRY = "zeroscope_v2_576w (download cerspense/zeroscope_v2_576w on first use)"

JS_LIB = r"""
window.dmtBuild = {
  add(type, x, y, w, h) {
    const n = LiteGraph.createNode(type);
    if (!n) throw new Error("unknown node type " + type);
    n.pos = [x, y];
    app.graph.add(n);
    if (w) n.size = [w, h || n.size[1]];
    return n;
  },
  set(node, values) {
    for (const [name, value] of Object.entries(values)) {
      const w = node.widgets.find(w => w.name === name);
      if (!w) throw new Error(node.type + " has no widget " + name);
      w.value = value;
      if (w.callback) w.callback(value);
    }
  },
  link(a, outName, b, inName) {
    const out = a.outputs.findIndex(o => o.name === outName || o.label === outName || o.type === outName);
    const inp = b.inputs.findIndex(i => i.name === inName);
    if (out < 0 || inp < 0) throw new Error(`no slot ${a.type}.${outName} -> ${b.type}.${inName}`);
    if (!a.connect(out, b, inp)) throw new Error(`connect failed ${a.type}.${outName} -> ${b.type}.${inName}`);
  },
};
"""

NOTE_BASIC = """DMT motion transfer (Space-Time Diffusion Features, CVPR 2024) on ZeroScope.

1. Load Video: pick your clip (upload it). 24 frames at 576x320 is ZeroScope's native size; the invert node cuts and resizes.
2. Load ZeroScope: the 'download' entry fetches cerspense/zeroscope_v2_576w (~3 GB, CC BY-NC 4.0) into models/diffusers once.
3. DDIM Invert Video: source prompt = what the INPUT video shows. 999 inversion steps is the authors' setting (slow); 50-250 is a quick preview of the idea.
4. Extract SMM Targets: guidance window 0.6-1.0 guides the first 40% of the 50 sampling steps.
5. SMM-Guided Sampler: target prompt = what the NEW video shows. Change the prompt or the seeds and only the sampler re-runs.
Knobs: optimization steps (10) and restart sampling trade speed for motion fidelity; cfg 10; downsample factor 4 keeps the input's coarse layout.
Memory: authors' settings need a large GPU (~32 GB); lower frame count or size if you run out."""

NOTE_SWEEP = """Prompt sweep: the video is inverted once and its motion targets are extracted once; both samplers reuse them (ComfyUI caches the shared nodes), so each extra prompt costs only one sampler run. Edit a target prompt or seed and only that sampler re-runs."""

NOTE_LONG = """Long videos: temporal context windows.

Context Options (DMT) splits the video into overlapping windows (24 frames, overlap 8 by default: ZeroScope was trained on 24-frame clips) and runs every ZeroScope call of the transfer (inversion, targets, guided steps, denoising) window by window, blending the overlaps. GPU memory is bounded by the window, not by the video; time grows with the number of windows.
A video of at most context_length frames is one window: exactly the normal transfer.
DDIM Invert Video: frame_count 0 takes every frame of the clip. The same Context Options feed Invert, Extract Targets and the Sampler (a different schedule than the inversion's is refused).
The output keeps the source frame rate: Get Video Components' fps goes into Create Video."""

BUILD_COMMON = r"""
const B = window.dmtBuild;
app.graph.clear();
const loadVideo = B.add("LoadVideo", 40, 330, 320, 420);
B.set(loadVideo, {file: INPUT});
const comps = B.add("GetVideoComponents", 400, 330, 240, 90);
B.link(loadVideo, "VIDEO", comps, "video");
const loader = B.add("DMTLoadZeroScope", 400, 470, 420, 130);
B.set(loader, {model_name: DOWNLOAD, dtype: "float16", device: "auto"});
const invert = B.add("DMTInvertVideo", 860, 330, 380, 400);
B.link(loader, "model", invert, "model");
B.link(comps, "images", invert, "images");
B.set(invert, {source_prompt: SOURCE});
const targets = B.add("DMTExtractTargets", 1280, 330, 330, 180);
B.link(loader, "model", targets, "model");
B.link(invert, "inversion", targets, "inversion");
const init = B.add("DMTLowFrequencyInit", 1280, 560, 330, 160);
B.link(invert, "inversion", init, "inversion");
B.link(targets, "targets", init, "targets");
B.set(init, {seed: 0, control_after_generate: "fixed"});
"""

BUILD_BASIC = BUILD_COMMON + r"""
const note = B.add("Note", 40, 20, 1180, 280);
note.widgets[0].value = NOTE;
note.title = "How to use DMT motion transfer";
const sampler = B.add("DMTGuidedSampler", 1650, 330, 380, 560);
B.link(loader, "model", sampler, "model");
B.link(targets, "targets", sampler, "targets");
B.link(init, "latent", sampler, "latent");
B.set(sampler, {target_prompt: TARGET, seed: 0, control_after_generate: "fixed"});
const create = B.add("CreateVideo", 2070, 330, 260, 90);
B.link(sampler, "images", create, "images");
B.link(comps, "fps", create, "fps");
const save = B.add("SaveVideo", 2370, 330, 360, 420);
B.link(create, "VIDEO", save, "video");
B.set(save, {filename_prefix: "dmt/video"});
const webp = B.add("SaveAnimatedWEBP", 2070, 790, 360, 420);
B.link(sampler, "images", webp, "images");
B.set(webp, {filename_prefix: "dmt/webp", fps: 8, lossless: false, quality: 90});
"""

BUILD_SWEEP = BUILD_COMMON + r"""
const note = B.add("Note", 40, 20, 1180, 200);
note.widgets[0].value = NOTE;
note.title = "Prompt sweep";
const prompts = [[TARGET, 0, "dmt/sweep_a"], [TARGET2, 1, "dmt/sweep_b"]];
prompts.forEach(([prompt, seed, prefix], k) => {
  const y = 330 + k * 620;
  const sampler = B.add("DMTGuidedSampler", 1650, y, 380, 560);
  B.link(loader, "model", sampler, "model");
  B.link(targets, "targets", sampler, "targets");
  B.link(init, "latent", sampler, "latent");
  B.set(sampler, {target_prompt: prompt, seed: seed, control_after_generate: "fixed"});
  const create = B.add("CreateVideo", 2070, y, 260, 90);
  B.link(sampler, "images", create, "images");
  B.link(comps, "fps", create, "fps");
  const save = B.add("SaveVideo", 2370, y, 360, 420);
  B.link(create, "VIDEO", save, "video");
  B.set(save, {filename_prefix: prefix});
});
"""

BUILD_LONG = BUILD_COMMON + r"""
const note = B.add("Note", 40, 20, 1180, 280);
note.widgets[0].value = NOTE;
note.title = "Long videos (context windows)";
const ctx = B.add("DMTContextOptions", 860, 800, 380, 130);
B.set(ctx, {context_length: 24, context_overlap: 8, fuse: "pyramid"});
B.link(ctx, "context", invert, "context");
B.link(ctx, "context", targets, "context");
B.set(invert, {frame_count: 0});
const sampler = B.add("DMTGuidedSampler", 1650, 330, 380, 560);
B.link(loader, "model", sampler, "model");
B.link(targets, "targets", sampler, "targets");
B.link(init, "latent", sampler, "latent");
B.link(ctx, "context", sampler, "context");
B.set(sampler, {target_prompt: TARGET, seed: 0, control_after_generate: "fixed"});
const create = B.add("CreateVideo", 2070, 330, 260, 90);
B.link(sampler, "images", create, "images");
B.link(comps, "fps", create, "fps");
const save = B.add("SaveVideo", 2370, 330, 360, 420);
B.link(create, "VIDEO", save, "video");
B.set(save, {filename_prefix: "dmt/long_video"});
"""


# --- motion customization (issue 14): examples -> train -> save; load -> apply -> generate -------

NOTE_CUSTOMIZE = """Teach ZeroScope a new motion from a few example clips (motion customization, Materzynska et al. 2023).

1. Load Video: one clip of the motion per Load Video node (upload yours). Each Motion Examples node takes one clip and its caption; the caption must contain the token (default 'sks') that names the motion, e.g. 'a person doing the sks dance'. Chain more Motion Examples nodes (examples input) for more clips; 3-10 clips work best.
2. Train Motion: LoRA rank 32, 400 steps, lr 5e-4 are the defaults ('full' mode is the paper's direct tuning, lr 1e-5). Optional: connect regularization clips (Motion Examples with an empty token) of related motions.
3. Save Motion writes models/dmt_motions/<name>.safetensors; use it in the 'dmt_text_to_video' workflow.
The loss curve and a validation clip (the first caption, with the motion) show how training went. Cancel stops within one step; the loaded model is never changed."""

NOTE_T2V = """Generate a video with a customized motion: Load Motion picks a file from models/dmt_motions (made by the 'dmt_customize_motion' workflow); Apply Motion adds it to the model with a strength (0-2; chain a second Apply Motion to combine two motions). Write the motion's token in the prompt, e.g. 'a bear doing the sks dance on the beach'. The loaded model stays unchanged: the motion is patched in only while Text to Video runs."""

BUILD_CUSTOMIZE = r"""
const B = window.dmtBuild;
app.graph.clear();
const note = B.add("Note", 40, 20, 1180, 260);
note.widgets[0].value = NOTE;
note.title = "How to teach a motion";
const loader = B.add("DMTLoadZeroScope", 400, 330, 420, 130);
B.set(loader, {model_name: DOWNLOAD, dtype: "float16", device: "auto"});
let examples = null;
[[CAPTION, 500], [CAPTION2, 980]].forEach(([caption, y], k) => {
  const loadVideo = B.add("LoadVideo", 40, y, 320, 420);
  B.set(loadVideo, {file: INPUT});
  const comps = B.add("GetVideoComponents", 400, y, 240, 90);
  B.link(loadVideo, "VIDEO", comps, "video");
  const ex = B.add("DMTMotionExamples", 680, y, 360, 320);
  B.link(comps, "images", ex, "images");
  B.set(ex, {caption: caption});
  if (examples) B.link(examples, "examples", ex, "examples");
  examples = ex;
});
const train = B.add("DMTTrainMotion", 1080, 330, 400, 520);
B.link(loader, "model", train, "model");
B.link(examples, "examples", train, "examples");
B.set(train, {seed: 0, control_after_generate: "fixed"});
const save = B.add("DMTSaveMotion", 1520, 330, 320, 110);
B.link(train, "motion", save, "motion");
B.set(save, {name: MOTION_NAME});
const curve = B.add("PreviewImage", 1520, 490, 420, 300);
B.link(train, "loss curve", curve, "images");
const create = B.add("CreateVideo", 1520, 840, 260, 90);
B.link(train, "validation frames", create, "images");
B.set(create, {fps: 8});
const saveVideo = B.add("SaveVideo", 1820, 840, 360, 420);
B.link(create, "VIDEO", saveVideo, "video");
B.set(saveVideo, {filename_prefix: "dmt/motion_validation"});
"""

BUILD_T2V = r"""
const B = window.dmtBuild;
app.graph.clear();
const note = B.add("Note", 40, 20, 1180, 160);
note.widgets[0].value = NOTE;
note.title = "Text to video with a customized motion";
const loader = B.add("DMTLoadZeroScope", 40, 230, 420, 130);
B.set(loader, {model_name: DOWNLOAD, dtype: "float16", device: "auto"});
const motion = B.add("DMTLoadMotion", 40, 410, 420, 90);
B.set(motion, {motion_name: MOTION_NAME + ".safetensors"});
const apply = B.add("DMTApplyMotion", 500, 230, 320, 130);
B.link(loader, "model", apply, "model");
B.link(motion, "motion", apply, "motion");
B.set(apply, {strength: 1.0});
const t2v = B.add("DMTTextToVideo", 860, 230, 400, 480);
B.link(apply, "model", t2v, "model");
B.set(t2v, {prompt: T2V_PROMPT, seed: 0, control_after_generate: "fixed"});
const create = B.add("CreateVideo", 1300, 230, 260, 90);
B.link(t2v, "images", create, "images");
B.set(create, {fps: 8});
const save = B.add("SaveVideo", 1600, 230, 360, 420);
B.link(create, "VIDEO", save, "video");
B.set(save, {filename_prefix: "dmt/text_to_video"});
"""

CUSTOMIZE_CONSTS = {
    "CAPTION": "a person doing the sks dance", "CAPTION2": "a woman doing the sks dance in a park",
    "MOTION_NAME": "dmt_motion", "T2V_PROMPT": "a bear doing the sks dance on the beach",
}


def customize_workflows() -> list[tuple[str, str, str]]:
    """(file name, build script, note) of the two motion-customization workflows."""
    return [("dmt_customize_motion.json", BUILD_CUSTOMIZE, NOTE_CUSTOMIZE),
            ("dmt_text_to_video.json", BUILD_T2V, NOTE_T2V)]


def build(fe: Frontend, script: str, note: str) -> dict:
    consts = {
        "INPUT": INPUT_VIDEO, "DOWNLOAD": DOWNLOAD_ENTRY, "NOTE": note,
        "SOURCE": "a car driving on a road",
        "TARGET": "a red sports car driving on a road",
        "TARGET2": "a steam train driving on a road",
        **CUSTOMIZE_CONSTS,
    }
    decl = "".join(f"const {k} = {json.dumps(v)};\n" for k, v in consts.items())
    fe.page.evaluate("() => {" + JS_LIB + "}")
    fe.page.evaluate("() => {" + decl + script + "\napp.graph.setDirtyCanvas(true, true);}")
    return fe.serialize()


def main() -> None:
    comfy = Path(os.environ.get("DMT_COMFYUI_DIR", REPO / ".ci-work" / "ComfyUI"))
    with tempfile.TemporaryDirectory() as tmp:
        base = make_base(Path(tmp))
        server = Server(comfy, base).start()
        try:
            with Frontend(server) as fe:
                for name, script, note in (("dmt_basic.json", BUILD_BASIC, NOTE_BASIC),
                                           ("dmt_prompt_sweep.json", BUILD_SWEEP, NOTE_SWEEP),
                                           ("dmt_long_video.json", BUILD_LONG, NOTE_LONG),
                                           *customize_workflows()):
                    if sys.argv[1:] and name not in sys.argv[1:]:
                        continue
                    wf = build(fe, script, note)
                    out = REPO / "workflows" / name
                    out.parent.mkdir(exist_ok=True)
                    out.write_text(json.dumps(wf, indent=2) + "\n")
                    print("wrote", out, len(wf["nodes"]), "nodes", len(wf["links"]), "links")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
