"""MFU arithmetic: the closed-form model FLOPs, the counter train_step uses against it, the
utilisation against the accelerator table's peaks, and how the accelerator is chosen."""

from __future__ import annotations

import pytest
import torch

from models.nn.attention import Block
from models.train import accelerators
from tools.bench import measure, mfu


def test_closed_form_is_six_params_tokens_plus_the_attention_term() -> None:
    # ViT-B-like: 85M parameters, 12 x 768, 512 tokens attending to 512 each.
    flops = mfu.transformer_training_flops(
        params=85_000_000, tokens=512, depth=12, width=768, context=512
    )
    assert flops == 6 * 85_000_000 * 512 + 12 * 12 * 768 * 512 * 512
    assert mfu.transformer_training_flops(params=10, tokens=0, depth=2, width=4, context=3) == 0


def test_counted_flops_of_a_block_stack_step_are_the_closed_form_plus_the_recomputed_scores():
    depth, width, heads, batch, tokens = 2, 64, 4, 3, 16
    stack = torch.nn.Sequential(*[Block(width, heads) for _ in range(depth)])
    # The input needs a gradient so the first projection's input gradient is counted too,
    # as it is for every block after the first.
    x = torch.randn(batch, tokens, width, requires_grad=True)

    def step() -> None:
        stack(x).sum().backward()

    # The closed form's params are the matmul weights (12 width^2 per block: qkv 3, proj 1,
    # MLP 4 + 4); biases and LayerNorms are element-wise work, which model FLOPs leave out.
    weights = sum(m.weight.numel() for m in stack.modules() if isinstance(m, torch.nn.Linear))
    assert weights == 12 * width**2 * depth
    expected = mfu.transformer_training_flops(
        params=weights, tokens=batch * tokens, depth=depth, width=width, context=tokens
    )
    # torch's counter also counts the QK^T that fused attention's backward recomputes (one
    # more width x context matmul per token and block; 2 FLOPs per multiply-add).
    recomputed_scores = 2 * depth * width * (batch * tokens) * tokens
    assert measure.count_flops(step) == expected + recomputed_scores


def test_mfu_is_model_flops_per_second_over_the_dense_peak() -> None:
    h100 = accelerators.get("H100")
    # 989.4 TFLOP/s dense bf16: 494.7 TFLOP in one second is half of it.
    assert mfu.mfu(494.7e12, 1.0, h100.peak_flops(torch.bfloat16)) == pytest.approx(0.5)
    a100 = accelerators.get("A100")
    assert mfu.mfu(312e12 * 0.4 * 2.5, 2.5, a100.peak_flops(torch.bfloat16)) == pytest.approx(0.4)
    # fp32 steps are quoted against the FP32 peak (67 TFLOP/s on an H100 SXM).
    assert mfu.mfu(67e12, 4.0, h100.peak_flops(torch.float32)) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("seconds", "peak", "message"),
    [(0.0, 1e12, "seconds per step must be > 0"), (1.0, 0.0, "the peak must be > 0")],
)
def test_mfu_refuses_a_zero_time_or_peak(seconds, peak, message) -> None:
    with pytest.raises(ValueError, match=message):
        mfu.mfu(1e12, seconds, peak)


def test_the_accelerator_is_named_or_detected_and_cpus_have_none() -> None:
    named, how = mfu.resolve_accelerator(torch.device("cpu"), "h200")
    assert named is accelerators.ACCELERATORS["H200"] and "--accelerator" in how
    none, why = mfu.resolve_accelerator(torch.device("cpu"), None)
    assert none is None and why.startswith("no MFU on cpu")
    with pytest.raises(ValueError, match="unknown accelerator 'TPUv5'"):
        mfu.resolve_accelerator(torch.device("cpu"), "TPUv5")
