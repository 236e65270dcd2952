"""write_video through PyAV: h264 mp4 at the given fps by default, other codecs on request, no
partial files, clear refusals; checked with PyAV's stream info (what ffprobe reports)."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest
import torch

import dmt
from dmt.io.video import available_codecs, choose_codec

from helpers import moving_square_clip


def probe(path) -> dict:
    """ffprobe-style facts of the first video stream, and the decoded frame count."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = sum(1 for _ in c.decode(video=0))
        return {"codec": s.codec_context.name, "rate": s.average_rate, "width": s.width, "height": s.height,
                "pix_fmt": s.codec_context.pix_fmt, "frames": frames, "format": c.format.name}


def test_default_is_h264_mp4_at_given_fps(tmp_path):
    clip = moving_square_clip(num_frames=7, size=64)
    out = dmt.write_video(tmp_path / "v.mp4", clip, fps=12)
    info = probe(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and "mp4" in info["format"]
    assert info["rate"] == 12 and (info["width"], info["height"], info["frames"]) == (64, 64, 7)
    back = dmt.read_video(out)
    assert back.fps == pytest.approx(12) and back.frames.shape == clip.shape
    assert (back.frames - clip).abs().mean() < 0.1  # lossy (random texture), but the same picture


@pytest.mark.parametrize("codec, suffix", [("mpeg4", ".mp4"), ("libvpx-vp9", ".webm"), ("h264", ".mkv")])
def test_other_codecs(tmp_path, codec, suffix):
    if codec not in available_codecs():
        pytest.skip(f"this PyAV has no {codec} encoder")
    out = dmt.write_video(tmp_path / f"v{suffix}", moving_square_clip(num_frames=4, size=32), fps=29.97, codec=codec)
    info = probe(out)
    assert info["codec"] == {"libvpx-vp9": "vp9"}.get(codec, codec)
    assert info["frames"] == 4
    assert abs(float(info["rate"]) - 29.97) < 1e-6 or info["rate"] == Fraction(2997, 100)


def test_refusals_leave_no_file(tmp_path):
    clip = moving_square_clip(num_frames=3, size=32)
    with pytest.raises(ValueError, match="Unknown codec 'x265'"):
        dmt.write_video(tmp_path / "a.mp4", clip, codec="x265")
    with pytest.raises(ValueError, match="does not go into '.webm'"):
        choose_codec(tmp_path / "a.webm", "mpeg4")
    with pytest.raises(ValueError, match="even width and height"):
        dmt.write_video(tmp_path / "odd.mp4", clip[:, :31, :31])
    with pytest.raises(ValueError, match="positive finite"):
        dmt.write_video(tmp_path / "nan.mp4", clip, fps=float("nan"))
    assert list(tmp_path.iterdir()) == []  # no partial file under any name


def test_nan_frames_are_refused_before_work(tiny_model):
    frames = moving_square_clip()
    frames[2, 5, 5, 0] = float("nan")
    with pytest.raises(dmt.InputError, match=r"NaN or infinite .* 1 of its 6 frames"):
        dmt.prepare_frames(frames, 64, 64)
    with pytest.raises(dmt.InputError, match="NaN or infinite"):
        dmt.encode_frames(tiny_model, frames)
    # frames outside the clip that is used do not matter
    assert dmt.prepare_frames(frames, 64, 64, num_frames=2, start=3).shape == (2, 64, 64, 3)
    frames[0, 0, 0, 1] = float("inf")
    with pytest.raises(dmt.InputError, match="2 of its 6 frames"):
        dmt.prepare_frames(frames, 64, 64, num_frames=None)


def test_frame_count_above_video_is_refused_with_counts(clip):
    with pytest.raises(dmt.InputError, match=r"Frame count 8 .* has 6 frames.*start 0 with stride 1 that leaves 6"):
        dmt.prepare_frames(clip, 64, 64, num_frames=8)
    with pytest.raises(dmt.InputError, match=r"stride 2 that leaves 3.*at most 3"):
        dmt.prepare_frames(clip, 64, 64, num_frames=4, stride=2)
    # the default (ZeroScope's native 24) takes what a shorter clip has, as before
    assert dmt.prepare_frames(clip, 64, 64).shape[0] == clip.shape[0]
    assert dmt.prepare_frames(clip, 64, 64, num_frames=6).shape[0] == 6
