"""Planning a batch (keys, finished jobs) and running one job on a loaded model.

Shared by the in-process and the Ray runner: both plan in the driver, and run each job through
`JobExecutor.run`, which never raises for a job's own failure (bad video, out of memory, bad
setting): it returns a results row with status "failed" and the message.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import platform
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DMTError, InputError, ModelLoadError
from .cache import BatchCache, inversion_key, result_key, video_digest
from .jobs import Job


@dataclass(frozen=True)
class BatchSettings:
    """What every job of a batch shares. model: a local diffusers folder (resolved by
    `resolve_model`); model_sha: its `model_digest`; dtype: resolved ("float32", ...);
    device: None = cuda when the worker has one, else cpu; threads: see dmt.models.threads."""

    model: str
    model_sha: str
    out_dir: str
    dtype: str
    device: str | None = None
    score: bool = False
    threads: int | None = None  # torch CPU threads (None: the rule of dmt.models.threads)


@dataclass
class PlannedJob:
    job: Job
    inversion_key: str
    result_key: str
    finished: dict | None = None  # stored row when the job is already done


def model_kind(folder: str | Path) -> str:
    """"wan" for a Wan folder, else "zeroscope" (what `resolve_model` gives is one or the other)."""
    from ..models.folders import identify_folder

    return "wan" if identify_folder(Path(folder)).kind == "wan" else "zeroscope"


def resolve_model(source: str) -> str:
    """A local model folder for `source` (a ZeroScope or Wan folder, or a hub repo id fetched like
    `transfer` does)."""
    from ..cli.transfer_wan import is_wan_source
    from ..models.wan import WAN_DOWNLOAD_PATTERNS, wan_missing_files
    from ..models.zeroscope import missing_files

    path = Path(source).expanduser()
    if path.is_dir():
        missing = (wan_missing_files if model_kind(path) == "wan" else missing_files)(path)
        if missing:
            raise ModelLoadError(f"Model folder '{source}' is incomplete; missing: {', '.join(missing)}.")
        return str(path.resolve())
    if path.exists():
        raise ModelLoadError(f"Model path '{source}' is a file; give the diffusers folder that holds unet/, vae/, ...")
    looks_like_repo = source.count("/") == 1 and not source.startswith((".", "/", "~"))
    if not looks_like_repo:
        raise ModelLoadError(f"Model folder '{source}' does not exist. Give a ZeroScope or Wan diffusers folder or a "
                             f"hub repo id.")
    from huggingface_hub import snapshot_download

    from ..models.zeroscope import DOWNLOAD_PATTERNS

    try:
        return snapshot_download(source, allow_patterns=list(WAN_DOWNLOAD_PATTERNS if is_wan_source(source)
                                                             else DOWNLOAD_PATTERNS))
    except Exception as exc:  # noqa: BLE001 - any hub failure is a user-facing load error
        raise ModelLoadError(f"Could not fetch '{source}' from the Hugging Face hub: {type(exc).__name__}: {exc}. "
                             f"Download it once into a folder and pass that folder.") from exc


def default_dtype(device: str) -> str:
    return "float16" if torch.device(device).type == "cuda" else "float32"


def for_model(jobs: list[Job], kind: str) -> list[Job]:
    """The jobs as the batch's model runs them. ZeroScope: unchanged. Wan: the options a line did
    not give take Wan's defaults as `transfer` gives them (no context windows, CFG 5; the frame
    count, not given, is chosen at run time: the largest 4k + 1 up to 33), so the cache keys hold
    what runs. InputError (every line at once, before anything runs) for a line that gives a
    ZeroScope-only option to Wan, attention-flow guidance to ZeroScope, or context windows that
    Wan's latent frames cannot take (fewer than 2 latent frames, an overlap covering the window)."""
    from ..cli.transfer_wan import ZEROSCOPE_ONLY
    from ..models.wan import TEMPORAL_FACTOR
    from ..settings import WAN_GUIDANCE_SCALE
    from ..transfer.context import ContextOptions, latent_context

    problems, out = [], []
    for job in jobs:
        if kind != "wan":
            if job.options.get("guidance") == "attention_flow":
                problems.append(f"line {job.line}: 'guidance' attention_flow reads a Wan transformer's attention; "
                                f"the batch model is ZeroScope (use 'smm' or 'auto')")
            out.append(job)
            continue
        zs = sorted(k for k in ZEROSCOPE_ONLY if k in job.given or (k == "preset" and job.options.get("preset")))
        if zs:
            problems.append(f"line {job.line}: {', '.join(map(repr, zs))} {'is' if len(zs) == 1 else 'are'} "
                            f"ZeroScope's; the batch model is Wan (leave {'it' if len(zs) == 1 else 'them'} out)")
        options = dict(job.options)
        if "context_length" not in job.given:
            options["context_length"] = 0
        elif options["context_length"]:
            try:
                latent_context(ContextOptions(options["context_length"], options["context_overlap"],
                                              fuse=options["context_fuse"]), TEMPORAL_FACTOR)
            except InputError as exc:
                problems.append(f"line {job.line}: {exc}")
        if "guidance_scale" not in job.given:
            options["guidance_scale"] = WAN_GUIDANCE_SCALE
        out.append(dataclasses.replace(job, options=options))
    if problems:
        raise InputError(f"{len(problems)} job(s) cannot run on this model; nothing was run:\n  " + "\n  ".join(problems))
    return out


def plan(jobs: list[Job], settings: BatchSettings) -> list[PlannedJob]:
    """Keys of every job (as the model runs it: `for_model`) and which are finished (DIR/cache/
    results marker + output present)."""
    jobs = for_model(jobs, model_kind(settings.model))
    cache = BatchCache(settings.out_dir)
    digests: dict[str, str] = {}
    planned = []
    for job in jobs:
        if job.video not in digests:
            try:
                digests[job.video] = video_digest(job.video)
            except OSError as exc:
                raise InputError(f"line {job.line}: cannot read video '{job.video}': {exc}") from exc
        ikey = inversion_key(job, digests[job.video], settings.model_sha, settings.dtype)
        rkey = result_key(job, ikey)
        done = cache.finished_row(rkey, job)
        if done is not None and settings.score and done.get("motion_fidelity") is None and "score_error" not in done:
            done = None  # finished without a score: run again to score it
        planned.append(PlannedJob(job, ikey, rkey, done))
    return planned


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process_max_rss"


def frames_digest(frames: torch.Tensor) -> str:
    """SHA-256 of the frames as written (uint8), independent of the video codec."""
    from ..io.video import frames_to_uint8

    return hashlib.sha256(frames_to_uint8(frames).tobytes()).hexdigest()


class JobExecutor:
    """Runs jobs on one model, loaded on first use and reused for every later job."""

    def __init__(self, settings: BatchSettings):
        self.settings = settings
        self.cache = BatchCache(settings.out_dir)
        self.model = None
        self.inversions_computed = 0

    def _device(self) -> str:
        return self.settings.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def load(self):
        if self.model is None:
            from ..models.threads import set_threads_for
            from ..models.wan import load_wan
            from ..models.zeroscope import load_zeroscope

            loader = load_wan if model_kind(self.settings.model) == "wan" else load_zeroscope
            self.model = loader(self.settings.model, self.settings.dtype, self._device())
            set_threads_for(self.model, self.settings.threads)
        return self.model

    def run(self, pj: PlannedJob, attempt: int = 1) -> dict:
        """Run one job; returns its results row (status ok or failed). Never raises for the job's
        own errors; KeyboardInterrupt passes through."""
        job, cache = pj.job, self.cache
        row = base_row(pj, self.settings)
        row.update(attempts=attempt, worker=f"{platform.node()}:{os.getpid()}")
        started = time.perf_counter()
        running = cache.mark_running(job, {"pid": os.getpid(), "host": platform.node(), "attempt": attempt,
                                           "started": time.time(), "result_key": pj.result_key})
        try:
            model = self.load()
            row["seconds_model_load"] = round(time.perf_counter() - started, 3)
            if model.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(model.device)
            self._run(pj, model, row)
            row["status"] = "ok"
        except (KeyboardInterrupt, ModelLoadError):
            raise  # a model that does not load fails every job: stop the batch with the message
        except Exception as exc:  # noqa: BLE001 - a job's failure is recorded, the batch goes on
            row["status"] = "failed"
            row["message"] = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, torch.OutOfMemoryError) and torch.cuda.is_available():
                torch.cuda.empty_cache()
            if not isinstance(exc, (DMTError, ValueError)):
                row["traceback"] = traceback.format_exc(limit=8)
        finally:
            running.unlink(missing_ok=True)
        row["seconds_total"] = round(time.perf_counter() - started, 3)
        if self.model is not None:
            row["peak_memory_mb"], row["peak_memory_kind"] = _peak_memory_mb(self.model.device)
            row["peak_memory_mb"] = round(row["peak_memory_mb"], 1)
        if row["status"] == "ok":
            from .cache import write_json_atomic

            write_json_atomic(cache.result_path(pj.result_key), row)
        return row

    def _run(self, pj: PlannedJob, model, row: dict) -> None:
        from ..cli.transfer import GUIDANCE_CHOICES, context_from_args, guidance_from_options
        from ..cli.transfer_wan import wan_frame_count
        from ..io.video import read_video, write_video
        from ..models.latents import UP_TO_NATIVE, prepare_frames
        from ..transfer import pipeline
        from ..transfer.amf_guidance import AMFSettings
        from ..transfer.inversion import invert_video
        from ..transfer.wan_stages import invert_wan_video
        from .cache import atomic_path

        o, cache = pj.job.options, self.cache
        wan = getattr(model, "kind", "zeroscope") == "wan"
        context = context_from_args(argparse.Namespace(**{k: o[k] for k in ("context_length", "context_overlap",
                                                                              "context_fuse")}))
        t = time.perf_counter()
        clip = read_video(pj.job.video)
        if wan:  # as the transfer command: 4k + 1 frames, unset = up to 33, 0 = every frame
            count = wan_frame_count(len(range(o["start"], clip.frames.shape[0], o["stride"])), o["num_frames"])
        else:  # unset = up to ZeroScope's 24 frames, 0 = every frame
            count = UP_TO_NATIVE if o["num_frames"] is None else (o["num_frames"] or None)
        frames = prepare_frames(clip.frames, o["width"], o["height"], count, o["start"], o["stride"])
        fps = o["fps"] or clip.fps
        inversion = cache.load_inversion(pj.inversion_key, model, o["inversion_steps"], o["steps"])
        row["inversion"] = "cached"
        if inversion is None:
            with torch.inference_mode(False):
                # every sampling step's latent kept: jobs on this video may guide other steps
                if wan:
                    inversion = invert_wan_video(model, frames, o["source_prompt"], o["steps"], context=context)
                else:
                    inversion = invert_video(model, frames, o["source_prompt"], o["inversion_steps"], o["steps"],
                                             prompt_prefix=o["prompt_prefix"], context=context, keep_all=True)
            cache.save_inversion(pj.inversion_key, inversion)
            self.inversions_computed += 1
            row["inversion"] = "computed"
        row["seconds_inversion"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        shared = dict(negative_prompt=o["negative_prompt"], seed=o["seed"], downsample_factor=o["downsample_factor"],
                      inversion=inversion, low_memory=o["low_memory"], context=context)
        if wan:
            amf = AMFSettings(num_steps=o["steps"], guidance_scale=o["guidance_scale"],
                              guidance=GUIDANCE_CHOICES[o["guidance"]] or "amf")
            result = pipeline.transfer(model, None, o["source_prompt"], o["target_prompt"], amf=amf, **shared)
        else:
            result = pipeline.transfer(
                model, frames, o["source_prompt"], o["target_prompt"], num_steps=o["steps"],
                num_inversion_steps=o["inversion_steps"], guidance_window=tuple(o["guidance_window"]),
                settings=guidance_from_options(o), prompt_prefix=o["prompt_prefix"], **shared)
        row["seconds_transfer"] = round(time.perf_counter() - t, 3)
        out = cache.output_path(pj.job)
        with atomic_path(out) as tmp:
            write_video(tmp, result.frames, fps)
        row["frames_sha256"] = frames_digest(result.frames)
        row["num_frames_out"] = int(result.frames.shape[0])
        if self.settings.score:
            from ..metrics.motion_fidelity import motion_fidelity

            t = time.perf_counter()
            try:
                mf = motion_fidelity(frames, result.frames)
            except ValueError as exc:  # e.g. nothing trackable: the output stands, the score is missing
                row["motion_fidelity"] = None
                row["score_error"] = f"{type(exc).__name__}: {exc}"
            else:
                row["motion_fidelity"] = round(mf.combined, 6)
                row["motion_fidelity_paper_sum"] = round(mf.paper_sum, 6)
            row["seconds_score"] = round(time.perf_counter() - t, 3)


def base_row(pj: PlannedJob, settings: BatchSettings) -> dict:
    """The results row of a job before it runs (settings, keys, output path)."""
    return {
        "line": pj.job.line, "name": pj.job.name, "status": "pending", "message": "",
        "output": str(BatchCache(settings.out_dir).output_path(pj.job)), "video": pj.job.video,
        "result_key": pj.result_key, "inversion_key": pj.inversion_key, "model": settings.model,
        "dtype": settings.dtype, "settings": pj.job.settings(),
    }


def finished_row(pj: PlannedJob) -> dict:
    """The row of a job skipped because it is finished: the stored row, marked cached."""
    return {**pj.finished, "cached": True, "line": pj.job.line}


__all__ = ["BatchSettings", "PlannedJob", "JobExecutor", "plan", "for_model", "model_kind", "resolve_model", "default_dtype",
           "base_row", "finished_row", "frames_digest"]
