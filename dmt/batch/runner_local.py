"""In-process runner: the jobs one after another on one model load, with an overall progress bar
(jobs done / total, elapsed, ETA)."""

from __future__ import annotations

from .execute import BatchSettings, JobExecutor, PlannedJob, base_row, finished_row
from .results import write_results


def run_local(planned: list[PlannedJob], settings: BatchSettings, progress: bool = True) -> list[dict]:
    """Run every unfinished job of `planned` in this process; returns one row per job (job-file
    order). DIR/results.* are rewritten after every job, so an interrupted batch keeps its rows
    (the interrupted job stays 'pending' and runs again next time)."""
    from tqdm.auto import tqdm

    rows = [finished_row(p) if p.finished else base_row(p, settings) for p in planned]
    todo = [i for i, p in enumerate(planned) if not p.finished]
    write_results(settings.out_dir, rows)
    executor = JobExecutor(settings)
    bar = tqdm(total=len(planned), initial=len(planned) - len(todo), desc="batch", unit="job", disable=not progress,
               dynamic_ncols=True)
    try:
        for i in todo:
            bar.set_postfix_str(planned[i].job.name[:40])
            rows[i] = executor.run(planned[i])
            write_results(settings.out_dir, rows)
            bar.update(1)
    finally:
        bar.close()
    return rows
