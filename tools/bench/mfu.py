"""Model FLOPs utilisation (MFU): achieved model FLOP/s over the GPU's dense peak.

    MFU = model FLOPs per step / seconds per step / peak FLOP/s of the accelerator

The peak is the data sheet's DENSE figure for the compute dtype (bf16 tensor cores under
--dtype bf16, FP32 otherwise), from the one table of GPUs, models/train/accelerators.py: an
H100 SXM or H200 989.4 TFLOP/s bf16, an A100 312, an L40S 362.

Model FLOPs are what the model's maths needs for one step (a multiply-add is 2 FLOPs; no
recomputation, no element-wise work, no optimizer). For a transformer stack of `depth` blocks
of `width` with `params` parameters training on `tokens` tokens that each attend to `context`
tokens (PaLM, Chowdhery et al. 2022, appendix B):

    6 * params * tokens  +  12 * depth * width * tokens * context

(2 FLOPs per parameter and token forward, 4 backward; QK^T and AV are 2 * 2 * width * context
FLOPs per token and block forward, twice that backward). train_step does not apply the closed
form to LatentMIM: its encoder sees only the visible tokens of each sample, the predictor's
masked queries cross-attend to them, and the frozen target runs forward only, so a single
`tokens` would overstate the work 2-4x. It counts the same quantity exactly on the step that
ran (tools/bench/measure.count_flops: matmuls, convolutions and attention, forward and
backward), and mfu_test checks that counter against the closed form on a plain stack: it
equals it plus the QK^T that fused attention's backward recomputes (torch's counter counts
it; 2 * depth * width * tokens * context), so the MFU it gives is high by at most
2 * context / (72 * width + 12 * context): 3.6% at base width (768) with all 1248 tokens of
train_step's default instance as context (the encoder's context is only the visible ones).
"""

from __future__ import annotations

import torch

from models.train import accelerators


def transformer_training_flops(
    *, params: int, tokens: int, depth: int, width: int, context: int
) -> int:
    """6 * params * tokens + 12 * depth * width * tokens * context (module docstring)."""
    for name, value in (("params", params), ("tokens", tokens), ("depth", depth)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if width < 0 or context < 0:
        raise ValueError(f"width and context must be >= 0, got {width} and {context}")
    return 6 * params * tokens + 12 * depth * width * tokens * context


def mfu(model_flops: float, seconds: float, peak_flops: float) -> float:
    """Fraction of `peak_flops` (FLOP/s) that `model_flops` done in `seconds` achieved."""
    if seconds <= 0:
        raise ValueError(f"seconds per step must be > 0, got {seconds}")
    if peak_flops <= 0:
        raise ValueError(f"the peak must be > 0 FLOP/s, got {peak_flops}")
    return model_flops / seconds / peak_flops


def resolve_accelerator(
    device: torch.device, name: str | None
) -> tuple[accelerators.Accelerator | None, str]:
    """The accelerator whose peak MFU is quoted against, and how it was chosen.

    `name` (--accelerator) wins; otherwise a CUDA device is recognised by its device name.
    CPUs have no entry (their peak depends on the SKU, cores and clocks): None, with why.
    """
    if name:
        return accelerators.get(name), f"{name} (--accelerator)"
    if device.type != "cuda":
        return None, f"no MFU on {device.type}: the accelerator table lists GPUs only"
    found = accelerators.detect(device)
    if found is None:
        device_name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "?"
        known = ", ".join(accelerators.ACCELERATORS)
        return None, (
            f"no MFU: {device_name!r} is not in models/train/accelerators.py ({known}); "
            "pass --accelerator NAME to quote against one of them"
        )
    return found, f"{found.name} (detected)"
