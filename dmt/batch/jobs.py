"""Job files for `python -m dmt batch`: one motion-transfer job per line (JSONL).

Each line is a JSON object whose keys are the `transfer` command's long options in snake_case
(`video`, `source_prompt`, `target_prompt`, `seed`, `preset`, `steps`, `inversion_steps`,
`width`, `height`, `num_frames`, ...), plus an optional `name`: the job writes `DIR/<name>.mp4`.
Options that belong to the whole batch (`model`, `device`, `dtype`, `out`) are batch options, not
job keys. Blank lines and lines starting with `#` are skipped. Defaults are the `transfer`
command's (a `preset` sets its values as defaults; keys given explicitly win, as on the command
line). A relative `video` path is relative to the job file's folder.

Example:
    {"video": "dog.mp4", "source_prompt": "a dog running", "target_prompt": "a cat running", "seed": 1}
    {"video": "dog.mp4", "target_prompt": "a dolphin jumping in the sea", "preset": "fast", "name": "dolphin"}

`load_jobs` validates the whole file before anything runs and reports every bad line at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..settings import TRANSFER, Setting

#: The job keys (besides `name`): every setting of the `transfer` command, taken from the library's
#: table (dmt.settings.TRANSFER), so a new transfer option is a job key with the same default and
#: range. The transfer options that are no job keys are NOT_JOB_OPTIONS.
#: job keys beyond the table: the `transfer` command's --guidance (a Wan batch's choice)
EXTRA_JOB_SETTINGS: dict[str, Setting] = {"guidance": Setting(
    "guidance", str, "auto", "what the motion guidance matches: attention_flow (DiTFlow's; Wan only) or smm "
    "(the paper's); auto = attention_flow on Wan, smm on ZeroScope", choices=("auto", "smm", "attention_flow"))}
JOB_OPTIONS: tuple[str, ...] = tuple(TRANSFER) + tuple(EXTRA_JOB_SETTINGS)
#: transfer options that are not job keys, with the reason (shown when a job uses one).
NOT_JOB_OPTIONS = {
    "out": "the batch writes DIR/<name>.mp4; use `name`",
    "model": "the model is a batch option (--model)",
    "device": "the device is a batch option (--device)",
    "dtype": "the dtype is a batch option (--dtype)",
    "threads": "the CPU thread count is a batch option (--threads)",
    "codec": "batch outputs are H.264 .mp4 files",
    "frames_dir": "not supported in batches",
    "save_inversion": "the batch caches inversions in DIR/cache/ itself",
    "load_inversion": "the batch caches inversions in DIR/cache/ itself",
    "optimise": "batches optimise the latent (positions are one run's file: `transfer --optimise positions`)",
    "save_positions": "batches optimise the latent (positions are one run's file: `transfer --save-positions`)",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,119}$")


def job_options() -> dict[str, Setting]:
    """The job keys (without `name`) with their setting (type, default, range; dmt.settings)."""
    return {**TRANSFER, **EXTRA_JOB_SETTINGS}


def known_keys() -> list[str]:
    return ["name", *job_options()]


def describe_keys() -> str:
    """The job keys with their ranges and defaults, one per line (the batch command's --help)."""
    from ..settings import describe

    return "\n".join(describe(job_options()))


@dataclass(frozen=True)
class Job:
    """One validated job.

    line: 1-based line in the job file. name: output name (DIR/<name>.mp4). video: absolute path.
    options: every job option with its value (defaults filled in), JSON-ready.
    given: the option keys the line gave itself (its preset's excluded): a Wan batch fills the
        others with Wan's defaults (dmt.batch.execute.for_model).
    """

    line: int
    name: str
    video: str
    options: dict = field(hash=False)
    given: frozenset = field(default=frozenset(), hash=False, compare=False)

    def settings(self) -> dict:
        """The options as recorded in results (everything but the video path)."""
        return {k: v for k, v in self.options.items() if k != "video"}


def _slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:limit].strip("-") or "job"


def default_name(video: str, target_prompt: str, seed: int) -> str:
    """`<video stem>-<target prompt slug>-s<seed>`: stable across runs of the same job file."""
    return f"{_slug(Path(video).stem, 30)}-{_slug(target_prompt)}-s{seed}"


def _label(key: str) -> str:
    return f"'{key}'"


def _coerce(setting: Setting, value, key: str) -> tuple[object, str | None]:
    """`value` of `key` as the setting's type (ints stay ints, numbers become floats), or (None,
    problem). Ranges are checked afterwards (Setting.problem), with the preset applied."""
    if value is None and (setting.optional or setting.default is None):  # explicit null = "not given"
        return None, None
    if setting.type is bool:
        return (value, None) if isinstance(value, bool) else (None, f"'{key}' must be true or false, got {value!r}")
    if setting.count == 2:
        if not isinstance(value, list) or len(value) != 2:
            return None, f"'{key}' must be a list of 2 numbers, got {value!r}"
        out = []
        for v in value:
            c, err = _scalar(setting.type, v, key)
            if err:
                return None, err
            out.append(c)
        return out, None
    return _scalar(setting.type, value, key)


def _scalar(typ, value, key: str) -> tuple[object, str | None]:
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"'{key}' must be an integer, got {value!r}"
        return value, None
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"'{key}' must be a number, got {value!r}"
        return float(value), None
    if value is not None and not isinstance(value, str):
        return None, f"'{key}' must be a string, got {value!r}"
    return value, None


def parse_job(obj: dict, line: int, base: Path, settings: dict[str, Setting]) -> tuple[Job | None, list[str]]:
    """Validate one job object against `settings` (job_options()). Returns (Job or None, problems);
    never raises for bad content. Every value is checked against its setting's range (the same
    range the `transfer` command and the library apply)."""
    from ..transfer.presets import preset_defaults

    problems: list[str] = []
    for key in obj:
        if key in NOT_JOB_OPTIONS:
            problems.append(f"field '{key}' is not a job key: {NOT_JOB_OPTIONS[key]}")
        elif key != "name" and key not in settings:
            problems.append(f"unknown field '{key}' (known fields: {', '.join(['name', *settings])})")
    values: dict = {}
    for key, setting in settings.items():
        default = setting.default
        values[key] = list(default) if isinstance(default, tuple) else default
    preset = obj.get("preset")
    given: set[str] = set()
    if preset is not None:
        value, err = _coerce(settings["preset"], preset, "preset")
        err = err or (settings["preset"].message(value, _label("preset")) if settings["preset"].problem(value) else None)
        if err:
            problems.append(err)
        else:
            values.update({k: list(v) if isinstance(v, tuple) else v for k, v in preset_defaults(value).items()})
    for key, value in obj.items():
        if key in settings and key != "preset":
            coerced, err = _coerce(settings[key], value, key)
            if err:
                problems.append(err)
            else:
                values[key] = coerced
                given.add(key)
    for key in sorted(given):
        if settings[key].problem(values[key]):
            problems.append(settings[key].message(values[key], _label(key)))
    values["preset"] = preset if isinstance(preset, str) else None
    video = values.get("video")
    if not isinstance(video, str) or not video.strip():
        problems.append("field 'video' is missing: give the input video file or folder of frames")
    else:
        path = Path(video).expanduser()
        path = path if path.is_absolute() else (base / path)
        if not path.exists():
            problems.append(f"video '{video}' does not exist (looked for {path})")
        values["video"] = str(path.resolve())
    target = values.get("target_prompt")
    if not isinstance(target, str) or not target.strip():
        problems.append("field 'target_prompt' is missing or empty: describe what the new video should show")
    name = obj.get("name")
    if name is None and not problems:
        name = default_name(values["video"], values["target_prompt"], values["seed"])
    elif name is not None and (not isinstance(name, str) or not _NAME_RE.match(name)):
        problems.append(f"'name' {name!r} is not a usable file name: letters, digits, '.', '_', '+', '-' "
                        f"(no folders), at most 120 characters")
    if problems:
        return None, problems
    return Job(line=line, name=name, video=values["video"], options=values, given=frozenset(given)), []


def load_jobs(path: str | Path) -> list[Job]:
    """Read and validate a JSONL job file.

    Raises:
        InputError: missing/unreadable file, no jobs, or any bad line - the message lists every
            problem of every line ("line N: ...") and two jobs writing the same output name.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Job file '{path}' not found. Give a JSONL file with one job object per line.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read job file '{path}': {exc}") from exc
    settings = job_options()
    base = path.resolve().parent
    jobs: list[Job] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {number}: a job must be a JSON object {{...}}, got {type(obj).__name__}")
            continue
        job, errs = parse_job(obj, number, base, settings)
        problems.extend(f"line {number}: {e}" for e in errs)
        if job is not None:
            jobs.append(job)
    seen: dict[str, int] = {}
    for job in jobs:
        key = job.name.lower()  # case-insensitive filesystems
        if key in seen:
            problems.append(f"line {job.line}: output name '{job.name}' is also written by line {seen[key]}; "
                            f"give the jobs distinct 'name' fields")
        else:
            seen[key] = job.line
    if problems:
        problems.sort(key=lambda p: int(p.split(":")[0].split()[1]))
        raise InputError(f"Job file '{path}' has {len(problems)} problem(s); nothing was run:\n  "
                         + "\n  ".join(problems))
    if not jobs:
        raise InputError(f"Job file '{path}' holds no jobs (one JSON object per line).")
    return jobs
