"""The trainable set is exactly the paper's; training never changes the shared model."""

from __future__ import annotations

import torch

from dmt.customize import lora_target_names, trainable, trainable_modules, trainable_parameter_names
from dmt.models.memory import hook_counts

from cz_helpers import assert_same, encoded, quick_train, state_hash


def paper_set_for_tiny_unet() -> set[str]:
    """Written out from the tiny model's structure (ZeroScope's block layout, layers_per_block 2):
    temporal convs, temporal attentions + transformer_in, spatial attn2.to_k / to_v."""
    names = {"transformer_in"}
    kv = ("attn2.to_k", "attn2.to_v")
    for b in (0, 1, 2):  # CrossAttnDownBlock3D: 2 resnets, 2 spatial + 2 temporal transformers
        for i in (0, 1):
            names |= {f"down_blocks.{b}.temp_convs.{i}", f"down_blocks.{b}.temp_attentions.{i}"}
            names |= {f"down_blocks.{b}.attentions.{i}.transformer_blocks.0.{p}" for p in kv}
    names |= {"down_blocks.3.temp_convs.0", "down_blocks.3.temp_convs.1"}  # DownBlock3D
    names |= {"mid_block.temp_convs.0", "mid_block.temp_convs.1", "mid_block.temp_attentions.0"}
    names |= {f"mid_block.attentions.0.transformer_blocks.0.{p}" for p in kv}
    names |= {f"up_blocks.0.temp_convs.{i}" for i in (0, 1, 2)}  # UpBlock3D
    for b in (1, 2, 3):  # CrossAttnUpBlock3D: 3 layers
        for i in (0, 1, 2):
            names |= {f"up_blocks.{b}.temp_convs.{i}", f"up_blocks.{b}.temp_attentions.{i}"}
            names |= {f"up_blocks.{b}.attentions.{i}.transformer_blocks.0.{p}" for p in kv}
    return names


def test_trainable_roots_are_the_papers_set(tiny_model):
    roots = trainable_modules(tiny_model.unet)
    assert set(roots) == paper_set_for_tiny_unet()
    assert len(roots) == len(set(roots)) == 39 + 2 * (6 + 1 + 9)
    # No spatial q / out projection, no self-attention of the spatial transformer, no resnet.
    params = trainable_parameter_names(tiny_model.unet)
    assert not any(".resnets." in p or "conv_in" in p or "conv_out" in p for p in params)
    assert not any(".attentions." in p and ("to_q" in p or "to_out" in p or "attn1" in p) for p in params)


def test_full_mode_trains_exactly_those_parameters(tiny_model):
    expected = set(trainable_parameter_names(tiny_model.unet))
    with trainable(tiny_model.unet, "full") as ts:
        assert set(ts.params) == expected
        grads = {n for n, p in tiny_model.unet.named_parameters() if p.requires_grad}
        assert not any(n in expected for n in grads)  # originals frozen: only the fp32 deltas train
        assert all(p.dtype == torch.float32 and p.requires_grad for p in ts.params.values())


def test_lora_mode_adapts_every_linear_and_conv_of_the_set(tiny_model):
    targets = lora_target_names(tiny_model.unet)
    roots = paper_set_for_tiny_unet()
    assert all(any(t == r or t.startswith(r + ".") for r in roots) for t in targets)
    assert {t for t in targets if "attn2.to_" in t and ".attentions." in t} == {
        r for r in roots if ".attentions." in r}
    with trainable(tiny_model.unet, "lora", rank=2) as ts:
        assert set(ts.params) == {f"{t}.lora_{ab}" for t in targets for ab in "AB"}
        trainable_now = [n for n, p in tiny_model.unet.named_parameters() if p.requires_grad]
        assert trainable_now and all(".lora_" in n for n in trainable_now)
        assert all(ts.params[f"{t}.lora_A"].shape[0] == 2 for t in targets)


def test_training_leaves_the_shared_model_bitwise_unchanged(tiny_model):
    before = state_hash(tiny_model)
    hooks = hook_counts([tiny_model.unet, tiny_model.vae, tiny_model.text_encoder])
    examples = encoded(tiny_model)
    for mode in ("lora", "full"):
        result = quick_train(tiny_model, examples, mode=mode, steps=2, gradient_checkpointing=(mode == "full"))
        assert any(float(v.abs().max()) > 0 for v in result.motion.tensors.values())  # it did train
        assert_same(before, state_hash(tiny_model))
        assert hook_counts([tiny_model.unet, tiny_model.vae, tiny_model.text_encoder]) == hooks
        assert "peft_config" not in tiny_model.unet.__dict__


def test_exception_inside_trainable_restores(tiny_model):
    before = state_hash(tiny_model)
    for mode in ("lora", "full"):
        try:
            with trainable(tiny_model.unet, mode, rank=2) as ts:
                next(iter(ts.params.values())).data.add_(1.0)
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
        assert_same(before, state_hash(tiny_model))
