"""tools/bench/gpu_check.sh where there is no GPU (this machine), and the summary it writes.

The GPU path itself runs only on a GPU machine; here: the one-line answers (no GPU: exit 0; a
GPU that the chosen torch cannot use: exit 2), its plan (both training configs resolve), and
the summary cells read from what the steps write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.bench import gpu_check_summary

SCRIPT = Path(__file__).with_name("gpu_check.sh")


def _run(*args: str, path_prefix: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "BUILD_WORKSPACE_DIRECTORY"}
    env["TERRA_LAB_PYTHON"] = sys.executable
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def no_nvidia_smi(tmp_path) -> Path:
    """A PATH entry whose nvidia-smi lists no GPU (as on a machine without a driver)."""
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    return tmp_path


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(no_nvidia_smi) -> None:
    result = _run(path_prefix=no_nvidia_smi)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"no GPU: torch {torch_version()} in {sys.executable} sees no CUDA")
    assert result.stderr == ""


def test_a_gpu_the_pythons_torch_cannot_use_is_one_line_and_exit_2(tmp_path) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)'\n")
    fake.chmod(0o755)
    result = _run(path_prefix=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "nvidia-smi lists 1 GPU(s) but torch" in line
    assert "set TERRA_LAB_PYTHON to a Python with launcher/image/requirements-cuda.lock" in line


def test_an_unknown_argument_is_one_line_and_exit_2() -> None:
    result = _run("--steps", "5")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("gpu_check: unknown argument '--steps'; usage: gpu_check.sh")


def test_the_plan_lists_every_step_and_both_training_configs_resolve() -> None:
    result = _run("--plan")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert [line[:2] for line in lines[1:6]] == ["a.", "b.", "c.", "c.", "d."]
    assert "--train_module.parallelism=ddp" in lines[3]
    assert "--train_module.parallelism=fsdp" in lines[4]
    assert "--device cuda --dtype bf16" in lines[5]
    assert lines[-2:] == [
        "dry_run of the ddp training config: ok",
        "dry_run of the fsdp training config: ok",
    ]


def torch_version() -> str:
    import torch

    return torch.__version__


def _metrics(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_the_training_cell_gives_losses_and_medians_after_the_first_step(tmp_path) -> None:
    rows = [
        {"loss": 4.0, "step_time_s": 30.0, "tokens_per_s": 100.0},  # CUDA init, loader start
        {"loss": 3.5, "step_time_s": 1.0, "tokens_per_s": 9000.0},
        {"loss": 3.25, "step_time_s": 3.0, "tokens_per_s": 7000.0},
        {"loss": 3.0, "step_time_s": 2.0, "tokens_per_s": 8000.0},
    ]
    _metrics(tmp_path / "2026_12_03_base" / "base_gpu_check_ddp", rows)
    cell = gpu_check_summary.training(tmp_path, "base_gpu_check_ddp")
    assert cell == (
        "4 steps, loss 4.000 -> 3.000, 2.00 s/step and 8000 tokens/s (medians after step 1)"
    )


def test_a_run_that_logged_nothing_is_said_plainly(tmp_path) -> None:
    assert gpu_check_summary.training(tmp_path, "base_gpu_check_fsdp").startswith(
        "no metrics.jsonl of base_gpu_check_fsdp"
    )
    _metrics(tmp_path / "p" / "base_gpu_check_fsdp", [])
    assert "is empty: no step finished" in gpu_check_summary.training(
        tmp_path, "base_gpu_check_fsdp"
    )


def test_the_pytest_cell_is_the_closing_counts_line() -> None:
    log = (
        "....s..F\nFAILED models/x_test.py::test_y\n"
        "===== 1 failed, 6 passed, 1 skipped in 40.12s =====\n"
    )
    assert gpu_check_summary.pytest_outcome(log) == "1 failed, 6 passed, 1 skipped in 40.12s"
    assert gpu_check_summary.pytest_outcome("Killed\n") == "no pytest summary line in the log"
