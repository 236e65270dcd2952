"""Rebuild workflows/*.json and their .jpg thumbnails in the real ComfyUI frontend (not a test;
run by hand after a change):

    DMT_COMFYUI_DIR=.ci-work/ComfyUI python tests/comfy/build_workflows.py [NAME ...]

Starts a server, builds each graph with LiteGraph in headless chromium (createNode, graph.add,
connect, widget values, groups), fits the view so that the Note and the outputs are on screen
when the file is opened, saves `app.graph.serialize()` exactly as the frontend would, reloads
it like a user and screenshots it as the template browser's thumbnail (workflows/NAME.jpg).

To add a workflow: write a JS builder (it runs with `B` = the helpers in JS_LIB and the constants
of CONSTS in scope) and append a Workflow(...) to WORKFLOWS. `B.common()` builds the shared
input → model → inversion → targets → init stages and returns those nodes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_helpers import REPO, WORKFLOW_DIR, Frontend, Server, make_base  # noqa: E402

sys.path.insert(0, str(REPO))
from dmt.io.example_clip import EXAMPLE_CLIP_NAME, EXAMPLE_SOURCE_PROMPT  # noqa: E402
from dmt.toyworld.card import TOY_ENTRY  # noqa: E402
from dmt.toyworld.demo import DEMO_CLIP_NAME  # noqa: E402

DOWNLOAD_ENTRY = "zeroscope_v2_576w (download cerspense/zeroscope_v2_576w on first use)"
WAN_DOWNLOAD_ENTRY = "Wan2.1-T2V-1.3B-Diffusers (download Wan-AI/Wan2.1-T2V-1.3B-Diffusers on first use)"
VIEW = (1700, 860)   # the part of a 1920x1080 browser window the canvas shows, in CSS pixels
SCREEN = (1800, 1000)  # the headless page for the thumbnails
THUMB_WIDTH = 960

CONSTS = {
    "INPUT": EXAMPLE_CLIP_NAME, "DOWNLOAD": DOWNLOAD_ENTRY, "SOURCE": EXAMPLE_SOURCE_PROMPT,
    "TARGET": "a red sports car driving on a road",
    "TARGET2": "a steam train driving on a road",
    "TOY_INPUT": DEMO_CLIP_NAME, "TOY_MODEL": TOY_ENTRY,
    "WAN_DOWNLOAD": WAN_DOWNLOAD_ENTRY,
}

COLORS = {"input": "#3f789e", "model": "#8A8", "invert": "#b58b2a", "sample": "#a1309b", "output": "#88A",
          "later": "#444"}

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
  // Output slot by name/label/type; input slot by name (widget inputs included: a link drives the widget).
  link(a, outName, b, inName) {
    const out = a.outputs.findIndex(o => o.name === outName || o.label === outName || o.type === outName);
    let inp = b.inputs.findIndex(i => i.name === inName);
    if (inp < 0 && b.widgets && b.widgets.find(w => w.name === inName) && b.convertWidgetToInput) {
      b.convertWidgetToInput(b.widgets.find(w => w.name === inName));  // older frontends
      inp = b.inputs.findIndex(i => i.name === inName);
    }
    if (out < 0 || inp < 0) throw new Error(`no slot ${a.type}.${outName} -> ${b.type}.${inName}`);
    if (!a.connect(out, b, inp)) throw new Error(`connect failed ${a.type}.${outName} -> ${b.type}.${inName}`);
  },
  note(text, x, y, w, h, title) {
    const n = this.add("Note", x, y, w, h);
    n.widgets[0].value = text;
    n.title = title;
    n.color = "#432"; n.bgcolor = "#653";
    return n;
  },
  // A group around `nodes` (their title bars included) with `pad` pixels around.
  group(title, nodes, color, pad = 20) {
    const T = LiteGraph.NODE_TITLE_HEIGHT || 30;
    const x0 = Math.min(...nodes.map(n => n.pos[0])) - pad;
    const y0 = Math.min(...nodes.map(n => n.pos[1] - T)) - pad - 34;
    const folded = n => n.flags && n.flags.collapsed;
    const x1 = Math.max(...nodes.map(n => n.pos[0] + (folded(n) ? 220 : n.size[0]))) + pad;
    const y1 = Math.max(...nodes.map(n => n.pos[1] + (folded(n) ? 0 : n.size[1]))) + pad;
    const g = new LiteGraph.LGraphGroup(title);
    g.pos = [x0, y0];
    g.size = [x1 - x0, y1 - y0];
    if (color) g.color = color;
    app.graph.add(g);
    return g;
  },
  // Shared stages: input video, model, inversion, targets, low-frequency init, in three columns.
  // `model`: the loader node type and its widget values (ZeroScope's download entry by default).
  common(y0 = 400, cols = [20, 400, 880], w = [320, 400, 380],
         model = {type: "DMTLoadZeroScope", values: {model_name: DOWNLOAD, dtype: "float16", device: "auto"}}) {
    const [xa, xb, xc] = cols;
    const loadVideo = this.add("LoadVideo", xa, y0, w[0], 430);
    this.set(loadVideo, {file: INPUT});
    const comps = this.add("GetVideoComponents", xa, y0 + 490, w[0], 90);
    this.link(loadVideo, "VIDEO", comps, "video");
    const loader = this.add(model.type, xb, y0, w[1], 130);
    this.set(loader, model.values);
    const invert = this.add("DMTInvertVideo", xc, y0, w[2], 330);
    this.link(loader, "model", invert, "model");
    this.link(comps, "images", invert, "images");
    this.set(invert, {source_prompt: SOURCE});
    const targets = this.add("DMTExtractTargets", xc, y0 + 400, w[2], 130);
    this.link(loader, "model", targets, "model");
    this.link(invert, "inversion", targets, "inversion");
    const init = this.add("DMTLowFrequencyInit", xc, y0 + 600, w[2], 130);
    this.link(invert, "inversion", init, "inversion");
    this.link(targets, "targets", init, "targets");
    this.set(init, {seed: 0, control_after_generate: "fixed"});
    return {loadVideo, comps, loader, invert, targets, init};
  },
  sampler(c, x, y, prompt, seed, w = 400, h = 560) {
    const s = this.add("DMTGuidedSampler", x, y, w, h);
    this.link(c.loader, "model", s, "model");
    this.link(c.targets, "targets", s, "targets");
    this.link(c.init, "latent", s, "latent");
    this.set(s, {target_prompt: prompt, seed: seed, control_after_generate: "fixed"});
    return s;
  },
  // images -> Create Video (fps from the source) -> Save Video
  saveVideo(images, slot, comps, x, y, prefix, w = 400, h = 460) {
    const create = this.add("CreateVideo", x, y, w, 90);
    this.link(images, slot, create, "images");
    this.link(comps, "fps", create, "fps");
    const save = this.add("SaveVideo", x, y + 150, w, h);
    this.link(create, "VIDEO", save, "video");
    this.set(save, {filename_prefix: prefix});
    return [create, save];
  },
};
"""

NOTE_BASIC = """Motion transfer: the new video (target prompt) moves like the input video.

Runs as loaded on the example clip (a synthetic car, copied into ComfyUI's input folder by the pack). Upload your own clip in Load Video.
1 Input: 24 frames at 576x320 is ZeroScope's native size; the invert node cuts and resizes.
2 Model: the 'download' entry fetches cerspense/zeroscope_v2_576w (~3 GB, CC BY-NC 4.0) once.
3 Invert once: source prompt = what the INPUT shows. 999 steps = the authors' setting (slow); 50, 100, 200 or 250 = quicker. Cached while the video and source prompt stay the same.
4 Sampler: target prompt = what the NEW video shows. Change the prompt or seed: only the sampler re-runs.
5 Output: the frame rate comes from the input video (fps link). Out of memory? Lower the frame count or size (multiples of 8)."""

NOTE_SWEEP = """Prompt sweep: the video is inverted once and its motion targets extracted once; both samplers reuse them (ComfyUI caches shared nodes), so each extra prompt costs one sampler run.
Runs as loaded on the example clip. Edit a target prompt or seed and only that sampler re-runs; copy a sampler + its output nodes for a third prompt."""

NOTE_LONG = """Long videos: temporal context windows.

Context Options (DMT) splits the video into overlapping windows (24 frames, overlap 8 by default: ZeroScope was trained on 24-frame clips) and runs every ZeroScope call of the transfer (inversion, targets, guided steps, denoising) window by window, blending the overlaps. GPU memory is bounded by the window, not by the video; time grows with the number of windows.
A video of at most context_length frames is one window: exactly the normal transfer.
DDIM Invert Video: frame_count 0 takes every frame of the clip. The same Context Options feed Invert, Extract Targets and the Sampler (a different schedule than the inversion's is refused).
The output keeps the source frame rate: Get Video Components' fps goes into Create Video."""

NOTE_SAVED = """Invert once, edit later - and score the result.

A (runs as loaded): inverts the example clip, saves the inversion + targets (Save Inversion -> output/dmt/), makes one edit, and scores it with Motion Fidelity (1 = the same motion, 0 = unrelated). The comparison video shows input | result with the tracked points.
B (muted, grey): edit later without inverting again. After a first run of A: press R (refresh) so Load Inversion lists the saved file, pick it, select group B and press Ctrl+M to un-mute it; mute Invert/Save in A (Ctrl+M) so only B runs.
Keep 'length' of Cut to frame count equal to the invert node's frame count (Motion Fidelity compares equal lengths)."""

BUILD_BASIC = r"""
const c = B.common();
B.note(NOTE, 20, 20, 1240, 300, "How to use DMT motion transfer");
const sampler = B.sampler(c, 1340, 400, TARGET, 0);
const [create, save] = B.saveVideo(sampler, "images", c.comps, 1820, 400, "dmt/video");
const webp = B.add("SaveAnimatedWEBP", 2280, 400, 400, 520);
B.link(sampler, "images", webp, "images");
B.link(c.comps, "fps", webp, "fps");
B.set(webp, {filename_prefix: "dmt/webp", lossless: false, quality: 90});
B.group("1 · Input video", [c.loadVideo, c.comps], COLORS.input);
B.group("2 · Model", [c.loader], COLORS.model);
B.group("3 · Invert once (cached)", [c.invert, c.targets, c.init], COLORS.invert);
B.group("4 · Motion-guided sampling", [sampler], COLORS.sample);
B.group("5 · Output (frame rate from the input)", [create, save, webp], COLORS.output);
"""

BUILD_SWEEP = r"""
const c = B.common();
B.note(NOTE, 20, 20, 1240, 200, "Prompt sweep");
const outs = [];
const samplers = [];
[[TARGET, 0, "dmt/sweep_a"], [TARGET2, 1, "dmt/sweep_b"]].forEach(([prompt, seed, prefix], k) => {
  const x = 1330 + k * 720;  // side by side: one sampler and its video per prompt
  const s = B.sampler(c, x, 400, prompt, seed, 360, 540);
  samplers.push(s);
  outs.push(...B.saveVideo(s, "images", c.comps, x + 380, 400, prefix, 300, 380));
});
B.group("1 · Input video", [c.loadVideo, c.comps], COLORS.input);
B.group("2 · Model", [c.loader], COLORS.model);
B.group("3 · Invert once (shared)", [c.invert, c.targets, c.init], COLORS.invert);
B.group("4 · Prompt A", [samplers[0], outs[0], outs[1]], COLORS.sample);
B.group("5 · Prompt B", [samplers[1], outs[2], outs[3]], COLORS.sample);
"""

BUILD_SAVED = r"""
// Columns: A input, B model + save, C invert, D sampler, E result video, F score, G comparison video.
const X = {a: 20, b: 360, c: 760, d: 1160, e: 1580, f: 1940, g: 2260};
const y0 = 340;
const c = B.common(y0, [X.a, X.b, X.c], [300, 360, 360]);
B.note(NOTE, 20, 20, 1500, 230, "Save / Load Inversion and Motion Fidelity");
const saveInv = B.add("DMTSaveInversion", X.b, y0 + 320, 360, 110);
B.link(c.invert, "inversion", saveInv, "inversion");
B.link(c.targets, "targets", saveInv, "targets");
B.set(saveInv, {filename_prefix: "dmt/inversion"});
const sampler = B.sampler(c, X.d, y0, TARGET, 0, 380, 540);
const [create, save] = B.saveVideo(sampler, "images", c.comps, X.e, y0, "dmt/video", 320, 380);
const cut = B.add("ImageFromBatch", X.f, y0, 280, 110);
cut.title = "Cut to frame count";
B.link(c.comps, "images", cut, "image");
B.set(cut, {batch_index: 0, length: 24});
const mf = B.add("DMTMotionFidelity", X.f, y0 + 170, 280, 130);
B.link(cut, "IMAGE", mf, "original");
B.link(sampler, "images", mf, "edited");
const score = B.add("PreviewAny", X.f, y0 + 360, 280, 150);
score.title = "Motion-Fidelity score";
B.link(mf, "score", score, "source");
const [ccreate, csave] = B.saveVideo(mf, "visualisation", c.comps, X.g, y0, "dmt/compare", 320, 380);
csave.title = "Comparison: input | result";
// B: edit later from the saved file (muted and folded until a saved inversion exists)
const yb = y0 + 840;
const loadInv = B.add("DMTLoadInversion", X.b, yb, 360, 110);
B.link(c.loader, "model", loadInv, "model");
const init2 = B.add("DMTLowFrequencyInit", X.c, yb, 360, 130);
B.link(loadInv, "inversion", init2, "inversion");
B.link(loadInv, "targets", init2, "targets");
B.set(init2, {seed: 0, control_after_generate: "fixed"});
const sampler2 = B.add("DMTGuidedSampler", X.d, yb, 380, 540);
B.link(c.loader, "model", sampler2, "model");
B.link(loadInv, "targets", sampler2, "targets");
B.link(init2, "latent", sampler2, "latent");
B.set(sampler2, {target_prompt: TARGET2, seed: 0, control_after_generate: "fixed"});
const later = [loadInv, init2, sampler2, ...B.saveVideo(sampler2, "images", c.comps, X.e, yb, "dmt/later", 320, 380)];
later[4].pos = [X.f, yb];
later.forEach(n => { n.mode = 2; n.flags = Object.assign(n.flags || {}, {collapsed: true}); });
B.group("1 · Input video", [c.loadVideo, c.comps], COLORS.input);
B.group("2 · Model", [c.loader], COLORS.model);
B.group("A · Save it", [saveInv], COLORS.invert);
B.group("A · Invert once", [c.invert, c.targets, c.init], COLORS.invert);
B.group("A · Edit", [sampler], COLORS.sample);
B.group("A · Result", [create, save], COLORS.output);
B.group("A · Motion Fidelity", [cut, mf, score], COLORS.output);
B.group("A · input | result", [ccreate, csave], COLORS.output);
B.group("B · Edit later from the saved inversion (muted, folded: see the note)", later, COLORS.later);
"""

BUILD_LONG = r"""
const c = B.common();
B.note(NOTE, 20, 20, 1240, 300, "Long videos (context windows)");
const ctx = B.add("DMTContextOptions", 400, 600, 400, 160);
B.set(ctx, {context_length: 24, context_overlap: 8, fuse: "pyramid"});
B.link(ctx, "context", c.invert, "context");
B.link(ctx, "context", c.targets, "context");
B.set(c.invert, {frame_count: 0});
const sampler = B.sampler(c, 1340, 400, TARGET, 0);
B.link(ctx, "context", sampler, "context");
const [create, save] = B.saveVideo(sampler, "images", c.comps, 1820, 400, "dmt/long_video");
B.group("1 · Input video (every frame)", [c.loadVideo, c.comps], COLORS.input);
B.group("2 · Model and context windows", [c.loader, ctx], COLORS.model);
B.group("3 · Invert once, window by window", [c.invert, c.targets, c.init], COLORS.invert);
B.group("4 · Motion-guided sampling", [sampler], COLORS.sample);
B.group("5 · Output (frame rate from the input)", [create, save], COLORS.output);
"""


# --- motion customization (issue 14): examples -> train -> save; load -> apply -> generate -------

NOTE_CUSTOMIZE = """Teach ZeroScope a new motion from a few example clips (motion customization, Materzynska et al. 2023).

1. Load Video: one clip of the motion per Load Video node (upload yours). Each Motion Examples node takes one clip and its caption; the caption must contain the token (default 'sks') that names the motion, e.g. 'a person doing the sks dance'. Chain more Motion Examples nodes (examples input) for more clips; 3-10 clips work best.
2. Train Motion: LoRA rank 32, 400 steps, lr 5e-4 are the defaults ('full' mode is the paper's direct tuning, lr 1e-5). Optional: connect regularization clips (Motion Examples with an empty token) of related motions.
3. Save Motion writes models/dmt_motions/<name>.safetensors; use it in the 'dmt_text_to_video' workflow.
The loss curve and a validation clip (the first caption, with the motion) show how training went. Cancel stops within one step; the loaded model is never changed."""

NOTE_T2V = """Generate a video with a customized motion: Load Motion picks a file from models/dmt_motions (made by the 'dmt_customize_motion' workflow); Apply Motion adds it to the model with a strength (0-2; chain a second Apply Motion to combine two motions). Write the motion's token in the prompt, e.g. 'a bear doing the sks dance on the beach'. The loaded model stays unchanged: the motion is patched in only while Text to Video runs."""

BUILD_CUSTOMIZE = r"""
B.note(NOTE, 20, 20, 1240, 240, "How to teach a motion");
const clips = [];
let examples = null, firstComps = null;
[[CAPTION, 0], [CAPTION2, 1]].forEach(([caption, k]) => {
  const loadVideo = B.add("LoadVideo", 20 + 320 * k, 330, 300, 380);
  B.set(loadVideo, {file: INPUT});
  const comps = B.add("GetVideoComponents", 20 + 320 * k, 770, 300, 90);
  B.link(loadVideo, "VIDEO", comps, "video");
  const ex = B.add("DMTMotionExamples", 680, 330 + 360 * k, 340, 300);
  B.link(comps, "images", ex, "images");
  B.set(ex, {caption: caption, ...CLIP_SIZE});
  if (examples) B.link(examples, "examples", ex, "examples");
  examples = ex;
  firstComps = firstComps || comps;
  clips.push(loadVideo, comps, ex);
});
const loader = B.add(MODEL.type, 1080, 330, 380, 130);
B.set(loader, MODEL.values);
const train = B.add("DMTTrainMotion", 1080, 590, 380, 500);
B.link(loader, "model", train, "model");
B.link(examples, "examples", train, "examples");
B.set(train, {seed: 0, control_after_generate: "fixed"});
const save = B.add("DMTSaveMotion", 1520, 330, 320, 110);
B.link(train, "motion", save, "motion");
B.set(save, {name: MOTION_NAME});
const curve = B.add("PreviewImage", 1520, 500, 400, 320);
B.link(train, "loss curve", curve, "images");
const [create, saveVideo] = B.saveVideo(train, "validation frames", firstComps, 1960, 330, VALIDATION_PREFIX, 320, 420);
B.group("1 · Example clips with captions (token 'sks')", clips, COLORS.input);
B.group(MODEL.group, [loader], COLORS.model);
B.group("3 · Train", [train], COLORS.sample);
B.group("4 · Motion file, loss curve, validation clip", [save, curve, create, saveVideo], COLORS.output);
"""

BUILD_T2V = r"""
B.note(NOTE, 20, 20, 1240, 160, "Text to video with a customized motion");
const loader = B.add("DMTLoadZeroScope", 40, 300, 420, 130);
B.set(loader, {model_name: DOWNLOAD, dtype: "float16", device: "auto"});
const motion = B.add("DMTLoadMotion", 40, 480, 420, 90);
B.set(motion, {motion_name: MOTION_NAME + ".safetensors"});
const apply = B.add("DMTApplyMotion", 500, 300, 320, 130);
B.link(loader, "model", apply, "model");
B.link(motion, "motion", apply, "motion");
B.set(apply, {strength: 1.0});
const t2v = B.add("DMTTextToVideo", 860, 300, 400, 480);
B.link(apply, "model", t2v, "model");
B.set(t2v, {prompt: T2V_PROMPT, seed: 0, control_after_generate: "fixed"});
const create = B.add("CreateVideo", 1300, 300, 260, 90);
B.link(t2v, "images", create, "images");
B.set(create, {fps: 8});
const save = B.add("SaveVideo", 1600, 300, 360, 420);
B.link(create, "VIDEO", save, "video");
B.set(save, {filename_prefix: "dmt/text_to_video"});
B.group("1 · Model and motion", [loader, motion, apply], COLORS.model);
B.group("2 · Generate", [t2v], COLORS.sample);
B.group("3 · Output", [create, save], COLORS.output);
"""

NOTE_TOY = """Offline demo on the bundled toy model: see motion transfer work on a CPU in about a minute.

The toy model is a tiny ZeroScope (same classes and blocks) trained on a world of coloured shapes moving along straight lines. The input clip is a red ball that moves, stops and moves on (stop-and-go), a motion the model never saw and no caption names. The sampler makes 'a blue square' that follows the same path: compare input | output in the comparison video and the Motion-Fidelity score (1 = the same motion).
Settings are the toy model's own: 64x64, 8 frames, 100 inversion steps, low-frequency factor 2, CFG 5, empty negative prompt, restart sampling off (the 'fast' preset); the guidance itself is the authors'.
For real videos use the 'dmt_basic' workflow with ZeroScope: the toy model only knows balls, squares and triangles."""

BUILD_TOY = r"""
const c = B.common(380, [20, 400, 880], [320, 400, 380]);
B.set(c.loadVideo, {file: TOY_INPUT});
B.set(c.loader, {model_name: TOY_MODEL, dtype: "float32", device: "cpu"});
B.set(c.invert, {source_prompt: "a red ball", inversion_steps: 100, width: 64, height: 64, frame_count: 8});
B.set(c.init, {downsample_factor: 2});
B.note(NOTE, 20, 20, 1240, 280, "Toy-world demo (offline, CPU)");
const sampler = B.sampler(c, 1340, 380, "a blue square", 0);
B.set(sampler, {negative_prompt: "", restart_sampling: false, cfg: 5});
const [create, save] = B.saveVideo(sampler, "images", c.comps, 1820, 380, "dmt/toyworld", 320, 380);
const cut = B.add("ImageFromBatch", 2200, 380, 300, 110);
cut.title = "Cut to frame count";
B.link(c.comps, "images", cut, "image");
B.set(cut, {batch_index: 0, length: 8});
const mf = B.add("DMTMotionFidelity", 2200, 540, 300, 130);
B.link(cut, "IMAGE", mf, "original");
B.link(sampler, "images", mf, "edited");
B.set(mf, {grid: 16});
const score = B.add("PreviewAny", 2200, 730, 300, 150);
score.title = "Motion-Fidelity score";
B.link(mf, "score", score, "source");
const [ccreate, csave] = B.saveVideo(mf, "visualisation", c.comps, 2540, 380, "dmt/compare_toyworld", 360, 380);
csave.title = "Comparison: input | output";
B.group("1 · Input (held-out stop-and-go)", [c.loadVideo, c.comps], COLORS.input);
B.group("2 · Toy model", [c.loader], COLORS.model);
B.group("3 · Invert once", [c.invert, c.targets, c.init], COLORS.invert);
B.group("4 · Guided sampling", [sampler], COLORS.sample);
B.group("5 · Output, score, input | output", [create, save, cut, mf, score, ccreate, csave], COLORS.output);
"""

NOTE_WAN = """Motion transfer on Wan 2.1 (1.3B): the same DMT nodes, run on a video DiT.

Runs as loaded on the example clip (24 frames; Wan takes 4k + 1 frames, so 21 are used). Upload your own clip in Load Video: 33 or 81 frames at 832x480 are Wan's sizes (multiples of 16).
1 Model: the 'download' entry fetches Wan-AI/Wan2.1-T2V-1.3B-Diffusers (Apache-2.0; tens of GB, mostly the UMT5 text encoder) once.
2 Invert once: Wan inverts along its 50 sampling steps (inversion_steps is ZeroScope's). Extract Targets makes both guidance targets; guidance_min 0.8 guides the first 20 % of the steps (DiTFlow's schedule), guidance_max stays 1.0.
3 Sampler: 'guidance' attention_flow = DiTFlow's attention motion flow (the default on Wan), smm = the paper's space-time feature means on transformer blocks. cfg 5, 5 Adam iterations, lr 0.002 -> 0.001 are DiTFlow's settings; restart sampling is ZeroScope's and stays off."""

BUILD_WAN = r"""
const c = B.common(400, [20, 400, 880], [320, 400, 380],
                   {type: "DMTLoadWan", values: {model_name: WAN_DOWNLOAD, dtype: "bfloat16", device: "auto"}});
B.set(c.invert, {source_prompt: SOURCE, width: 832, height: 480, frame_count: 21});
B.set(c.targets, {guidance_min: 0.8, guidance_max: 1.0});
B.note(NOTE, 20, 20, 1240, 300, "Motion transfer on Wan 2.1");
const sampler = B.sampler(c, 1340, 400, TARGET, 0);
B.set(sampler, {cfg: 5, optimization_steps: 5, lr_start: 0.002, lr_end: 0.001, restart_sampling: false,
                guidance: "attention_flow"});
const [create, save] = B.saveVideo(sampler, "images", c.comps, 1820, 400, "dmt/wan_video");
B.group("1 · Input video", [c.loadVideo, c.comps], COLORS.input);
B.group("2 · Wan 2.1 model", [c.loader], COLORS.model);
B.group("3 · Invert once (cached)", [c.invert, c.targets, c.init], COLORS.invert);
B.group("4 · Attention-flow guided sampling", [sampler], COLORS.sample);
B.group("5 · Output (frame rate from the input)", [create, save], COLORS.output);
"""

CUSTOMIZE_CONSTS = {
    "CAPTION": "a person doing the sks dance", "CAPTION2": "a woman doing the sks dance in a park",
    "MOTION_NAME": "dmt_motion", "T2V_PROMPT": "a bear doing the sks dance on the beach",
    # the base model of the customize workflow (ZeroScope's here; the Wan one overrides them)
    "MODEL": {"type": "DMTLoadZeroScope", "values": {"model_name": DOWNLOAD_ENTRY, "dtype": "float16", "device": "auto"},
              "group": "2 · Model"},
    "CLIP_SIZE": {}, "VALIDATION_PREFIX": "dmt/motion_validation",
}
WAN_CUSTOMIZE_CONSTS = {
    "MODEL": {"type": "DMTLoadWan", "values": {"model_name": WAN_DOWNLOAD_ENTRY, "dtype": "bfloat16", "device": "auto"},
              "group": "2 · Wan 2.1 model"},
    "CLIP_SIZE": {"frame_count": 17, "width": 416, "height": 240}, "VALIDATION_PREFIX": "dmt/wan_motion_validation",
    "MOTION_NAME": "dmt_wan_motion",
}

NOTE_WAN_CUSTOMIZE = """Teach Wan 2.1 (1.3B) a new motion from a few example clips: the same nodes as 'dmt_customize_motion', on Wan.

1. Clips: 17 frames (Wan takes 4k + 1) at 416x240 (multiples of 16) per Motion Examples node; captions contain the token 'sks'.
2. Train Motion tunes each transformer block's self-attention and the cross-attention key/value (LoRA rank 32, 400 steps, lr 5e-4) with Wan's flow-matching objective.
3. Save Motion writes models/dmt_motions/dmt_wan_motion.safetensors. A Wan motion works on Wan only (Apply Motion refuses it on ZeroScope); apply it with Apply Motion -> Text to Video (frame_count 17, 416x240) or before the motion-transfer nodes."""


@dataclass
class Workflow:
    name: str       # file name without .json
    script: str     # JS builder
    note: str       # text of its Note (the NOTE constant)
    consts: dict = field(default_factory=dict)  # JS constants that override CONSTS / CUSTOMIZE_CONSTS


WORKFLOWS = [
    Workflow("dmt_basic", BUILD_BASIC, NOTE_BASIC),
    Workflow("dmt_prompt_sweep", BUILD_SWEEP, NOTE_SWEEP),
    Workflow("dmt_saved_inversion_and_score", BUILD_SAVED, NOTE_SAVED),
    Workflow("dmt_long_video", BUILD_LONG, NOTE_LONG),
    Workflow("dmt_customize_motion", BUILD_CUSTOMIZE, NOTE_CUSTOMIZE),
    Workflow("dmt_text_to_video", BUILD_T2V, NOTE_T2V),
    Workflow("dmt_toyworld_demo", BUILD_TOY, NOTE_TOY),
    Workflow("dmt_wan_motion_transfer", BUILD_WAN, NOTE_WAN),
    Workflow("dmt_wan_customize_motion", BUILD_CUSTOMIZE, NOTE_WAN_CUSTOMIZE, WAN_CUSTOMIZE_CONSTS),
]

FIT_VIEW = r"""([vw, vh]) => {
  const T = LiteGraph.NODE_TITLE_HEIGHT || 30;
  const folded = n => n.flags && n.flags.collapsed;
  const boxes = app.graph._nodes.map(n => [n.pos[0], n.pos[1] - T, n.pos[0] + (folded(n) ? 220 : n.size[0]),
                                           n.pos[1] + (folded(n) ? 0 : n.size[1])])
    .concat((app.graph._groups || app.graph.groups || []).map(g => [g.pos[0], g.pos[1], g.pos[0] + g.size[0], g.pos[1] + g.size[1]]));
  const x0 = Math.min(...boxes.map(b => b[0])), y0 = Math.min(...boxes.map(b => b[1]));
  const x1 = Math.max(...boxes.map(b => b[2])), y1 = Math.max(...boxes.map(b => b[3]));
  const left = 60, top = 130;   // the frontend's side bar, top menu, tabs and banner
  // not below 0.58: under about 0.57 (8 px / 14 px fonts) the frontend draws nodes without any text
  const scale = Math.max(Math.min((vw - left - 20) / (x1 - x0), (vh - top - 20) / (y1 - y0), 1), 0.58);
  return {scale: Math.round(scale * 1000) / 1000, offset: [Math.round(left / scale - x0), Math.round(top / scale - y0)]};
}"""


def build(fe: Frontend, wf: Workflow) -> dict:
    consts = {**CONSTS, **CUSTOMIZE_CONSTS, **wf.consts, "NOTE": wf.note, "COLORS": COLORS}
    decl = "".join(f"const {k} = {json.dumps(v)};\n" for k, v in consts.items())
    fe.page.evaluate("() => {app.graph.clear();\n" + decl + JS_LIB + "const B = window.dmtBuild;\n" + wf.script
                     + "\napp.graph.setDirtyCanvas(true, true);}")
    data = fe.serialize()
    data.setdefault("extra", {})["ds"] = fe.page.evaluate(FIT_VIEW, list(VIEW))
    return data


def thumbnail(fe: Frontend, data: dict, name: str, out: Path) -> None:
    """Load the saved workflow like a user (view restored from extra.ds) and save a JPEG."""
    import cv2
    import numpy as np

    fe.load(data, name + ".json")
    fe.page.wait_for_timeout(1500)
    png = fe.page.screenshot(type="png")
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    img = cv2.resize(img, (THUMB_WIDTH, round(h * THUMB_WIDTH / w)), interpolation=cv2.INTER_AREA)
    tmp = out.with_suffix(".tmp.jpg")
    cv2.imwrite(str(tmp), img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    tmp.replace(out)


def main(names: list[str]) -> None:
    comfy = Path(os.environ.get("DMT_COMFYUI_DIR", REPO / ".ci-work" / "ComfyUI"))
    todo = [w for w in WORKFLOWS if not names or w.name in names]
    with tempfile.TemporaryDirectory() as tmp:
        base = make_base(Path(tmp))
        server = Server(comfy, base).start()
        try:
            with Frontend(server, viewport=SCREEN) as fe:
                for wf in todo:
                    data = build(fe, wf)
                    out = WORKFLOW_DIR / f"{wf.name}.json"
                    out.parent.mkdir(exist_ok=True)
                    out.write_text(json.dumps(data, indent=2) + "\n")
                    thumbnail(fe, data, wf.name, out.with_suffix(".jpg"))
                    print("wrote", out, len(data["nodes"]), "nodes", len(data["links"]), "links, and its .jpg")
        finally:
            server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
