"""Job-file validation: every problem of every line at once, before anything runs."""

from __future__ import annotations

import json

import pytest

from dmt.batch.jobs import default_name, known_keys, load_jobs
from dmt.cli import main
from dmt.errors import InputError

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
        11: "'loss' must be one of",
    }
    for line, text in expected.items():
        assert any(f"line {line}:" in m and text in m for m in msg.splitlines()), (line, text, msg)
    assert "'width' must be a positive multiple of 8" in msg and "'target_prompt' is missing or empty" in msg
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
