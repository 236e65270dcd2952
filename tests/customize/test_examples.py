"""Example clips: folders with captions, in-memory frames, every bad input, the encode cache."""

from __future__ import annotations

import pytest
import torch

from dmt.customize import encode_examples, example_from_frames, load_examples, strip_token
from dmt.customize.regularization import load_regularization, prior_prompts
from dmt.errors import InputError
from dmt.io.video import write_video

from cz_helpers import blob_clip


def make_folder(root, captions: dict[str, str | None], frames: int = 6, as_frames_dir: tuple[str, ...] = ()):
    root.mkdir(parents=True, exist_ok=True)
    for name, cap in captions.items():
        clip = blob_clip(num_frames=frames, size=64)
        if name in as_frames_dir:
            write_video(root / name, clip)
        else:
            write_video(root / f"{name}.mp4", clip)
        if cap is not None:
            (root / f"{name}.txt").write_text(cap)
    return root


def test_folder_with_captions_videos_and_frame_folders(tmp_path):
    folder = make_folder(tmp_path / "ex", {"a": "a sks blob", "b": "the sks move", "c": "sks, in a field"},
                         as_frames_dir=("c",))
    ex = load_examples(folder, num_frames=4, height=32, width=48)
    assert [e.caption for e in ex] == ["a sks blob", "the sks move", "sks, in a field"]
    assert all(e.frames.shape == (4, 32, 48, 3) for e in ex)
    assert ex[0].source.endswith("a.mp4")


def test_one_caption_for_all_and_custom_token(tmp_path):
    folder = make_folder(tmp_path / "ex", {"a": None, "b": None})
    ex = load_examples(folder, caption="a person doing the zwx dance", token="zwx", num_frames=4, height=64, width=64)
    assert len(ex) == 2 and all("zwx" in e.caption for e in ex)
    with pytest.raises(InputError, match="No caption for example clip .*a.mp4"):
        load_examples(folder, num_frames=4, height=64, width=64)


def test_in_memory_frames_are_cropped_and_resized():
    wide = torch.rand(5, 40, 80, 3)
    ex = example_from_frames(wide, "a sks blob", num_frames=4, height=64, width=64)
    assert ex.frames.shape == (4, 64, 64, 3) and 0 <= float(ex.frames.min()) and float(ex.frames.max()) <= 1


def test_no_examples(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="No example clips in"):
        load_examples(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        load_examples(tmp_path / "missing")


def test_unreadable_clip_is_named(tmp_path):
    folder = make_folder(tmp_path / "ex", {"good": "a sks blob"})
    (folder / "broken.mp4").write_bytes(b"this is not a video")
    (folder / "broken.txt").write_text("a sks blob")
    with pytest.raises(InputError, match=r"Cannot read example clip '.*broken\.mp4'"):
        load_examples(folder, num_frames=4, height=64, width=64)


def test_token_missing_from_a_caption(tmp_path):
    folder = make_folder(tmp_path / "ex", {"a": "a sks blob", "b": "a blob skss moving"})
    with pytest.raises(InputError, match=r"b\.mp4' does not contain the motion token 'sks'"):
        load_examples(folder, num_frames=4, height=64, width=64)
    with pytest.raises(InputError, match="one word"):
        load_examples(folder, token="two words", num_frames=4, height=64, width=64)


def test_clip_shorter_than_training_frames_says_how_many(tmp_path):
    folder = make_folder(tmp_path / "ex", {"short": "a sks blob"}, frames=5)
    with pytest.raises(InputError, match=r"short\.mp4' has 5 frame\(s\), but training uses 16"):
        load_examples(folder)


@pytest.mark.parametrize("h, w", [(60, 64), (64, 100), (0, 64)])
def test_size_not_multiple_of_8(tmp_path, h, w):
    folder = make_folder(tmp_path / "ex", {"a": "a sks blob"})
    with pytest.raises(InputError, match="multiples of 8"):
        load_examples(folder, num_frames=4, height=h, width=w)


def test_strip_token_and_prior_prompts():
    assert strip_token("a person doing the sks dance", "sks") == "a person doing the dance"
    assert strip_token("sks: a skss", "sks") == ": a skss"
    assert prior_prompts(["a sks blob", "the sks dance"], "sks", 3) == ["a blob", "the dance", "a blob"]
    with pytest.raises(InputError):
        prior_prompts(["sks"], "sks", 2)


def test_regularization_needs_no_token(tmp_path):
    folder = make_folder(tmp_path / "reg", {"r": "a blob"})
    assert load_regularization(folder, num_frames=4, height=64, width=64)[0].caption == "a blob"


def test_encode_cache_is_reused_and_keyed_by_content(tmp_path, tiny_model, monkeypatch):
    from dmt.customize import encode as enc_mod

    ex = [example_from_frames(blob_clip(), "a sks blob", num_frames=4, height=64, width=64)]
    first = encode_examples(tiny_model, ex, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    def fail(*a, **k):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(enc_mod.model_ops(tiny_model).__class__, "encode_clip", fail)
    again = encode_examples(tiny_model, ex, cache_dir=tmp_path)
    assert torch.equal(first[0].latents, again[0].latents) and torch.equal(first[0].text, again[0].text)
    monkeypatch.undo()
    other = [example_from_frames(blob_clip(), "another sks blob", num_frames=4, height=64, width=64)]
    encode_examples(tiny_model, other, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert first[0].latents.shape == (1, 4, 4, 8, 8) and first[0].text.shape == (1, 77, 32)
