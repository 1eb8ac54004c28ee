"""Inference precision: bf16 autocast with GEMM weights cast once, restored on exit."""

import pytest
import torch
from torch import nn

from models.nn import precision


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 2, stride=2),
        nn.Flatten(),
        nn.LayerNorm(32),
        nn.Linear(32, 16),
        nn.GELU(),
        nn.Linear(16, 4, bias=False),
    ).eval()


def test_bf16_weights_inside_the_block_and_the_same_fp32_parameters_after():
    model = _model()
    before = {name: (param, param.detach().clone()) for name, param in model.named_parameters()}
    with precision.gemm_weights_as(model, torch.bfloat16):
        assert model[0].weight.dtype == model[3].weight.dtype == torch.bfloat16
        assert model[3].bias.dtype == torch.bfloat16
        assert model[2].weight.dtype == torch.float32  # LayerNorm is not a GEMM
    for name, param in model.named_parameters():
        original, values = before[name]
        assert param is original and param.dtype == torch.float32
        assert torch.equal(param, values)


def test_weights_are_restored_when_the_block_raises():
    model = _model()
    with pytest.raises(RuntimeError, match="boom"):
        with precision.gemm_weights_as(model, torch.bfloat16):
            raise RuntimeError("boom")
    assert all(param.dtype == torch.float32 for param in model.parameters())


def test_bf16_inference_is_bit_identical_to_plain_autocast():
    model = _model()
    x = torch.randn(5, 3, 4, 4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(x)
    with precision.inference_precision(model, "bf16", "cpu"):
        out = model(x)
        assert not torch.is_grad_enabled()
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected)


def test_fp32_inference_is_the_plain_forward_without_gradients():
    model = _model()
    x = torch.randn(5, 3, 4, 4)
    with precision.inference_precision(model, "fp32", torch.device("cpu")):
        out = model(x)
    assert out.dtype == torch.float32 and not out.requires_grad
    assert torch.equal(out, model(x).detach())


def test_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"one of \('fp32', 'bf16'\), got 'fp16'"):
        with precision.inference_precision(_model(), "fp16", "cpu"):
            pass
