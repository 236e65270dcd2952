"""Helpers for the motion-customization tests: tiny clips and a quick training run."""

from __future__ import annotations

import torch

import dmt
from dmt.customize import EncodedExample, TrainSettings, encode_examples, example_from_frames, train_motion

# 4 frames of 64x64 (latents 4x8x8): the smallest clip the tiny UNet takes, seconds per test.
FRAMES, SIZE = 4, 64


def blob_clip(num_frames: int = FRAMES, size: int = SIZE, dx: int = 8, x0: int = 4, seed: int = 0) -> torch.Tensor:
    """A bright 16x16 blob moving `dx` pixels per frame to the right over a dark textured background."""
    g = torch.Generator().manual_seed(seed)
    bg = torch.rand(size, size, 3, generator=g) * 0.2
    frames = []
    for i in range(num_frames):
        f = bg.clone()
        x = x0 + dx * i
        y = size // 2 - 8
        f[y : y + 16, max(x, 0) : max(x + 16, 0)] = torch.tensor([0.95, 0.9, 0.3])
        frames.append(f)
    return torch.stack(frames)


def encoded(model: dmt.ZeroScope, caption: str = "a sks blob", n: int = 2, token: str | None = "sks",
            **kw) -> list[EncodedExample]:
    examples = [example_from_frames(blob_clip(seed=i, **kw), caption, token, num_frames=kw.get("num_frames", FRAMES),
                                    height=SIZE, width=SIZE, source=f"clip{i}") for i in range(n)]
    return encode_examples(model, examples)


def quick_settings(**kw) -> TrainSettings:
    base = dict(rank=2, steps=3, checkpoint_every=0, validation_every=0)
    base.update(kw)
    return TrainSettings(**base)


def quick_train(model, examples, **kw):
    run = {k: kw.pop(k) for k in ("work_dir", "resume", "out_path", "regularization", "check_interrupt", "on_step",
                                  "snapshots")
           if k in kw}
    return train_motion(model, examples, "sks", quick_settings(**kw), **run)


def state_hash(model: dmt.ZeroScope) -> dict:
    """Bitwise snapshot of every tensor of the three networks plus flags and module classes."""
    out = {}
    for name, mod in (("unet", model.unet), ("vae", model.vae), ("text", model.text_encoder)):
        for k, v in mod.state_dict(keep_vars=True).items():
            out[f"{name}.{k}"] = (v.detach().clone(), v.requires_grad, v.grad is None)
        out[f"{name}.classes"] = [type(m).__name__ for m in mod.modules()]
        out[f"{name}.order.classes"] = list(mod.state_dict().keys())  # compared as a list: order too
    return out


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for k, v in before.items():
        if k.endswith(".classes"):
            assert v == after[k], k
        else:
            assert torch.equal(v[0], after[k][0]) and v[1:] == after[k][1:], k
