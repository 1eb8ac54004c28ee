"""accelerators: the table's lookups by short name and by CUDA device name."""

from __future__ import annotations

import pytest
import torch

from models.train import accelerators


@pytest.mark.parametrize(
    ("device_name", "expected"),
    [
        # The strings torch.cuda.get_device_name returns on each part.
        ("NVIDIA H100 80GB HBM3", "H100-SXM"),
        ("NVIDIA H100 PCIe", "H100-PCIe"),
        ("NVIDIA H100 NVL", "H100-NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100-PCIE-40GB", "A100-40GB"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA A10G", "A10"),
    ],
)
def test_device_names_map_to_their_entry(device_name: str, expected: str) -> None:
    accelerator = accelerators.from_device_name(device_name)
    assert accelerator is not None and accelerator.name == expected


def test_unknown_device_name_is_none() -> None:
    assert accelerators.from_device_name("NVIDIA GeForce GTX 1080") is None


def test_get_accepts_aliases_in_any_case() -> None:
    assert accelerators.get("h100").name == "H100-SXM"
    assert accelerators.get("H200").memory_bytes == 141 * 10**9
    assert accelerators.get("a100-40gb").peak_bf16_flops == 312e12


def test_get_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown accelerator 'TPUv5'.*H100-SXM"):
        accelerators.get("TPUv5")


def test_peak_flops_picks_tensor_core_peak_for_half_precision_only() -> None:
    h100 = accelerators.get("H100")
    assert h100.peak_flops(torch.bfloat16) == 989.4e12
    assert h100.peak_flops(torch.float16) == 989.4e12
    assert h100.peak_flops(torch.float32) == 67e12


def test_every_entry_quotes_dense_bf16_above_fp32() -> None:
    for accelerator in accelerators.ACCELERATORS.values():
        assert accelerator.peak_bf16_flops > accelerator.peak_fp32_flops > 0
        assert accelerator.memory_bytes >= 24 * 10**9


def test_detect_is_none_for_a_cpu_device() -> None:
    assert accelerators.detect("cpu") is None
    if not torch.cuda.is_available():
        assert accelerators.detect() is None
