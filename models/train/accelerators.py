"""Named accelerators: peak throughput and memory, for step-time estimates and MFU.

One table, `ACCELERATORS`, keyed by a short name (`H100-SXM`, `A100-80GB`, ...). Peak FLOP/s
are the data sheets' DENSE numbers (NVIDIA prints bf16 "with sparsity", twice the dense
figure, as the headline; MFU is always quoted against dense). `peak_fp32_flops` is the
non-tensor-core FP32 peak (what a float32 matmul gets without TF32). `memory_bytes` is the
data sheet's capacity in decimal gigabytes (80 GB = 80e9 bytes): a little below what the
device reports (nvidia-smi shows 81559 MiB = 85.5e9 bytes on an H100 80GB), so a fit against
it leaves room for the CUDA context (~0.5 GiB) rather than promising more than is there.

`detect(device)` maps `torch.cuda.get_device_name` to an entry; `get(name)` looks one up by
the short name or an alias (`H100` is the SXM part, the one 8-GPU nodes carry).
"""

from __future__ import annotations

import dataclasses
import re

import torch


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """One accelerator model.

    Attributes:
        name: short name used on command lines and in clusters.yaml (`H100-SXM`).
        peak_bf16_flops: dense bf16 tensor-core peak, FLOP/s.
        peak_fp32_flops: FP32 (non-tensor-core) peak, FLOP/s.
        memory_bytes: device memory, data-sheet decimal GB x 1e9.
        device_name_pattern: regex searched in `torch.cuda.get_device_name()`.
    """

    name: str
    peak_bf16_flops: float
    peak_fp32_flops: float
    memory_bytes: int
    device_name_pattern: str

    def peak_flops(self, dtype: torch.dtype) -> float:
        """Dense peak for matmuls computed in `dtype` (bf16 and fp16 share the tensor-core
        peak on every part listed; anything else gets the FP32 peak)."""
        if dtype in (torch.bfloat16, torch.float16):
            return self.peak_bf16_flops
        return self.peak_fp32_flops


_GB = 10**9

# Order matters for detect(): the first pattern that matches wins, so the more specific
# names (H100 PCIe/NVL, A100 80GB) come before the bare family name.
_TABLE: tuple[Accelerator, ...] = (
    # NVIDIA H100 Tensor Core GPU data sheet (2023), PCIe column: BF16 1,513 TFLOPS with
    # sparsity -> 756.5 dense; FP32 51.2 TFLOPS; 80 GB HBM2e. Reported as "NVIDIA H100 PCIe".
    Accelerator("H100-PCIe", 756.5e12, 51.2e12, 80 * _GB, r"H100.*PCIe"),
    # Same data sheet, H100 NVL column: BF16 1,671 TFLOPS sparse -> 835.5 dense; FP32 60
    # TFLOPS; 94 GB HBM3. Reported as "NVIDIA H100 NVL".
    Accelerator("H100-NVL", 835.5e12, 60e12, 94 * _GB, r"H100.*NVL"),
    # Same data sheet, SXM column: BF16 1,979 TFLOPS sparse -> 989.4 dense; FP32 67 TFLOPS;
    # 80 GB HBM3. Reported as "NVIDIA H100 80GB HBM3".
    Accelerator("H100-SXM", 989.4e12, 67e12, 80 * _GB, r"H100"),
    # NVIDIA H200 Tensor Core GPU data sheet (2024), SXM column: same compute as H100 SXM
    # (BF16 1,979 sparse -> 989.4 dense, FP32 67 TFLOPS); 141 GB HBM3e. "NVIDIA H200".
    Accelerator("H200", 989.4e12, 67e12, 141 * _GB, r"H200"),
    # NVIDIA A100 Tensor Core GPU data sheet (2021): BF16 312 TFLOPS dense (624 sparse), FP32
    # 19.5 TFLOPS, for both memory sizes and both form factors. Reported as
    # "NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "NVIDIA A100-SXM4-40GB",
    # "NVIDIA A100-PCIE-40GB".
    Accelerator("A100-80GB", 312e12, 19.5e12, 80 * _GB, r"A100.*80GB"),
    Accelerator("A100-40GB", 312e12, 19.5e12, 40 * _GB, r"A100"),
    # NVIDIA L40S data sheet (2023): BF16 362.05 TFLOPS dense (733 with sparsity), FP32
    # 91.6 TFLOPS, 48 GB GDDR6. "NVIDIA L40S".
    Accelerator("L40S", 362.05e12, 91.6e12, 48 * _GB, r"L40S"),
    # NVIDIA L4 data sheet (2023): BF16 242 TFLOPS sparse -> 121 dense, FP32 30.3 TFLOPS,
    # 24 GB GDDR6. "NVIDIA L4" (the pattern must not match "L40S").
    Accelerator("L4", 121e12, 30.3e12, 24 * _GB, r"\bL4\b"),
    # NVIDIA A10 data sheet (2021): BF16 125 TFLOPS dense (250 sparse), FP32 31.2 TFLOPS,
    # 24 GB GDDR6. "NVIDIA A10" and AWS's "NVIDIA A10G" (same die, same memory; the A10G's
    # clocks give slightly less, so its estimate is a little optimistic).
    Accelerator("A10", 125e12, 31.2e12, 24 * _GB, r"\bA10G?\b"),
)

ACCELERATORS: dict[str, Accelerator] = {accelerator.name: accelerator for accelerator in _TABLE}
"""Every known accelerator by its short name."""

ALIASES: dict[str, str] = {
    # A bare "H100" is the SXM part: the 8-GPU HGX nodes the base recipe (512 samples/step on
    # 8 H100s) was sized for.
    "H100": "H100-SXM",
    "H100-80GB": "H100-SXM",
    "H200-SXM": "H200",
    "A100": "A100-80GB",
    "A10G": "A10",
}


def get(name: str) -> Accelerator:
    """The accelerator called `name` (a short name or alias, any case), or a ValueError
    listing the valid names."""
    by_lower = {key.lower(): value for key, value in ACCELERATORS.items()}
    by_lower.update({alias.lower(): ACCELERATORS[target] for alias, target in ALIASES.items()})
    try:
        return by_lower[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown accelerator {name!r}; known: {sorted([*ACCELERATORS, *ALIASES])}"
        ) from None


def from_device_name(device_name: str) -> Accelerator | None:
    """The entry whose pattern matches a CUDA device name, or None for an unknown part."""
    for accelerator in _TABLE:
        if re.search(accelerator.device_name_pattern, device_name):
            return accelerator
    return None


def detect(device: torch.device | int | str | None = None) -> Accelerator | None:
    """The accelerator behind a CUDA `device` (default: the current one), or None when CUDA
    is absent, the device is not a CUDA device, or the part is not in the table."""
    if device is not None and torch.device(device).type != "cuda":
        return None
    if not torch.cuda.is_available():
        return None
    return from_device_name(torch.cuda.get_device_name(device))
