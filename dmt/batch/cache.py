"""Content-addressed cache of a batch output folder (DIR/cache/).

Keys are SHA-256 digests of JSON documents that hold everything a result depends on:

- inversion key = video bytes + frame preparation (width, height, num_frames, start, stride) +
  source prompt and prompt prefix + inversion and sampling steps + model fingerprint + dtype.
  The model fingerprint is `model_digest` of the model folder (configs, weight sizes and ends),
  computed without loading the model, so a finished batch re-runs without loading anything.
  Stored as DIR/cache/inversions/<key>.safetensors (dmt.transfer.inversion_files format).
- result key = inversion key + every other job setting + the output name (not whether it is
  scored: a finished job without a score is run again when --score is asked). Stored as
  DIR/cache/results/<key>.json: the job's results row, written after the output video is in
  place. A job whose marker and output both exist is finished.

A changed setting changes the key of the jobs it affects, and only of those. Every file is
written to a temporary name in the same folder and renamed (atomic on POSIX filesystems), so a
crashed or killed worker never leaves a partial file under a final name; workers on several
machines share the cache through a shared filesystem.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from ..io.video import IMAGE_SUFFIXES
from .jobs import Job

#: Settings the inversion depends on (everything else only affects the sampling).
INVERSION_SETTINGS = ("width", "height", "num_frames", "start", "stride", "source_prompt", "prompt_prefix",
                      "inversion_steps", "steps", "context_length", "context_overlap", "context_fuse")
KEY_VERSION = 2  # 2: context windows in the keys; inversions keep every sampling timestep


def _digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def video_digest(path: str | Path) -> str:
    """SHA-256 of a video file's bytes, or of a frame folder's image names and bytes."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            h.update(f.name.encode() + b"\0")
            _hash_file(h, f)
    else:
        _hash_file(h, path)
    return h.hexdigest()


def model_digest(folder: str | Path) -> str:
    """Cheap fingerprint of a diffusers model folder without loading it: every config/tokenizer
    file's bytes, and each weight file's size plus its first and last MiB."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts)):
        rel = f.relative_to(folder).as_posix()
        h.update(rel.encode() + b"\0")
        size = f.stat().st_size
        if f.suffix in (".safetensors", ".bin", ".pt", ".ckpt", ".pth") or size > (8 << 20):
            h.update(str(size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if size > (2 << 20):
                    fh.seek(size - (1 << 20))
                    h.update(fh.read(1 << 20))
        else:
            _hash_file(h, f)
    return h.hexdigest()


def inversion_key(job: Job, video_sha: str, model_sha: str, dtype: str) -> str:
    return _digest({"v": KEY_VERSION, "kind": "inversion", "video": video_sha, "model": model_sha, "dtype": dtype,
                    **{k: job.options.get(k) for k in INVERSION_SETTINGS}})


def result_key(job: Job, inv_key: str) -> str:
    settings = {k: v for k, v in job.options.items() if k not in ("video", "gradient_checkpointing", "low_memory")}
    # gradient checkpointing / low memory give the same result: not part of the key; the guidance
    # choice only when given (keys of batches from before it was a job key stay valid).
    if settings.get("guidance") == "auto":
        del settings["guidance"]
    return _digest({"v": KEY_VERSION, "kind": "result", "inversion": inv_key, "name": job.name,
                    **settings})


@contextmanager
def atomic_path(final: str | Path, suffix: str | None = None):
    """Yields a temporary path next to `final` (hidden, same suffix); renamed onto `final` when
    the block exits normally, removed when it raises."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".partial-{uuid.uuid4().hex[:12]}-{final.stem}{suffix if suffix is not None else final.suffix}"
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def write_json_atomic(path: str | Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class BatchCache:
    """The cache folder of one batch output folder (`DIR/cache`)."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / "cache"
        self.inversions = self.root / "inversions"
        self.results = self.root / "results"
        self.running = self.root / "running"

    def ensure(self) -> None:
        for d in (self.inversions, self.results, self.running):
            d.mkdir(parents=True, exist_ok=True)

    def inversion_path(self, key: str) -> Path:
        return self.inversions / f"{key}.safetensors"

    def result_path(self, key: str) -> Path:
        return self.results / f"{key}.json"

    def output_path(self, job: Job) -> Path:
        return self.out_dir / f"{job.name}.mp4"

    def finished_row(self, key: str, job: Job) -> dict | None:
        """The stored results row of a finished job (marker and output both present), else None."""
        marker = self.result_path(key)
        if not marker.is_file() or not self.output_path(job).is_file():
            return None
        try:
            row = json.loads(marker.read_text())
        except (OSError, ValueError):
            return None
        return row if row.get("status") == "ok" else None

    def save_inversion(self, key: str, inversion) -> Path:
        """Atomically write an inversion under its key (last writer wins; all writers agree)."""
        from ..transfer.inversion_files import save_inversion

        final = self.inversion_path(key)
        with atomic_path(final) as tmp:
            save_inversion(tmp, inversion)
        return final

    def load_inversion(self, key: str, model, num_inversion_steps: int, num_sampling_steps: int):
        """The cached inversion (on the model's device) or None when absent or unreadable."""
        from ..errors import InversionMismatchError
        from ..transfer.inversion_files import load_inversion

        path = self.inversion_path(key)
        if not path.is_file():
            return None
        try:
            inversion, _ = load_inversion(path, device=model.device, model_fingerprint=model.fingerprint,
                                          num_inversion_steps=num_inversion_steps,
                                          num_sampling_steps=num_sampling_steps)
        except InversionMismatchError:
            return None
        return inversion

    def mark_running(self, job: Job, info: dict) -> Path:
        path = self.running / f"{job.name}.json"
        write_json_atomic(path, info)
        return path

    def clear_running(self) -> None:
        if self.running.is_dir():
            for p in self.running.glob("*.json"):
                p.unlink(missing_ok=True)
