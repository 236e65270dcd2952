"""VAE encode/decode in frame chunks: progress per chunk, a cancel point per chunk, and the same
result whatever the callbacks (and, within float tolerance, whatever the chunk size)."""

from __future__ import annotations

import pytest
import torch

import dmt
from dmt.models.latents import num_chunks


def test_callbacks_do_not_change_results(tiny_model, clip):
    steps = []
    x0 = dmt.encode_frames(tiny_model, clip)
    x0_cb = dmt.encode_frames(tiny_model, clip, on_step=lambda *a: steps.append(a[:3]), check_interrupt=lambda: False)
    assert torch.equal(x0, x0_cb)
    assert steps == [("encode", k, 6) for k in range(1, 7)]
    steps.clear()
    frames = dmt.decode_latents(tiny_model, x0)
    frames_cb = dmt.decode_latents(tiny_model, x0, slice_size=2, on_step=lambda *a: steps.append(a[:3]))
    assert steps == [("decode", k, 3) for k in (1, 2, 3)]
    assert frames.shape == (6, 64, 64, 3)
    # chunked (1 and 2 frames per VAE call) equals unchunked (all frames in one call)
    whole = dmt.decode_latents(tiny_model, x0, slice_size=6)
    assert torch.allclose(frames, whole, atol=1e-5) and torch.allclose(frames_cb, whole, atol=1e-5)
    assert torch.allclose(dmt.encode_frames(tiny_model, clip, slice_size=6), x0, atol=1e-5)


@pytest.mark.parametrize("stop_after", [0, 1, 4])
def test_cancel_stops_within_one_chunk(tiny_model, clip, stop_after):
    x0 = dmt.encode_frames(tiny_model, clip)
    decoded = []
    calls = {"n": 0}

    def check():
        calls["n"] += 1
        return len(decoded) >= stop_after

    with pytest.raises(dmt.Interrupted):
        dmt.decode_latents(tiny_model, x0, on_step=lambda *a: decoded.append(a[1]), check_interrupt=check)
    assert len(decoded) == stop_after  # no chunk ran after the cancel
    assert calls["n"] == stop_after + 1


def test_chunk_counts_and_bad_chunk_size(tiny_model, clip):
    assert [num_chunks(24, s) for s in (1, 5, 24, 30)] == [24, 5, 1, 1]
    with pytest.raises(dmt.InputError, match="chunk"):
        dmt.decode_latents(tiny_model, torch.zeros(1, 4, 2, 8, 8), slice_size=0)
