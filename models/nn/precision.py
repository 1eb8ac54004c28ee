"""Inference precision: fp32, or bf16 autocast with the GEMM weights cast once, not per call.

    with inference_precision(encoder, "bf16", device):
        output = encoder(view, patch_size)

bf16 is autocast: Linear and Conv run in bf16 (about twice the fp32 matmul rate on CPUs with
AVX512-BF16, far more on GPUs), while LayerNorm, softmax sums and our fp32 reductions keep
fp32. Autocast casts each Linear/Conv weight to bf16 at every call; for a base encoder that
is 86M parameters per forward (72 ms of a 1.6 s CPU forward at 2 x 1152 tokens). Inside
`inference_precision` those weights are held in bf16 for the whole block instead, which is
bit-identical (autocast would round them the same way) and is undone on exit: the module
leaves with its own fp32 parameters, values unchanged.

Inference only: gradients are off inside the block, because a weight's dtype changes under
the autograd graph.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
GEMM_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""The modules autocast runs in bf16 (their weights and biases are cast per call)."""


@functools.cache
def cpu_has_bf16_kernels() -> bool:
    """This CPU runs oneDNN's bf16 kernels (AVX512-BW/VL/DQ or AVX-NE-CONVERT): the bf16 GEMM
    at about twice the fp32 rate that the bf16 CPU paths (blocked attention, fused linear)
    are built on. Elsewhere bf16 matmuls are emulated and those paths stand aside."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


@contextlib.contextmanager
def gemm_weights_as(module: nn.Module, dtype: torch.dtype) -> Iterator[nn.Module]:
    """Hold the weights and biases of `module`'s Linear/Conv layers in `dtype` inside the block.

    The parameters stay the same objects; their data is swapped for a `dtype` copy and put back
    on exit (also on error).
    """
    originals: list[tuple[nn.Parameter, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer in module.modules():
                if not isinstance(layer, GEMM_MODULES):
                    continue
                for param in (layer.weight, layer.bias):
                    if param is not None and param.dtype != dtype:
                        originals.append((param, param.data))
                        param.data = param.data.to(dtype)
        yield module
    finally:
        for param, data in originals:
            param.data = data


@contextlib.contextmanager
def inference_precision(
    module: nn.Module, precision: str, device: torch.device | str
) -> Iterator[nn.Module]:
    """No gradients, and for "bf16" autocast on `device` with bf16 GEMM weights (docstring)."""
    check_precision(precision)
    device_type = torch.device(device).type
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        if precision == "bf16":
            stack.enter_context(torch.autocast(device_type, dtype=torch.bfloat16))
            stack.enter_context(gemm_weights_as(module, torch.bfloat16))
        yield module
