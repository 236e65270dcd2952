"""The toy-world quality gates, as functions that return their measured figures (the thresholds
live in tests/quality and in the `toyworld eval` table).

G1 base model: text-to-video gives the prompted colour and direction.
G2 motion transfer: a held-out motion carried onto another object, against plain text-to-video
   with the same prompt and seed.
G3 motion customization: a held-out motion learned under a token, against the base model.
G4 long video: a 48-frame held-out motion through context windows, seams included.
G5 the metric: Motion-Fidelity separates same-motion pairs from other pairs.

Every sampling call goes through the library's public functions (transfer, generate_video,
train_motion, motion_fidelity); nothing here re-implements the method.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from ..customize.examples import example_from_frames
from ..customize.encode import encode_examples
from ..customize.generate import GenerateSettings, generate_video
from ..customize.train import TrainSettings, train_motion
from ..metrics.motion_fidelity import motion_fidelity
from ..models.interface import model_ops
from ..models.text import with_prefix
from ..models.zeroscope import ZeroScope
from ..transfer.context import ContextOptions
from ..transfer.pipeline import transfer
from ..transfer.presets import apply_preset
from ..transfer.sampler import GuidanceSettings
from .card import DEFAULTS, model_defaults, world_options
from .measure import direction_of, track_object, trajectory_error, velocity_error
from .world import COLOURS, DIRECTIONS, HELD_OUT, SHAPES, make_clip, subject

COLOUR_LIST, SHAPE_LIST = list(COLOURS), list(SHAPES)
SIZE = DEFAULTS["width"]
NEG = DEFAULTS["negative_prompt"]


@dataclass
class GateResult:
    """name; figures: the measured numbers; rows: per-sample records (for the table / debugging)."""

    name: str
    figures: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)


def defaults_of(model) -> dict:
    """The run defaults of a toy model (its card's; the toy ZeroScope's for a model without one)."""
    return {**DEFAULTS, **model_defaults(model.name)}


def is_wan(model) -> bool:
    return getattr(model, "kind", "zeroscope") == "wan"


def frames_of(model) -> int:
    """The toy model's clip length: 8 frames for the toy ZeroScope, 9 (4k + 1) for the toy Wan."""
    return int(defaults_of(model)["num_frames"])


def model_clip(model: ZeroScope, motion: str, colour: str, shape: str, **kw):
    """`make_clip` drawn as the model's training world was (its clip length, its trail or none; see
    world_options)."""
    kw.setdefault("num_frames", frames_of(model))
    return make_clip(motion, colour, shape, **kw, **world_options(model.name))


def model_prompt(model, prompt: str) -> str:
    """The prompt as the model's plain text-to-video baseline gets it: with the authors' prefix on
    ZeroScope (their transfer adds it), as it is on Wan."""
    return prompt if is_wan(model) else with_prefix(prompt)


def _t2v(model: ZeroScope, prompt: str, seed: int, steps: int, guidance: float | None = None, motions=None,
         num_frames: int | None = None) -> torch.Tensor:
    d = defaults_of(model)
    settings = GenerateSettings(num_frames=num_frames or frames_of(model), height=d["height"], width=d["width"],
                                steps=steps, guidance_scale=d["guidance_scale"] if guidance is None else guidance,
                                seed=seed)
    return generate_video(model, prompt, motions=motions, negative_prompt=d["negative_prompt"],
                          settings=settings).frames


def _fidelity(original: torch.Tensor, edited: torch.Tensor) -> float | None:
    """Motion-Fidelity (combined) on a 16x16 grid, or None when no point of `edited` can be
    tracked through every frame (the metric refuses such a pair)."""
    from ..errors import InputError

    try:
        return motion_fidelity(original, edited, grid=16).combined
    except InputError:
        return None


# ---- G1 ------------------------------------------------------------------------------------------

def gate_base(model: ZeroScope, samples: int = 48, steps: int = 25, guidance: float | None = None,
              seed0: int = 10_000) -> GateResult:
    """Text-to-video on `samples` prompts (colour × shape × direction, "quickly"), seeds from seed0
    (never used in training). Figures: colour and direction accuracy, and both together."""
    res = GateResult("G1 base model")
    combos = list(itertools.product(COLOUR_LIST, SHAPE_LIST, DIRECTIONS))
    for i in range(samples):
        colour, shape, direction = combos[i % len(combos)]
        prompt = f"{subject(colour, shape)} moving {direction} quickly"
        frames = _t2v(model, prompt, seed0 + i, steps, guidance)
        tr = track_object(frames)
        res.rows.append({"prompt": prompt, "colour": tr.colour, "direction": direction_of(tr.positions),
                         "ok_colour": tr.colour == colour, "ok_direction": direction_of(tr.positions) == direction})
    n = len(res.rows)
    res.figures = {"samples": n, "colour_accuracy": sum(r["ok_colour"] for r in res.rows) / n,
                   "direction_accuracy": sum(r["ok_direction"] for r in res.rows) / n,
                   "both_accuracy": sum(r["ok_colour"] and r["ok_direction"] for r in res.rows) / n}
    return res


# ---- G2 ------------------------------------------------------------------------------------------

def transfer_pairs(count: int = 12) -> list[dict]:
    """Source clips with held-out motions and a target object of another colour and shape."""
    pairs = []
    for i in range(count):
        c, s = COLOUR_LIST[i % 4], SHAPE_LIST[i % 3]
        tc, ts = COLOUR_LIST[(i + 1 + i // 4) % 4], SHAPE_LIST[(i + 1) % 3]
        pairs.append({"motion": HELD_OUT[i % len(HELD_OUT)], "colour": c, "shape": s, "target_colour": tc,
                      "target_shape": ts, "clip_seed": 5_000 + i, "seed": i})
    return pairs


#: the toy Wan's guided-sampling "presets": the guidance loss (AMFSettings.guidance), DiTFlow's schedule
WAN_PRESETS = ("amf", "smm")


def toy_transfer_kwargs(preset: str = "fast", guidance: bool = True, model=None, **overrides) -> dict:
    """Keyword arguments of `dmt.transfer` for a toy model: the preset's settings, the toy
    model's own negative prompt and low-frequency factor; guidance=False switches the motion
    guidance off (0 optimisation iterations: the negative control). A toy Wan (`model`) takes
    preset "amf" or "smm" (its guidance loss, with DiTFlow's schedule otherwise)."""
    if model is not None and is_wan(model):
        from ..transfer.amf_guidance import AMFSettings

        if preset not in WAN_PRESETS:
            raise ValueError(f"a toy Wan's transfer preset is one of {WAN_PRESETS}, not {preset!r}")
        d = defaults_of(model)
        amf = AMFSettings(guidance=preset, guidance_scale=d["guidance_scale"], iterations=5 if guidance else 0)
        kw = dict(negative_prompt=d["negative_prompt"], downsample_factor=d["downsample_factor"], amf=amf)
        kw.update(overrides)
        return kw
    settings, inv_steps = apply_preset(preset, GuidanceSettings(guidance_scale=DEFAULTS["guidance_scale"]))
    if not guidance:
        settings = dataclasses.replace(settings, optimization_steps=0)
    kw = dict(negative_prompt=NEG, num_inversion_steps=inv_steps, downsample_factor=DEFAULTS["downsample_factor"],
              settings=settings)
    kw.update(overrides)
    return kw


def gate_transfer(model: ZeroScope, count: int = 12, preset: str = "fast", guidance: bool = True,
                  with_fidelity: bool = True) -> GateResult:
    """Transfer each held-out source onto another object; compare with text-to-video (same prompt,
    seed, steps and CFG). Figures: mean trajectory error (px) of transfer and baseline, their ratio,
    the share of outputs with the prompted colour, mean Motion-Fidelity of each against the source.
    Further figures say what limits the gate: `err_roundtrip_px`, the error of the source latent
    the transfer read (its VAE encoding) decoded again (`ratio_roundtrip` = that / the baseline's:
    what a perfect copy of the source latent would score), and, when guided, `loss_step_drop`, the mean relative fall
    of the guidance loss within a guided step (its first to its last optimiser iteration) and
    `loss_start` / `loss_end`, the loss at the first guided step's first iteration and at the last
    guided step's last (means over the clips)."""
    res = GateResult(f"G2 motion transfer ({preset}{'' if guidance else ', guidance off'})")
    kw = toy_transfer_kwargs(preset, guidance, model)
    cfg = kw["amf"] if is_wan(model) else kw["settings"]
    for p in transfer_pairs(count):
        src = model_clip(model, p["motion"], p["colour"], p["shape"], seed=p["clip_seed"])
        target = subject(p["target_colour"], p["target_shape"])
        result = transfer(model, src.frames, subject(p["colour"], p["shape"]), target, seed=p["seed"], **kw)
        out = result.frames
        base = _t2v(model, model_prompt(model, target), p["seed"], 50, cfg.guidance_scale)
        with torch.no_grad():  # the source latent the transfer read, decoded
            roundtrip = model_ops(model).decode(model, result.inversion.x0)
        ts, to, tb = track_object(src.frames), track_object(out), track_object(base)
        row = {**p, "err_transfer": trajectory_error(to.positions, ts.positions),
               "err_baseline": trajectory_error(tb.positions, ts.positions),
               "err_roundtrip": trajectory_error(track_object(roundtrip).positions, ts.positions),
               "colour_ok": to.colour == p["target_colour"], "colour_out": to.colour}
        row.update(_loss_trace(result.sample.losses))
        if with_fidelity:
            row["mf_transfer"], row["mf_baseline"] = _fidelity(src.frames, out), _fidelity(src.frames, base)
        res.rows.append(row)
    rows = res.rows
    res.figures = {"clips": len(rows), "err_transfer_px": float(np.mean([r["err_transfer"] for r in rows])),
                   "err_baseline_px": float(np.mean([r["err_baseline"] for r in rows])),
                   "colour_accuracy": sum(r["colour_ok"] for r in rows) / len(rows),
                   "wins": sum(r["err_transfer"] < r["err_baseline"] for r in rows)}
    res.figures["ratio"] = res.figures["err_transfer_px"] / max(res.figures["err_baseline_px"], 1e-6)
    res.figures["err_roundtrip_px"] = float(np.mean([r["err_roundtrip"] for r in rows]))
    res.figures["ratio_roundtrip"] = res.figures["err_roundtrip_px"] / max(res.figures["err_baseline_px"], 1e-6)
    for k in ("loss_start", "loss_end", "loss_step_drop"):
        if all(k in r for r in rows):
            res.figures[k] = float(np.mean([r[k] for r in rows]))
    if with_fidelity:
        for k in ("mf_transfer", "mf_baseline"):  # an untrackable output scores as no match (0)
            res.figures[k] = float(np.mean([r[k] if r[k] is not None else 0.0 for r in rows]))
            res.figures[k + "_untrackable"] = sum(r[k] is None for r in rows)
    return res


def _loss_trace(losses: dict[int, list[float]]) -> dict[str, float]:
    """A guided sampling's loss record (guided step → the loss before each optimiser iteration, in
    sampling order, as SampleResult keeps it by timestep and AMFSampleResult by step index) as
    loss_start, loss_end and loss_step_drop (see gate_transfer); empty when no step was guided."""
    steps = [v for v in losses.values() if v]
    if not steps:
        return {}
    drops = [1.0 - v[-1] / v[0] for v in steps if v[0] > 0]
    return {"loss_start": float(steps[0][0]), "loss_end": float(steps[-1][-1]),
            "loss_step_drop": float(np.mean(drops)) if drops else 0.0}


# ---- G3 ------------------------------------------------------------------------------------------

#: the objects of the example clips and the unseen colour/shape combinations of the test prompts
EXAMPLE_OBJECTS = [("red", "ball"), ("green", "square"), ("blue", "triangle"), ("yellow", "ball"), ("red", "square")]
TEST_OBJECTS = [("green", "triangle"), ("blue", "ball"), ("yellow", "square"), ("red", "triangle")]
PRIOR_PROMPTS = [f"{subject(c, s)} moving {d} quickly" for (c, s), d in
                 zip([("blue", "square"), ("yellow", "triangle"), ("green", "ball"), ("red", "ball")] * 2,
                     list(DIRECTIONS) * 2)]


def canonical_positions(motion: str, num_frames: int = 8) -> np.ndarray:
    """(F, 2) pixel track of the canonical (taught) version of a held-out motion."""
    return make_clip(motion, "red", "ball", canonical=True, num_frames=num_frames).positions.numpy()


def motion_examples(model: ZeroScope, motion: str, token: str, count: int = 5):
    """Encoded example clips of one canonical held-out motion on varied objects, captioned
    "a red ball doing the <token> move"."""
    ex = []
    for i, (c, s) in enumerate(EXAMPLE_OBJECTS[:count]):
        clip = model_clip(model, motion, c, s, seed=700 + i, canonical=True)
        ex.append(example_from_frames(clip.frames, f"{subject(c, s)} doing the {token} move", token=token,
                                      num_frames=frames_of(model), height=SIZE, width=SIZE))
    return encode_examples(model, ex)


def roundtrip_motion_error(model: ZeroScope, motion: str, token: str, count: int = 5) -> float:
    """Mean velocity-profile error (px/frame) of the example clips' latents decoded again, against
    the canonical motion: what a customization that reproduced the examples' latents exactly would
    score, so the least error G3 can reach through this model's VAE."""
    ref = canonical_positions(motion, frames_of(model))
    ops = model_ops(model)
    with torch.no_grad():
        return float(np.mean([velocity_error(track_object(ops.decode(model, e.latents)).positions, ref)
                              for e in motion_examples(model, motion, token, count)]))


def regularization_clips(model: ZeroScope, count: int = 4):
    """Real vocabulary clips with their captions (prior preservation)."""
    ex = []
    for i in range(count):
        motion = f"{list(DIRECTIONS)[i % 4]}/quickly"
        clip = model_clip(model, motion, COLOUR_LIST[(i + 2) % 4], SHAPE_LIST[i % 3], seed=900 + i)
        ex.append(example_from_frames(clip.frames, clip.caption, token=None, num_frames=frames_of(model), height=SIZE,
                                      width=SIZE))
    return encode_examples(model, ex)


def toy_train_settings(mode: str = "lora", steps: int = 600, **overrides) -> TrainSettings:
    """Customization settings for the toy model (small rank, a learning rate for a from-scratch
    toy UNet, no validation clips). 600 steps at 2e-3 learn the held-out circle on the bundled
    model (2026-12-05; velocity error × the base model's): LoRA 0.43 (150 steps at 5e-4: 1.13),
    full 0.30 (at 1e-4: 1.17, at 5e-4: 0.90)."""
    lr = {"lora": 2e-3, "full": 2e-3}[mode]
    kw = dict(mode=mode, rank=8, steps=steps, lr=lr, checkpoint_every=0, validation_every=0, seed=0)
    kw.update(overrides)
    return TrainSettings(**kw)


def learn_motion(model: ZeroScope, motion: str, token: str, settings: TrainSettings):
    """Train one motion on the toy examples (with real regularization clips); returns the Motion."""
    return train_motion(model, motion_examples(model, motion, token), token, settings,
                        regularization=regularization_clips(model),
                        negative_prompt=defaults_of(model)["negative_prompt"]).motion


def motion_error(model: ZeroScope, motion: str, token: str, motions, steps: int = 25,
                 guidance: float | None = None, seed0: int = 20_000) -> list[float]:
    """Velocity-profile errors (px/frame) of "<object> doing the <token> move" on the unseen test
    objects against the canonical motion, with `motions` applied (None: the base model)."""
    ref = canonical_positions(motion, frames_of(model))
    return [velocity_error(track_object(_t2v(model, f"{subject(c, s)} doing the {token} move", seed0 + i, steps,
                                             guidance, motions)).positions, ref)
            for i, (c, s) in enumerate(TEST_OBJECTS)]


def prior_accuracy(model: ZeroScope, motions, steps: int = 25, guidance: float | None = None,
                   seed0: int = 30_000) -> float:
    """Direction accuracy of vocabulary prompts (no token) with `motions` applied."""
    ok = [direction_of(track_object(_t2v(model, p, seed0 + i, steps, guidance, motions)).positions) == p.split()[4]
          for i, p in enumerate(PRIOR_PROMPTS)]
    return sum(ok) / len(ok)


def gate_customize(model: ZeroScope, modes: tuple[str, ...] = ("lora", "full"), steps: int = 600,
                   second_motion: bool = True, random_motion: bool = False,
                   second_steps: int | None = None) -> GateResult:
    """Learn the circle under "sks" (and the zigzag under "zxq"); figures per mode: velocity error
    with the motion and on the base model, prior direction accuracy with the motion applied, whether
    strength 0 equals the base model; with both motions applied, each one's error, and the zigzag's
    alone (`ratio_zigzag_alone`: a zigzag that was not learnt makes the two-motions figure say
    nothing of the interference). The zigzag trains `second_steps` (default twice `steps`): on the
    bundled toy model 600 LoRA steps did not learn it (ratio 1.01: 2 of 4 test objects zigzagged,
    2 jumped about), 1200 did (0.25; 2026-12-06, one thread). What limits the
    gate: `err_roundtrip_circle`, the example clips' latents decoded again (roundtrip_motion_error),
    and `ratio_roundtrip` = that / the base model's error (a ratio near 1: the VAE cannot carry the
    motion, so no customization can pass).
    random_motion: replace the trained deltas by random ones of the same size (negative control)."""
    res = GateResult("G3 motion customization" + (" (random motion)" if random_motion else ""))
    base_circle = float(np.mean(motion_error(model, "circle", "sks", None)))
    res.figures["base_err_circle"] = base_circle
    res.figures["err_roundtrip_circle"] = roundtrip_motion_error(model, "circle", "sks")
    res.figures["ratio_roundtrip"] = res.figures["err_roundtrip_circle"] / max(base_circle, 1e-6)
    for mode in modes:
        circle = learn_motion(model, "circle", "sks", toy_train_settings(mode, steps))
        if random_motion:
            circle = _randomized(circle)
        err = float(np.mean(motion_error(model, "circle", "sks", circle)))
        prior = prior_accuracy(model, circle)
        short = GenerateSettings(num_frames=frames_of(model), height=SIZE, width=SIZE, steps=10, seed=3)
        neg = defaults_of(model)["negative_prompt"]
        a = generate_video(model, "a blue ball doing the sks move", motions=[(circle, 0.0)], negative_prompt=neg,
                           settings=short, decode=False).latents
        b = generate_video(model, "a blue ball doing the sks move", negative_prompt=neg, settings=short,
                           decode=False).latents
        res.figures[mode] = {"err_circle": err, "ratio": err / max(base_circle, 1e-6), "prior_accuracy": prior,
                             "strength0_equals_base": bool(torch.equal(a, b))}
        if second_motion and mode == modes[0]:
            zig_steps = second_steps or 2 * steps
            zig = learn_motion(model, "zigzag", "zxq", toy_train_settings(mode, zig_steps))
            base_zig = float(np.mean(motion_error(model, "zigzag", "zxq", None)))
            alone = float(np.mean(motion_error(model, "zigzag", "zxq", zig)))
            both = [circle, zig]
            e1 = float(np.mean(motion_error(model, "circle", "sks", both)))
            e2 = float(np.mean(motion_error(model, "zigzag", "zxq", both)))
            res.figures["two_motions"] = {"mode": mode, "zigzag_steps": zig_steps, "err_circle": e1,
                                          "ratio_circle": e1 / max(base_circle, 1e-6),
                                          "base_err_zigzag": base_zig, "err_zigzag": e2,
                                          "err_roundtrip_zigzag": roundtrip_motion_error(model, "zigzag", "zxq"),
                                          "ratio_zigzag": e2 / max(base_zig, 1e-6),
                                          "ratio_zigzag_alone": alone / max(base_zig, 1e-6)}
    return res


def _randomized(motion):
    """The same motion file with every delta replaced by Gaussian noise of the same std."""
    g = torch.Generator().manual_seed(0)
    deltas = {k: torch.randn(v.shape, generator=g) * v.float().std() for k, v in motion.tensors.items()}
    return dataclasses.replace(motion, tensors=deltas)


# ---- G4 ------------------------------------------------------------------------------------------

def seam_steps(num_frames: int, length: int, overlap: int, factor: int = 1) -> list[int]:
    """Frame indices s where a window starts or ends inside the clip: the step s-1 → s crosses a seam.
    factor: video frames per latent frame after the first, where windows act on latent frames (Wan: 4)."""
    from ..transfer.context import context_windows, latent_context

    c = latent_context(ContextOptions(length, overlap), factor) if factor > 1 else ContextOptions(length, overlap)
    n = (num_frames - 1) // factor + 1
    return sorted({factor * (s - 1) + 1 for w in context_windows(n, c.length, c.overlap)
                   for s in (w.start, w.stop) if 0 < s < n})


def seam_ratio(positions: np.ndarray, seams: list[int]) -> float:
    """The largest centroid step (px) across a seam over the median step elsewhere. positions: (F, 2)
    px; seams: frame indices s whose step s-1 → s crosses a seam (seam_steps)."""
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)  # steps[k]: frame k → k+1
    at_seam = [steps[s - 1] for s in seams]
    elsewhere = [v for k, v in enumerate(steps) if k + 1 not in seams]
    return float(max(at_seam) / max(np.median(elsewhere), 1e-6))


def gate_long_video(model: ZeroScope, fuses: tuple[str, ...] = ("pyramid", "flat"), num_frames: int | None = None,
                    length: int = 16, overlap: int = 8, preset: str | None = None, guidance: bool = True) -> GateResult:
    """A 48-frame circle (3 revolutions; 49 frames on a toy Wan, whose windows act on latent frames:
    4 of them, 16 frames) transferred onto another object with context windows (preset: "fast",
    on a toy Wan "amf").
    Figures: the trajectory error (px) of plain text-to-video of the same prompt and seed (48 frames,
    no windows: the baseline), and per fuse the transfer's trajectory error (px) and the largest
    centroid step at a seam / the median step elsewhere (seam_ratio). What limits the gate: the
    source's VAE round trip (encoded and decoded, no windows) measured the same way,
    `roundtrip_err_px` and `roundtrip_seam_ratio` (a VAE that jumps between latent frames jumps at
    every seam of a Wan, whose seams fall between latent frames)."""
    wan = is_wan(model)
    num_frames, preset = num_frames or (49 if wan else 48), preset or ("amf" if wan else "fast")
    res = GateResult(f"G4 long video ({preset}{'' if guidance else ', guidance off'})")
    src = model_clip(model, "circle", "red", "ball", num_frames=num_frames, cycles=3, seed=4_000)
    ts = track_object(src.frames)
    kw = toy_transfer_kwargs(preset, guidance, model)
    seams = seam_steps(num_frames, length, overlap, 4 if wan else 1)
    scale = (kw["amf"] if wan else kw["settings"]).guidance_scale
    base = _t2v(model, model_prompt(model, "a blue square"), 1, 50, scale, num_frames=num_frames)
    res.figures["baseline_err_px"] = trajectory_error(track_object(base).positions, ts.positions)
    ops = model_ops(model)
    with torch.no_grad():
        rt = track_object(ops.decode(model, ops.encode_clip(model, src.frames))).positions
    res.figures["roundtrip_err_px"] = trajectory_error(rt, ts.positions)
    res.figures["roundtrip_seam_ratio"] = seam_ratio(rt, seams)
    for fuse in fuses:
        ctx = ContextOptions(length=length, overlap=overlap, fuse=fuse)
        out = transfer(model, src.frames, "a red ball", "a blue square", seed=1, context=ctx, **kw).frames
        to = track_object(out)
        res.figures[fuse] = {"err_px": trajectory_error(to.positions, ts.positions),
                             "seam_ratio": seam_ratio(to.positions, seams), "colour": to.colour}
    return res


# ---- G5 ------------------------------------------------------------------------------------------

def gate_metric(pairs: int = 10, grid: int = 16) -> GateResult:
    """Motion-Fidelity of same-motion pairs (one canonical held-out motion at two placements, other
    colour and shape) against the second clip reversed in time, with neighbouring frames swapped
    (0 2 1 3 5 4 6 7) and replaced by another held-out motion. A pair whose edited clip cannot be
    tracked through every frame (the metric refuses it) is counted, not scored."""
    from ..errors import InputError

    res = GateResult("G5 Motion-Fidelity")
    scores: dict[str, list[float]] = {"same": [], "reversed": [], "shuffled": [], "other": []}
    untracked = {k: 0 for k in scores}
    perm = torch.tensor([0, 2, 1, 3, 5, 4, 6, 7])
    for i in range(pairs):
        m, other = HELD_OUT[i % 5], HELD_OUT[(i + 2) % 5]
        a = make_clip(m, COLOUR_LIST[i % 4], SHAPE_LIST[i % 3], seed=600 + i, canonical=True)
        b = make_clip(m, COLOUR_LIST[(i + 1) % 4], SHAPE_LIST[(i + 1) % 3], seed=700 + i, canonical=True)
        o = make_clip(other, COLOUR_LIST[(i + 1) % 4], SHAPE_LIST[(i + 1) % 3], seed=800 + i, canonical=True)
        for kind, edited in (("same", b.frames), ("reversed", b.frames.flip(0)), ("shuffled", b.frames[perm]),
                             ("other", o.frames)):
            try:
                scores[kind].append(motion_fidelity(a.frames, edited, grid=grid).combined)
            except InputError:
                untracked[kind] += 1
    res.figures = {k: float(np.mean(v)) if v else float("nan") for k, v in scores.items()}
    res.figures["untrackable"] = untracked
    res.figures["min_same"] = float(np.min(scores["same"])) if scores["same"] else float("nan")
    negatives = [res.figures[k] for k in ("reversed", "shuffled", "other") if scores[k]]
    res.figures["margin"] = res.figures["same"] - max(negatives)
    return res


# ---- thresholds and the table ------------------------------------------------------------------

#: the gates' pass marks (tests/quality asserts these; the eval table prints them)
THRESHOLDS = {
    "G1": {"samples_min": 48, "colour_accuracy_min": 0.9, "direction_accuracy_min": 0.9},
    # mf_margin_min: the project's own check, mean Motion-Fidelity of the transfers above the
    # baseline's by this much; set so that guidance off fails it (the inversion and low-frequency
    # init alone gave +0.30 on the bundled model, the full method +0.46; 2026-12-05)
    "G2": {"clips_min": 12, "ratio_max": 0.5, "colour_accuracy_min": 0.8, "mf_margin_min": 0.4},
    "G3": {"ratio_max": 0.5, "prior_accuracy_min": 0.85},
    "G4": {"ratio_max": 0.5, "seam_ratio_max": 1.5},
    "G5": {"margin_min": 0.2},
}


def verdicts(result: GateResult) -> dict[str, bool]:
    """Each check of a gate result against THRESHOLDS → pass / fail."""
    f, key = result.figures, result.name[:2]
    th = THRESHOLDS[key]
    if key == "G1":
        return {"samples": f["samples"] >= th["samples_min"],
                "colour": f["colour_accuracy"] >= th["colour_accuracy_min"],
                "direction": f["direction_accuracy"] >= th["direction_accuracy_min"]}
    if key == "G2":
        out = {"clips": f["clips"] >= th["clips_min"], "trajectory": f["ratio"] <= th["ratio_max"],
               "colour": f["colour_accuracy"] >= th["colour_accuracy_min"]}
        if "mf_transfer" in f:
            out["motion-fidelity"] = f["mf_transfer"] >= f["mf_baseline"] + th["mf_margin_min"]
        return out
    if key == "G3":
        out = {}
        for mode in ("lora", "full"):
            if mode in f:
                out[f"{mode} motion"] = f[mode]["ratio"] <= th["ratio_max"]
                out[f"{mode} prior"] = f[mode]["prior_accuracy"] >= th["prior_accuracy_min"]
                out[f"{mode} strength 0"] = f[mode]["strength0_equals_base"]
        if "two_motions" in f:
            out["two motions"] = (f["two_motions"]["ratio_circle"] <= th["ratio_max"]
                                  and f["two_motions"]["ratio_zigzag"] <= th["ratio_max"])
        return out
    if key == "G4":
        out = {}
        for fuse in ("pyramid", "flat"):
            if fuse in f:
                out[f"{fuse} trajectory"] = f[fuse]["err_px"] <= th["ratio_max"] * f["baseline_err_px"]
                out[f"{fuse} seams"] = f[fuse]["seam_ratio"] <= th["seam_ratio_max"]
        return out
    return {"margin": f["margin"] >= th["margin_min"]}


def format_table(results: list[GateResult], timings: dict[str, float] | None = None) -> str:
    """A Markdown table: gate, check, pass/fail, the figures, seconds."""
    lines = ["| gate | checks | figures | time |", "|---|---|---|---|"]
    for r in results:
        v = verdicts(r)
        checks = ", ".join(f"{k} {'PASS' if ok else 'FAIL'}" for k, ok in v.items())
        figs = "; ".join(f"{k} {_fmt(x)}" for k, x in r.figures.items())
        t = f"{timings[r.name]:.0f} s" if timings and r.name in timings else ""
        lines.append(f"| {r.name} | {checks} | {figs} | {t} |")
    return "\n".join(lines)


def _fmt(x) -> str:
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k} {_fmt(v)}" for k, v in x.items()) + "}"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)
