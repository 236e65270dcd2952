"""dmt.transfer.attention_flow: the attention motion flow of synthetic queries/keys with a known shift,
its pairs, chunking and memory, and the query/key hooks on the tiny random Wan."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import dmt
from dmt.models.wan_ops import encode_prompt
from dmt.transfer.attention_flow import (amf_loss, attention_flow, capture_qk, forward_qk, frame_pairs,
                                         patch_grid)


def _moving_features(grid, shift, heads=2):
    """q = k for a scene translating by `shift` = (dx, dy) patches per latent frame: the patch at
    (x, y) of frame t carries the one-hot feature of world point (x - t·dx, y - t·dy), each head a copy."""
    frames, h, w = grid
    dx, dy = shift
    margin = (frames - 1) * max(abs(dx), abs(dy))
    width, height = w + 2 * margin, h + 2 * margin
    feats = torch.zeros(frames, h, w, width * height)
    for t in range(frames):
        for y in range(h):
            for x in range(w):
                feats[t, y, x, (y - t * dy + margin) * width + (x - t * dx + margin)] = 1.0
    q = feats.reshape(frames * h * w, -1).repeat(1, heads)
    return q, q.clone()


def _reference_flow(q, k, grid, heads, temperature, pairs):
    """A plain per-pair, per-head loop (the definition), to check the batched code against."""
    frames, h, w = grid
    m = h * w
    d = q.shape[-1] // heads
    pos = torch.tensor([[x, y] for y in range(h) for x in range(w)], dtype=torch.float32)
    out = []
    for f, g in pairs:
        maps = []
        for i in range(heads):
            qf = q[f * m:(f + 1) * m, i * d:(i + 1) * d]
            kg = k[g * m:(g + 1) * m, i * d:(i + 1) * d]
            maps.append(torch.softmax(qf @ kg.T / (temperature * math.sqrt(d)), dim=-1))
        out.append(torch.stack(maps).mean(0) @ pos - pos)
    return torch.stack(out)


# --- the flow on synthetic queries and keys -----------------------------------------------------

@pytest.mark.parametrize("shift", [(1, 0), (0, 1), (-1, 1), (2, -1)])
def test_a_known_translation_is_recovered_inside_the_valid_area(shift):
    grid = (3, 5, 6)
    q, k = _moving_features(grid, shift)
    flow, pairs = attention_flow(q, k, grid, heads=2, temperature=1e-3)
    assert flow.shape == (6, 30, 2) and pairs == frame_pairs(3)
    checked = 0
    for p, (f, g) in enumerate(pairs):
        ex, ey = (g - f) * shift[0], (g - f) * shift[1]
        for y in range(5):
            for x in range(6):
                if 0 <= x + ex < 6 and 0 <= y + ey < 5:  # the patch is still in frame g
                    torch.testing.assert_close(flow[p, y * 6 + x], torch.tensor([float(ex), float(ey)]),
                                               rtol=0, atol=1e-4)
                    checked += 1
    assert checked > 60


def test_identical_frames_have_no_flow():
    grid, heads = (4, 3, 5), 2
    one = torch.randn(15, heads, 8, generator=torch.Generator().manual_seed(0))
    one = one / one.norm(dim=-1, keepdim=True)  # one norm per head: each patch is its own best match
    q = one.reshape(15, heads * 8).repeat(4, 1)
    flow, _ = attention_flow(q, q.clone(), grid, heads, temperature=1e-3)
    assert flow.abs().max() < 1e-4


def test_matches_the_per_pair_per_head_definition_with_gradients():
    grid, heads = (3, 2, 3), 2
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(18, 8, generator=gen, requires_grad=True)
    k = torch.randn(18, 8, generator=gen, requires_grad=True)
    flow, pairs = attention_flow(q.unsqueeze(0), k.unsqueeze(0), grid, heads, temperature=0.5, chunk=4)
    expected = _reference_flow(q, k, grid, heads, 0.5, pairs)
    torch.testing.assert_close(flow, expected, rtol=1e-5, atol=1e-6)
    target = torch.randn(flow.shape, generator=gen)
    got = torch.autograd.grad(amf_loss(flow, target), (q, k))
    want = torch.autograd.grad(amf_loss(expected, target), (q, k))
    for a, b in zip(got, want):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_window_limits_the_pairs():
    assert frame_pairs(4, 1) == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)]
    assert len(frame_pairs(4, 2)) == 10 and len(frame_pairs(4)) == 12 == len(frame_pairs(4, 3))
    q = torch.randn(4 * 6, 8)
    flow, pairs = attention_flow(q, q, (4, 2, 3), heads=2, window=1)
    assert pairs == frame_pairs(4, 1) and flow.shape == (6, 6, 2)
    full, all_pairs = attention_flow(q, q, (4, 2, 3), heads=2)
    torch.testing.assert_close(flow, full[[all_pairs.index(p) for p in pairs]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("chunk", [2, 5, 100])
def test_chunked_equals_pair_by_pair(chunk):
    gen = torch.Generator().manual_seed(2)
    q, k = torch.randn(5 * 12, 16, generator=gen), torch.randn(5 * 12, 16, generator=gen)
    one, _ = attention_flow(q, k, (5, 3, 4), heads=4, chunk=1)
    many, _ = attention_flow(q, k, (5, 3, 4), heads=4, chunk=chunk)
    torch.testing.assert_close(many, one, rtol=0, atol=1e-6)


class _LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any torch operation returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("window", [1, None])
@pytest.mark.parametrize("chunk", [1, 2])
def test_the_largest_intermediate_is_one_chunk_of_maps_whatever_the_frame_count(window, chunk):
    heads, m = 2, 30  # 5 x 6 patches: one pair's maps (heads · m² = 1800) outgrow the inputs
    sizes = []
    for frames in (2, 3, 6):
        q = torch.randn(frames * m, heads * 4)
        with _LargestTensor() as probe:
            flow, pairs = attention_flow(q, q, (frames, 5, 6), heads, window=window, chunk=chunk)
        sizes.append(probe.largest)
        assert probe.largest == max(min(chunk, len(pairs)) * heads * m * m, flow.numel())
    if window == 1:  # the flows grow with the frames but stay below one chunk of maps here
        assert sizes[1] == sizes[2] == chunk * heads * m * m


def test_with_gradients_no_attention_map_is_kept_for_backward():
    heads, m, frames = 2, 30, 4
    q = torch.randn(frames * m, heads * 4, requires_grad=True)
    kept = []

    def pack(t):
        kept.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        flow, _ = attention_flow(q, q, (frames, 5, 6), heads, chunk=3)
    assert max(kept) < heads * m * m  # maps are recomputed one chunk at a time in backward
    flow.sum().backward()
    assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("kwargs, words", [
    (dict(grid=(2, 2, 2)), "has 8 patches but there are 12 tokens"),
    (dict(heads=5), "do not divide the query width 8"),
    (dict(temperature=0.0), "positive number"),
    (dict(chunk=0), "chunk must be a whole number"),
    (dict(window=0), "window must be a whole number"),
    (dict(grid=(1, 3, 4)), "at least 2 latent frames"),
])
def test_bad_arguments_are_refused_with_what_to_pass(kwargs, words):
    args = dict(grid=(2, 2, 3), heads=2) | kwargs
    with pytest.raises(dmt.InputError, match=words):
        attention_flow(torch.zeros(12, 8), torch.zeros(12, 8), **args)


def test_batches_and_mismatched_flows_are_refused():
    with pytest.raises(dmt.InputError, match="one video"):
        attention_flow(torch.zeros(2, 12, 8), torch.zeros(2, 12, 8), (2, 2, 3), 2)
    with pytest.raises(dmt.InputError, match="same frame pairs"):
        amf_loss(torch.zeros(2, 6, 2), torch.zeros(6, 6, 2))
    assert amf_loss(torch.ones(2, 6, 2), torch.zeros(2, 6, 2)).item() == 1.0


# --- the hooks on the tiny random Wan -----------------------------------------------------------

def _hook_counts(wan: dmt.Wan) -> list[int]:
    return [len(b.attn1.norm_q._forward_hooks) + len(b.attn1.norm_k._forward_hooks) for b in wan.transformer.blocks]


def _inputs(wan: dmt.Wan, seed: int = 0):
    latent = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(seed))
    return latent, encode_prompt(wan, "a dog", max_sequence_length=16)


def test_capture_qk_gives_queries_and_keys_and_removes_its_hooks(wan):
    latent, text = _inputs(wan)
    with capture_qk(wan.transformer, 1) as qk:
        assert _hook_counts(wan) == [0, 2]
        with torch.no_grad():
            wan.transformer(latent, torch.tensor([500.0]), text, return_dict=False)
    assert qk["q"].shape == qk["k"].shape == (1, 3 * 2 * 3, 24)  # (B, F'·h'·w', heads · head_dim)
    assert patch_grid(latent.shape, wan.patch_size) == (3, 2, 3)
    assert _hook_counts(wan) == [0, 0]
    with pytest.raises(KeyError):
        with capture_qk(wan.transformer, 0):
            raise KeyError("boom")
    assert _hook_counts(wan) == [0, 0]


@pytest.mark.parametrize("bad", [2, -1, "0", True])
def test_capture_qk_names_the_valid_blocks(wan, bad):
    with pytest.raises(dmt.InputError, match="from 0 to 1"):
        with capture_qk(wan.transformer, bad):
            pass
    assert _hook_counts(wan) == [0, 0]


def test_tokens_are_frame_then_row_then_column(wan):
    latent, text = _inputs(wan)
    moved = latent.clone()
    moved[:, :, 1, 2:4, 4:6] += 1.0  # the patch of latent frame 1, patch row 1, patch column 2
    with torch.no_grad():
        q0, _ = forward_qk(wan, latent, 500.0, text, 0)
        q1, _ = forward_qk(wan, moved, 500.0, text, 0)
    changed = (q0 - q1).abs().sum(-1)[0].nonzero().flatten().tolist()
    assert changed == [1 * 6 + 1 * 3 + 2]  # block 0's queries are per token


def test_forward_qk_stops_after_the_keys(wan):
    latent, text = _inputs(wan)
    later = []
    handle = wan.transformer.blocks[1].register_forward_hook(lambda *a: later.append(1))
    try:
        with torch.no_grad():
            q, k = forward_qk(wan, latent, 500.0, text, 0)
    finally:
        handle.remove()
    assert later == [] and q.shape == k.shape == (1, 18, 24) and _hook_counts(wan) == [0, 0]
    with capture_qk(wan.transformer, 0) as full, torch.no_grad():
        wan.transformer(latent, torch.tensor([500.0]), text, return_dict=False)
    assert torch.equal(full["q"], q) and torch.equal(full["k"], k)


def test_amf_loss_is_differentiable_through_the_transformer(wan):
    latent, text = _inputs(wan, 0)
    reference, _ = _inputs(wan, 1)
    grid = patch_grid(latent.shape, wan.patch_size)
    heads = wan.transformer.config.num_attention_heads
    with torch.no_grad():
        ref_flow, _ = attention_flow(*forward_qk(wan, reference, 500.0, text, 1), grid, heads, temperature=0.1)
    x = latent.clone().requires_grad_(True)
    flow, _ = attention_flow(*forward_qk(wan, x, 500.0, text, 1), grid, heads, temperature=0.1)
    loss = amf_loss(flow, ref_flow)
    (grad,) = torch.autograd.grad(loss, x)  # not .backward(): the shared model's weights get no .grad
    assert loss.item() > 0 and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_forward_qk_under_gradient_checkpointing_gives_the_same_gradient(wan):
    latent, text = _inputs(wan, 2)
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            wan.transformer.enable_gradient_checkpointing()
        try:
            x = latent.clone().requires_grad_(True)
            flow, _ = attention_flow(*forward_qk(wan, x, 500.0, text, 1), (3, 2, 3), heads=2)
            grads.append(torch.autograd.grad(flow.square().mean(), x)[0])
        finally:
            wan.transformer.disable_gradient_checkpointing()
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)
