"""Every user-facing setting, defined once: name, type, default, valid range and help.

The library's own checks (GuidanceSettings, TrainSettings, GenerateSettings, check_size,
ContextOptions), the command line (option defaults, help texts and range checks of dmt.cli), the
batch job keys (dmt.batch.jobs: the keys *are* the TRANSFER table) and the ComfyUI widgets
(nodes/: default, min, max) all read these tables, so a range is written in one place only.

Tables (name → Setting, in the order the commands show them):
    TRANSFER  the `transfer` command's settings = the batch job keys;
    TRAIN     the `customize` command's training settings (and the Train Motion node's);
    GENERATE  the `generate` command's settings (and the Text to Video node's);
    SCORE     the `score` command's settings (and the Motion Fidelity node's);
    THREADS   --threads of the commands that run a model.
A setting's name is its snake_case key: the batch job key, and with dashes the command-line
option (guidance_scale → --guidance-scale). This module imports nothing but dmt.errors, so every
other module can take its defaults from here.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from .errors import InputError

SEED_MAX = 2**64 - 1          # torch.Generator.manual_seed takes 64-bit seeds (ComfyUI's seed widgets too)
MAX_SIZE = 2048               # width/height in pixels; ZeroScope's native size is 576x320
MAX_FRAMES = 4096
AUTHORS_CONSTANT_LR = 0.01    # the authors' learning rate when the decay is off
DEFAULT_NEGATIVE_PROMPT = "bad quality, distortions, unrealistic, distorted image, watermark, signature"
AUTHORS_PROMPT_PREFIX = "Amazing quality, masterpiece, "
#: Wan 2.1's own defaults where they differ from ZeroScope's table: classifier-free guidance 5 (Wan's
#: pipeline default) and at most 33 frames (4k + 1) when a run does not give a count (the 12 GB
#: target at 480x832)
WAN_GUIDANCE_SCALE = 5.0
WAN_MAX_FRAMES = 33


def _fmt(value: Any) -> str:
    """A value as a person writes it: 10.0 → '10', 0.007 → '0.007', 'pyramid' → 'pyramid'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


@dataclass(frozen=True)
class Setting:
    """One setting. Numbers are checked against [min, max] (min excluded with `above_min`), an
    optional `multiple_of`, and `special` values outside the range that mean something (0 = all
    frames). `count` 2: a pair of values, each checked. `optional`: None is allowed and means "not
    given" (the help says what then happens; `default_text` says it in the messages).

    type: int, float, str or bool. label: the setting in words, for the library's messages.
    """

    name: str
    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    above_min: bool = False
    multiple_of: int | None = None
    choices: tuple[str, ...] | None = None
    count: int = 1
    special: tuple[tuple[Any, str], ...] = ()
    optional: bool = False
    metavar: tuple[str, ...] | str | None = None
    label: str | None = None
    default_text: str | None = None

    @property
    def flag(self) -> str:
        """The command-line option: --guidance-scale."""
        return "--" + self.name.replace("_", "-")

    def range_text(self) -> str:
        """The numeric range in words ('from 0 to 50'; '' for settings without one)."""
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            return f"above {_fmt(lo)} and at most {_fmt(hi)}" if self.above_min else f"from {_fmt(lo)} to {_fmt(hi)}"
        if lo is not None:
            return f"above {_fmt(lo)}" if self.above_min else f"of at least {_fmt(lo)}"
        if hi is not None:
            return f"of at most {_fmt(hi)}"
        return ""

    def requirement(self, item: bool = False) -> str:
        """What a valid value is, in words: 'a number from 0 to 50' (item: of one half of a pair)."""
        if self.type is bool:
            return "true or false"
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.type is str:
            return "text"
        kind = "a whole number" if self.type is int else "a number"
        if self.multiple_of:
            kind = f"a multiple of {self.multiple_of}"
        if self.count == 2 and not item:
            kind = "2 whole numbers, each" if self.type is int else "2 numbers, each"
        text = f"{kind} {self.range_text()}".strip()
        if self.special:
            text = " or ".join([f"{_fmt(v)} ({meaning})" for v, meaning in self.special] + [text])
        return text

    def default_words(self, index: int | None = None) -> str | None:
        """The default as shown in messages (None when there is nothing to show)."""
        if self.default_text is not None and index is None:
            return self.default_text
        value = self.default if index is None else self.default[index]
        return None if value is None else repr(value) if isinstance(value, str) else _fmt(value)

    def problem(self, value: Any) -> str | None:
        """None when `value` is valid, else what is wrong: 'must be a number from 0 to 50'."""
        must = f"must be {self.requirement()}"
        if value is None:
            return None if self.optional else must
        if self.count == 2:
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
                return must
            return must if any(map(self.item_problem, value)) else None
        return self.item_problem(value)

    def item_problem(self, value: Any) -> str | None:
        """problem() for one value (one half of a pair)."""
        must = f"must be {self.requirement(item=True)}"
        if self.type is bool:
            return None if isinstance(value, bool) else must
        if self.type is str:
            ok = isinstance(value, str) and (self.choices is None or value in self.choices)
            return None if ok else must
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return must
        if self.type is int and not isinstance(value, numbers.Integral):
            return must
        if not math.isfinite(float(value)):
            return must
        if any(value == v for v, _ in self.special):
            return None
        if self.min is not None and (value < self.min or (self.above_min and value <= self.min)):
            return must
        if self.max is not None and value > self.max:
            return must
        if self.multiple_of and int(value) % self.multiple_of:
            return must
        return None

    def message(self, value: Any, label: str | None = None, index: int | None = None) -> str:
        """'LABEL is VALUE: it must be ... (default D).' LABEL defaults to the command-line flag."""
        problem = self.item_problem(value) if index is not None else self.problem(value)
        default = self.default_words(index)
        shown = repr(value) if isinstance(value, str) else _fmt(value) if value is not None else "missing"
        return (f"{label or self.flag} is {shown}: it {problem or 'is not valid'}"
                f"{f' (default {default})' if default is not None else ''}.")

    def check(self, value: Any, label: str | None = None, index: int | None = None) -> Any:
        """Return `value`, or raise InputError with message(value, label, index). With `index`,
        `value` is that half of a pair (its default is the pair's default at `index`)."""
        if (self.item_problem(value) if index is not None else self.problem(value)):
            raise InputError(self.message(value, label or (f"The {self.label}" if self.label else None), index))
        return value


def check_values(table: dict[str, Setting], values: dict[str, Any], label=lambda s: s.flag) -> list[str]:
    """Messages for every value of `values` (name → value) that its setting in `table` refuses;
    names that are not in the table are ignored. `label(setting)` names it in the messages."""
    return [table[k].message(v, label(table[k])) for k, v in values.items() if k in table and table[k].problem(v)]


def describe(table: dict[str, Setting], names: list[str] | None = None) -> list[str]:
    """One line per setting: 'name  requirement (default D)', e.g. for help texts."""
    rows = []
    for key in names or list(table):
        s = table[key]
        default = s.default_words()
        rows.append((key, s.requirement() + (f"; default {default}" if default is not None else "")))
    width = max(len(k) for k, _ in rows)
    return [f"{k.ljust(width)}  {text}" for k, text in rows]


def _table(*settings: Setting) -> dict[str, Setting]:
    return {s.name: s for s in settings}


def _size(name: str, default: int, what: str) -> Setting:
    return Setting(name, int, default, f"{what} in pixels", min=8, max=MAX_SIZE, multiple_of=8,
                   label=name)


def _seed(help: str) -> Setting:
    return Setting("seed", int, 0, help, min=0, max=SEED_MAX, label="seed")


_GUIDANCE_MAX = 50.0  # classifier-free guidance scales above this only burn the video

#: the `transfer` command's settings; exactly the batch job keys (see dmt.batch.jobs).
TRANSFER: dict[str, Setting] = _table(
    Setting("video", str, None, "input video file or folder of frames", optional=True),
    Setting("source_prompt", str, "", "text describing the input video (may be empty)"),
    Setting("target_prompt", str, None, "text describing the video to make", optional=True),
    _seed("seed of the init noise and the restart noise"),
    Setting("preset", str, None, "settings preset (its values become the defaults; options given explicitly win)",
            choices=("authors", "fast"), optional=True, default_text="none"),
    Setting("steps", int, 50, "DDIM sampling steps", min=1, max=1000, label="number of sampling steps"),
    Setting("inversion_steps", int, 999, "DDIM inversion steps (must also visit every guided timestep; the "
            "error lists the valid values)", min=1, max=999, label="number of inversion steps"),
    _size("width", 576, "model input width"),
    _size("height", 320, "model input height"),
    Setting("num_frames", int, None, "frames taken from the input (not given: up to 24, ZeroScope's length; "
            "0: all frames, a video longer than the context length then runs in windows)", min=1, max=MAX_FRAMES,
            special=((0, "all frames"),), optional=True, default_text="up to 24", label="frame count"),
    Setting("start", int, 0, "first input frame used", min=0, max=100_000, label="start frame"),
    Setting("stride", int, 1, "take every n-th input frame", min=1, max=100, label="frame stride"),
    Setting("fps", float, None, "output frame rate (not given: the input's, 8 for frame folders)", min=0,
            above_min=True, max=1000, optional=True, default_text="the input's", label="frame rate"),
    Setting("guidance_window", float, (0.6, 1.0), "fraction of the schedule that is guided: (0.6, 1.0) = the "
            "first 40% of the steps", min=0, max=1, count=2, metavar=("MIN", "MAX"), label="guidance window"),
    Setting("negative_prompt", str, DEFAULT_NEGATIVE_PROMPT, "unconditional prompt of classifier-free guidance"),
    Setting("guidance_scale", float, 10.0, "classifier-free guidance scale", min=0, max=_GUIDANCE_MAX,
            label="guidance scale (cfg)"),
    Setting("optimization_steps", int, 10, "Adam iterations per guided step (0: no motion guidance)", min=0,
            max=1000, label="number of optimisation steps"),
    Setting("lr_range", float, (0.007, 0.004), "learning rate of the first and the last guided step, linear in "
            "between (0 = the latent is not moved; above about 0.05 the video tends to break)", min=0, max=1,
            count=2, metavar=("FIRST", "LAST"), label="learning rate"),
    Setting("constant_lr", float, None, f"use this constant learning rate instead of lr_range (authors' value: "
            f"{AUTHORS_CONSTANT_LR:g})", min=0, max=1, optional=True, label="constant learning rate",
            default_text="off: lr_range is used"),
    Setting("no_restart", bool, False, "disable restart sampling (faster, less faithful)"),
    Setting("loss", str, "cosine", "SMM loss form: cosine (authors' code) or l2 (paper's equation)",
            choices=("cosine", "l2"), label="loss form"),
    Setting("downsample_factor", int, 4, "low-frequency init factor xi (1 = no noise replacement; at most "
            "min(width, height) / 8 of the video)", min=1, max=MAX_SIZE // 8, label="downsample factor"),
    Setting("prompt_prefix", str, AUTHORS_PROMPT_PREFIX, "prepended to source and target prompts ('' to disable)"),
    Setting("gradient_checkpointing", bool, False, "recompute activations in the backward pass (less memory, slower)"),
    Setting("low_memory", bool, False, "gradient checkpointing + text encoder and VAE on the CPU while idle (same "
            "result, slower)"),
    Setting("context_length", int, 24, "frames per context window (ZeroScope was trained on 24, Wan 2.1 on 81)",
            min=2, max=81,
            special=((0, "no windows"),), label="context length"),
    Setting("context_overlap", int, 8, "frames shared by neighbouring windows (less than the context length)",
            min=0, max=80, label="context overlap"),
    Setting("context_fuse", str, "pyramid", "how overlapping windows are blended: pyramid (weights fall off toward "
            "a window's edges) or flat", choices=("pyramid", "flat"), label="context fuse"),
)

#: the `customize` command's training settings (TrainSettings and the Train Motion node).
TRAIN: dict[str, Setting] = _table(
    Setting("token", str, "sks", "the word that names the motion in captions and prompts"),
    Setting("mode", str, "lora", "lora (small file) or full (the paper's: the chosen weights themselves; the file "
            "holds their deltas)", choices=("lora", "full"), label="training mode"),
    Setting("rank", int, 32, "LoRA rank (lora mode)", min=1, max=512, label="LoRA rank"),
    Setting("steps", int, 400, "optimiser steps", min=1, max=100_000, label="number of training steps"),
    Setting("lr", float, None, "AdamW learning rate (not given: 5e-4 for lora, 1e-5 for full)", min=0,
            above_min=True, max=1, optional=True, default_text="5e-4 for lora, 1e-5 for full", label="learning rate"),
    Setting("gradient_accumulation", int, 1, "micro-steps per optimiser step", min=1, max=1024,
            label="gradient accumulation"),
    Setting("frames", int, 16, "training frames per clip", min=2, max=256, label="training frame count"),
    _size("height", 256, "training height"),
    _size("width", 256, "training width"),
    Setting("stride", int, 1, "take every n-th frame of the clips", min=1, max=100, label="frame stride"),
    Setting("reg_weight", float, 1.0, "weight lambda of the regularization loss", min=0, max=10,
            label="regularization weight"),
    Setting("timesteps", str, "coarse", "timestep sampling: coarse = P(t) ~ 1 + 3t/999 (favours noisy steps) or "
            "uniform", choices=("coarse", "uniform"), label="timestep sampling"),
    _seed("seed of data order, timesteps, noise and LoRA init"),
    Setting("checkpoint_every", int, 100, "steps between resumable checkpoints (0: only at the end and on a "
            "stop)", min=0, max=100_000, label="checkpoint interval"),
    Setting("validation_every", int, None, "steps between validation clips (not given: at the start and at "
            "every checkpoint; 0: off)", min=0, max=100_000, optional=True, default_text="the checkpoint interval",
            label="validation interval"),
    Setting("validation_steps", int, 25, "sampling steps of the validation clips", min=1, max=1000,
            label="number of validation sampling steps"),
    Setting("validation_guidance", float, 9.0, "classifier-free guidance of the validation clips", min=0,
            max=_GUIDANCE_MAX, label="validation guidance scale"),
    Setting("reg_generate", int, None, "instead of regularization videos: generate N prior clips with the frozen "
            "model from the example captions without the token (cached)", min=1, max=1000, optional=True,
            metavar="N", label="number of generated regularization clips"),
)

#: the `generate` command's settings (GenerateSettings and the Text to Video node).
GENERATE: dict[str, Setting] = _table(
    Setting("frames", int, 16, "number of frames", min=2, max=256, label="frame count"),
    _size("height", 256, "height"),
    _size("width", 256, "width"),
    Setting("steps", int, 40, "DDIM steps", min=1, max=1000, label="number of sampling steps"),
    Setting("guidance", float, 9.0, "classifier-free guidance scale (1 = none)", min=0, max=_GUIDANCE_MAX,
            label="guidance scale"),
    _seed("seed of the initial noise"),
    Setting("fps", float, 8.0, "frame rate of the written video", min=0, above_min=True, max=1000, label="frame rate"),
)

#: the `score` command's settings (motion_fidelity and the Motion Fidelity node).
SCORE: dict[str, Setting] = _table(
    Setting("grid", int, 55, "points per side of the tracking grid (grid x grid points; the authors use 55)", min=2,
            max=200, metavar="N", label="tracking grid"),
    Setting("static_threshold", float, 1e-3, "per-frame displacement in frame units (x/W, y/H) below which a point "
            "counts as static", min=0, max=1, metavar="T", label="static threshold"),
)

#: torch's CPU thread count for the commands that run a model (dmt.models.threads has the rule).
THREADS = Setting("threads", int, None, "CPU threads torch uses (not given: OMP_NUM_THREADS when set, else 1 for a "
                  "small model (UNet under 50 M parameters, such as the demo's), else torch's default)", min=1,
                  max=1024, optional=True, metavar="N", label="thread count")


__all__ = ["Setting", "TRANSFER", "TRAIN", "GENERATE", "SCORE", "THREADS", "check_values", "describe", "SEED_MAX", "MAX_SIZE",
           "AUTHORS_CONSTANT_LR"]
