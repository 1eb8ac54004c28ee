"""Fused oneDNN linear (+ exact GELU): autocast's result for bf16 inference on CPU, else eager."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.nn import onednn_linear, precision
from models.nn.attention import Mlp

needs_onednn = pytest.mark.skipif(
    not onednn_linear.available(), reason="this PyTorch has no oneDNN fused linear"
)


def _layer(width=32, out=48, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(width, out)


@needs_onednn
@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_fused_linear_matches_autocast_to_bf16_rounding(activation):
    layer = _layer()
    x = torch.randn(3, 7, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = layer(x)
        expected = F.gelu(expected) if activation == "gelu" else expected
        with precision.gemm_weights_as(layer, torch.bfloat16):
            assert onednn_linear.applies(x, layer)
            out = onednn_linear.linear(x, layer, activation)
    assert out.dtype == torch.bfloat16 and out.shape == (3, 7, 48)
    torch.testing.assert_close(out.float(), expected.float(), atol=3e-2, rtol=2e-2)


@needs_onednn
def test_fused_gelu_is_the_exact_erf_form_not_tanh():
    # Identity weights make the GEMM exact; on [-4, -2.5] erf and tanh GELU differ by 44-81%.
    layer = nn.Linear(64, 64)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(64))
        layer.bias.zero_()
    x = torch.linspace(-4.0, -2.5, 64).repeat(4, 1).bfloat16().float()  # exact in bf16
    with precision.inference_precision(layer, "bf16", "cpu"):
        out = onednn_linear.linear(x, layer, "gelu").float()
    exact, tanh = F.gelu(x, approximate="none"), F.gelu(x, approximate="tanh")
    assert ((out - exact).abs() / exact.abs()).max() < 0.01
    assert ((out - tanh).abs() / tanh.abs()).max() > 0.4


def test_fp32_weights_gradients_or_other_devices_take_the_eager_path():
    layer = _layer()
    x = torch.randn(4, 32)
    assert not onednn_linear.applies(x, layer)  # fp32 weights
    with precision.gemm_weights_as(layer, torch.bfloat16):
        assert not onednn_linear.applies(x, layer)  # bf16 weights but neither autocast nor bf16 x
        assert not onednn_linear.applies(x.bfloat16(), layer)  # gradients wanted
        with torch.no_grad():
            assert onednn_linear.applies(x.bfloat16(), layer) == onednn_linear.available()
    out = onednn_linear.linear(x, layer, "gelu")
    assert torch.equal(out, F.gelu(layer(x)))
    out.sum().backward()
    assert layer.weight.grad is not None


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        onednn_linear.linear(torch.randn(2, 32), _layer(), "relu")


@needs_onednn
def test_mlp_in_bf16_inference_matches_fp32_and_autocast():
    torch.manual_seed(0)
    mlp = Mlp(width=32).eval()
    x = torch.randn(2, 50, 32)
    with torch.no_grad():
        fp32 = mlp(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = mlp(x)
    with precision.inference_precision(mlp, "bf16", "cpu"):
        fused = mlp(x)
    torch.testing.assert_close(fused.float(), autocast.float(), atol=3e-2, rtol=2e-2)
    cosine = F.cosine_similarity(fused.float().flatten(), fp32.flatten(), dim=0)
    assert cosine > 0.9995


def test_a_cpu_without_bf16_kernels_takes_the_eager_path(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16_kernels", lambda: False)
    onednn_linear.available.cache_clear()
    try:
        layer = _layer()
        x = torch.randn(4, 32)
        with precision.inference_precision(layer, "bf16", "cpu"):
            assert not onednn_linear.applies(x, layer)
            out = onednn_linear.linear(x, layer, "gelu")
            expected = F.gelu(layer(x))
        assert torch.equal(out, expected)
    finally:
        onednn_linear.available.cache_clear()
