"""DIR/results.jsonl and DIR/results.csv: one row per job of the job file, in its order.

Columns: line, name, status (ok / failed / pending), message, output, video, the job's settings
(prefixed `setting.` in the CSV), cached (finished in an earlier run), inversion (computed /
cached), attempts, worker, timings in seconds (model load, inversion, transfer, score, total),
peak memory in MiB (and its kind: CUDA max allocated, or the process's max RSS on CPU),
frames_sha256 (digest of the written frames) and, with --score, motion_fidelity (combined,
[-1, 1]) and motion_fidelity_paper_sum (or score_error when the
score could not be computed, e.g. nothing trackable: the job itself stays ok). Both files are rewritten atomically after every job.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .cache import atomic_path

FIRST_COLUMNS = ["line", "name", "status", "message", "output", "video", "cached", "inversion", "attempts", "worker",
                 "seconds_model_load", "seconds_inversion", "seconds_transfer", "seconds_score", "seconds_total",
                 "peak_memory_mb", "peak_memory_kind", "motion_fidelity", "motion_fidelity_paper_sum", "score_error",
                 "frames_sha256", "num_frames_out", "result_key", "inversion_key", "model", "dtype"]


def _flat(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in ("settings", "traceback")}
    for k, v in (row.get("settings") or {}).items():
        out[f"setting.{k}"] = json.dumps(v) if isinstance(v, (list, dict)) else v
    return out


def write_results(out_dir: str | Path, rows: list[dict]) -> tuple[Path, Path]:
    """Write both results files (atomically). Returns (jsonl path, csv path)."""
    out_dir = Path(out_dir)
    jsonl, csv_path = out_dir / "results.jsonl", out_dir / "results.csv"
    with atomic_path(jsonl) as tmp:
        tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    flat = [_flat(r) for r in rows]
    columns = [c for c in FIRST_COLUMNS if any(c in r for r in flat)]
    columns += sorted({k for r in flat for k in r} - set(columns))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(flat)
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buf.getvalue())
    return jsonl, csv_path


def read_results(out_dir: str | Path) -> list[dict]:
    """Rows of DIR/results.jsonl."""
    path = Path(out_dir) / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(rows: list[dict]) -> dict:
    """Counts: jobs, ok, failed, pending, cached (skipped as finished), inversions computed."""
    return {
        "jobs": len(rows),
        "ok": sum(r.get("status") == "ok" for r in rows),
        "failed": sum(r.get("status") == "failed" for r in rows),
        "pending": sum(r.get("status") == "pending" for r in rows),
        "cached": sum(bool(r.get("cached")) for r in rows),
        "inversions_computed": sum(r.get("inversion") == "computed" and not r.get("cached") for r in rows),
    }
