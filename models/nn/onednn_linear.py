"""Linear, optionally followed by exact GELU, as one oneDNN kernel: bf16 inference on CPU.

Under bf16 autocast a Linear is three passes over its output: the bias broadcast into it, the
GEMM, and for the MLP's first layer a separate GELU. For a base encoder at 2 x 1152 tokens the
bias copies cost 84 ms + 27 ms + 20 ms (MLP hidden, qkv, the rest) and the GELU 49 ms of a
1.6 s forward. oneDNN's matmul takes the bias and the GELU as epilogue post-ops instead (the
kernel torch.compile's CPU backend emits for the same pattern, `mkldnn._linear_pointwise`):
measured in one process, interleaved, 8 repeats: 1.655 s -> 1.520 s per forward with the MLP
fused, and another 2.7% with qkv and the output projection too. GELU is the exact (erf) form,
as nn.GELU(); checked against it where erf and tanh differ by 44-81% (onednn_linear_test).

Applies only where the result is what autocast gives up to bf16 rounding: CPU, the layer's
weight already bf16 (inside models/nn/precision.py's `inference_precision("bf16")`), no
gradient needed, and a PyTorch with oneDNN. Anywhere else `linear` is the module's own forward.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.nn import precision

ACTIVATIONS = ("none", "gelu")


@functools.cache
def available() -> bool:
    """This PyTorch has oneDNN's fused linear op and this CPU its bf16 kernels (without
    them the op raises instead of running)."""
    if not precision.cpu_has_bf16_kernels():
        return False
    try:
        torch.ops.mkldnn._linear_pointwise  # noqa: B018 - a lookup that raises when absent
    except (AttributeError, RuntimeError):
        return False
    return True


def applies(x: Tensor, layer: nn.Linear) -> bool:
    """Whether `linear` runs the fused oneDNN kernel for this input (module docstring)."""
    if x.device.type != "cpu" or layer.weight.dtype != torch.bfloat16:
        return False
    if layer.bias is not None and layer.bias.dtype != torch.bfloat16:
        return False
    if x.dtype != torch.bfloat16 and not torch.is_autocast_enabled("cpu"):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad):
        return False
    return available()


def linear(x: Tensor, layer: nn.Linear, activation: str = "none") -> Tensor:
    """`activation(layer(x))`: fused in one oneDNN kernel when `applies`, else eager."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if not applies(x, layer):
        out = layer(x)
        return F.gelu(out) if activation == "gelu" else out
    rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)  # autocast's cast of the input
    # "none" as the algorithm of "gelu" selects the exact erf form (tanh would be "tanh").
    algorithm = "none" if activation == "gelu" else ""
    out = torch.ops.mkldnn._linear_pointwise(
        rows, layer.weight, layer.bias, activation, [], algorithm
    )
    return out.reshape(*x.shape[:-1], out.shape[-1])
