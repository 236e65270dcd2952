"""A v-prediction UNet (the toy-world model's) runs every stage through ε: the library converts its
output at the one UNet call, and customization regresses onto v. ε-models are untouched."""

from __future__ import annotations

import copy

import torch

from dmt.models.interface import model_ops
from dmt.models.unet import predict_noise, prediction_type


def _as_v_model(model):
    v = copy.copy(model)  # shares the weights; only the scheduler differs
    v.scheduler = copy.deepcopy(model.scheduler)
    v.scheduler.register_to_config(prediction_type="v_prediction")
    return v


def test_epsilon_model_output_is_the_unet_output(tiny_model):
    x = torch.randn(1, 4, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 77, tiny_model.unet.config.cross_attention_dim)
    assert prediction_type(tiny_model) == "epsilon"
    with torch.no_grad():
        raw = tiny_model.unet(x, 500, encoder_hidden_states=text, return_dict=False)[0]
        assert torch.equal(predict_noise(tiny_model, x, 500, text), raw)


def test_v_prediction_output_becomes_epsilon(tiny_model):
    vm = _as_v_model(tiny_model)
    x = torch.randn(1, 4, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 77, tiny_model.unet.config.cross_attention_dim)
    a = vm.scheduler.alphas_cumprod[700]
    with torch.no_grad():
        v = tiny_model.unet(x, 700, encoder_hidden_states=text, return_dict=False)[0]
        eps = predict_noise(vm, x, 700, text)
    assert prediction_type(vm) == "v_prediction"
    torch.testing.assert_close(eps, a.sqrt() * v + (1 - a).sqrt() * x)
    # and back: the x0 that ε implies is the x0 that v implies
    torch.testing.assert_close((x - (1 - a).sqrt() * eps) / a.sqrt(), a.sqrt() * x - (1 - a).sqrt() * v,
                               rtol=1e-4, atol=1e-4)


def test_customization_target_follows_the_prediction_type(tiny_model):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 4, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, 4, generator=g)
    times = torch.tensor([100, 900])
    ops = model_ops(tiny_model)
    xt, _, target = ops.noisy(tiny_model, x0, eps, times)
    assert torch.equal(target, eps)
    vm = _as_v_model(tiny_model)
    xt_v, _, target_v = ops.noisy(vm, x0, eps, times)
    a = vm.scheduler.alphas_cumprod[times].view(-1, 1, 1, 1, 1)
    assert torch.equal(xt_v, xt)
    torch.testing.assert_close(target_v, a.sqrt() * eps - (1 - a).sqrt() * x0)
