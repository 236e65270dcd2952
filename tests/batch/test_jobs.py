"""Job-file validation: every problem of every line at once, before anything runs."""

from __future__ import annotations

import json

import pytest

from dmt.batch.jobs import JOB_OPTIONS, NOT_JOB_OPTIONS, default_name, job_options, known_keys, load_jobs
from dmt.cli import build_parser, main
from dmt.errors import InputError
from dmt.settings import TRANSFER

from conftest import SMALL, write_jobs


def test_valid_file_defaults_and_preset(videos, tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text("# a comment\n\n"
                    + json.dumps({"video": str(videos / "left.mp4"), "target_prompt": "a cat", "seed": 3}) + "\n"
                    + json.dumps({"video": str(videos / "left.mp4"), "target_prompt": "a cat", "preset": "fast",
                                  "steps": 20, "name": "fast-cat"}) + "\n")
    a, b = load_jobs(path)
    assert (a.line, b.line) == (3, 4)
    assert a.name == default_name(a.video, "a cat", 3) == "left-a-cat-s3"
    assert a.options["steps"] == 50 and a.options["inversion_steps"] == 999  # transfer's defaults
    assert a.options["guidance_window"] == [0.6, 1.0]
    assert b.name == "fast-cat" and b.options["steps"] == 20  # explicit key wins over the preset
    from dmt.cli.transfer import preset_defaults

    assert b.options["inversion_steps"] == preset_defaults("fast")["inversion_steps"]


def test_relative_video_is_relative_to_the_job_file(videos):
    path = write_jobs(videos / "rel.jsonl", [{"video": "right.mp4", "target_prompt": "x"}])
    (job,) = load_jobs(path)
    assert job.video == str((videos / "right.mp4").resolve())


def test_every_bad_line_is_reported_at_once(videos, tmp_path):
    good = {"video": str(videos / "left.mp4"), "target_prompt": "a cat", **SMALL}
    lines = [
        json.dumps({**good, "name": "ok"}),                              # 1 fine
        json.dumps({**good, "colour": "red", "name": "x1"}),             # 2 unknown field
        json.dumps({"target_prompt": "a cat", "name": "x2"}),             # 3 no video
        json.dumps({**good, "video": "nowhere.mp4", "name": "x3"}),      # 4 video does not exist
        "{not json",                                                     # 5
        json.dumps({**good, "seed": "seven", "width": 60, "name": "x4"}),  # 6 two bad values
        json.dumps({**good, "name": "ok"}),                              # 7 same output as line 1
        json.dumps({**good, "out": "x.mp4", "name": "x5"}),              # 8 batch-wide option
        json.dumps([1, 2]),                                              # 9 not an object
        json.dumps({**good, "name": "../escape"}),                       # 10 bad name
        json.dumps({**good, "loss": "l3", "target_prompt": " ", "name": "x6"}),  # 11
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        load_jobs(path)
    msg = str(err.value)
    assert "nothing was run" in msg
    expected = {
        2: "unknown field 'colour'", 3: "field 'video' is missing", 4: "video 'nowhere.mp4' does not exist",
        5: "not valid JSON", 6: "'seed' must be an integer", 7: "also written by line 1",
        8: "field 'out' is not a job key", 9: "must be a JSON object", 10: "not a usable file name",
        11: "'loss' is 'l3': it must be one of cosine, l2",
    }
    for line, text in expected.items():
        assert any(f"line {line}:" in m and text in m for m in msg.splitlines()), (line, text, msg)
    assert "'width' is 60: it must be a multiple of 8 from 8 to 2048 (default 576)" in msg and "'target_prompt' is missing or empty" in msg
    assert "line 1:" not in msg
    # the unknown field's message lists the known ones
    known_line = next(m for m in msg.splitlines() if "colour" in m)
    for key in known_keys():
        assert key in known_line


def test_default_names_that_collide_are_refused(videos, tmp_path):
    job = {"video": str(videos / "left.mp4"), "target_prompt": "a cat"}
    path = write_jobs(tmp_path / "dup.jsonl", [job, {**job, "guidance_scale": 7.5}])
    with pytest.raises(InputError, match="line 2: output name 'left-a-cat-s0' is also written by line 1"):
        load_jobs(path)


def test_cli_bad_input_exits_2_before_work(tiny_model_dir, videos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(tmp_path / "missing.jsonl"), "--model", tiny_model_dir, "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    bad = write_jobs(tmp_path / "bad.jsonl", [{"video": str(videos / "left.mp4"), "target_prompt": "x", "sped": 1}])
    assert main(["batch", str(bad), "--model", tiny_model_dir, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "line 1: unknown field 'sped'" in err and "known fields:" in err
    assert not out.exists()  # validation happens before the output folder is touched
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n# nothing\n")
    assert main(["batch", str(empty), "--model", tiny_model_dir, "--out", str(out)]) == 2
    assert "holds no jobs" in capsys.readouterr().err
    good = write_jobs(tmp_path / "good.jsonl", [{"video": str(videos / "left.mp4"), "target_prompt": "x", **SMALL}])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["batch", str(good), "--model", tiny_model_dir, "--out", str(blocker / "out")]) == 2
    assert "is not writable" in capsys.readouterr().err
    assert main(["batch", str(good), "--model", str(tmp_path / "no-model"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty-model").mkdir()
    assert main(["batch", str(good), "--model", str(tmp_path / "empty-model"), "--out", str(out)]) == 2
    assert "is incomplete; missing: unet/config.json" in capsys.readouterr().err


def test_job_keys_are_the_transfer_options():
    """Every `transfer` option is a job key or a documented batch-wide option, and every job key is
    a `transfer` option: both come from dmt.settings.TRANSFER, so a new option cannot be forgotten."""
    parser = build_parser()
    transfer = parser.transfer_parser  # type: ignore[attr-defined]
    options = {a.dest for a in transfer._actions if a.option_strings and a.dest != "help"}
    assert set(JOB_OPTIONS) == set(TRANSFER) | {"guidance"}  # the Wan guidance choice, --guidance
    assert set(JOB_OPTIONS) | set(NOT_JOB_OPTIONS) == options
    assert not set(JOB_OPTIONS) & set(NOT_JOB_OPTIONS)
    for action in transfer._actions:  # same defaults on the command line and in a job
        if action.dest == "context_length":  # not given: 24 on ZeroScope, no windows on Wan (resolved per model)
            assert action.default is None
        elif action.dest in TRANSFER:
            assert action.default == TRANSFER[action.dest].default, action.dest
        elif action.dest in JOB_OPTIONS:
            assert action.default == job_options()[action.dest].default, action.dest


def _numeric_bounds():
    for key, s in TRANSFER.items():
        if s.type in (int, float) and s.choices is None:
            low = s.min - (1 if s.type is int else 0.5) if s.min is not None else None
            high = s.max + (1 if s.type is int else 0.5) if s.max is not None else None
            for bad in (low, high):
                if bad is not None and all(bad != v for v, _ in s.special):
                    yield key, [bad, bad] if s.count == 2 else bad


@pytest.mark.parametrize("key, bad", list(_numeric_bounds()))
def test_every_range_applies_to_jobs_and_the_command_line(videos, tmp_path, capsys, key, bad):
    """A value just outside a setting's range is refused by the job file and by `transfer`, with
    the same words (only the name differs: 'key' vs --key)."""
    path = write_jobs(tmp_path / "j.jsonl", [{"video": str(videos / "left.mp4"), "target_prompt": "x", key: bad}])
    with pytest.raises(InputError) as err:
        load_jobs(path)
    setting = TRANSFER[key]
    value = bad[0] if isinstance(bad, list) else bad
    assert f"line 1: '{key}' is " in str(err.value) and f"it must be {setting.requirement()}" in str(err.value)
    cli_value = [str(v) for v in bad] if isinstance(bad, list) else [str(bad)]
    assert main(["transfer", "--target-prompt", "x", "--out", str(tmp_path / "o.mp4"), "--video", "none.mp4",
                 setting.flag, *cli_value]) == 2
    cli_err = capsys.readouterr().err
    assert f"{setting.flag} is " in cli_err and f"it must be {setting.requirement()}" in cli_err, cli_err
    assert value is not None


def test_negative_guidance_scale_is_refused_like_the_node(videos, tmp_path):
    """The bug of issue 17: a job with guidance_scale -3 used to run while the node refused cfg < 0."""
    path = write_jobs(tmp_path / "cfg.jsonl", [
        {"video": str(videos / "left.mp4"), "target_prompt": "x", "guidance_scale": -3},
        {"video": str(videos / "left.mp4"), "target_prompt": "y", "lr_range": [0.007, -1], "optimization_steps": 0,
         "num_frames": 0},
    ])
    with pytest.raises(InputError) as err:
        load_jobs(path)
    msg = str(err.value)
    assert "line 1: 'guidance_scale' is -3: it must be a number from 0 to 50 (default 10)." in msg
    assert "line 2: 'lr_range' is (0.007, -1): it must be 2 numbers, each from 0 to 1 (default (0.007, 0.004))." in msg
    assert "optimization_steps" not in msg and "num_frames" not in msg  # 0 = no guidance / all frames: valid
    assert msg.count("line ") == 2


def test_batch_help_lists_every_key_with_its_range():
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-m", "dmt", "batch", "--help"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    epilog = out[out.index("Job keys:"):]
    for key, setting in TRANSFER.items():
        line = next(l for l in epilog.splitlines() if l.split() and l.split()[0] == key)
        assert setting.requirement() in line, line
    assert "guidance_scale          a number from 0 to 50; default 10" in epilog
