"""dry_run's memory and time estimate: the section, the GPU flag, and the run's own setup."""

from __future__ import annotations

import importlib
import io

from experiments.framework import cli, footprint_report, resolution
from experiments.framework.experiment_config import Builders

BASE = importlib.import_module("experiments.base")


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli.run(Builders.from_module(BASE), list(argv), "base", out, err)
    return status, out.getvalue(), err.getvalue()


def _section(out: str) -> str:
    return out.split("== memory and time per GPU (estimate)")[1].split("\n== ")[0]


def _config(*overrides: str):
    argv = ["dry_run", "my_run", "local", *overrides]
    return resolution.resolve(Builders.from_module(BASE), argv, "base").config


def test_dry_run_prints_memory_per_parallelism_a_verdict_and_the_step_time() -> None:
    status, out, _ = _run("dry_run", "my_run", "local")
    assert status == 0
    section = _section(out)
    assert "H100-SXM (80 GB)" in section
    rows = {line.split()[0]: line for line in section.splitlines() if line.startswith("  ")}
    assert "ddp (run)" in rows["ddp"] and "fsdp" in rows
    assert "verdict: fits with DDP on H100-SXM" in section
    assert "step: " in section and "at 40% MFU of 989 TFLOP/s" in section


def test_estimate_gpu_picks_the_accelerator_and_is_refused_outside_dry_run() -> None:
    status, out, _ = _run("dry_run", "my_run", "local", "--estimate.gpu=a100-40gb")
    assert status == 0 and "A100-40GB (40 GB)" in _section(out)
    status, _, err = _run("dry_run", "my_run", "local", "--estimate.gpu=TPUv5")
    assert status == 2 and "unknown accelerator 'TPUv5'" in err
    status, _, err = _run("train", "my_run", "local", "--estimate.gpu=H200")
    assert status == 2 and "--estimate.gpu belongs to dry_run, not train" in err


def test_a_multi_node_run_is_compared_with_fsdp_and_hsdp() -> None:
    config = _config("--launch.num_nodes=2", "--launch.num_gpus=8")
    lines = footprint_report.estimate_lines(config, "H100")
    labels = [line.split()[0] for line in lines if line.startswith("  ") and "." in line]
    assert {"ddp", "fsdp", "hsdp"} <= set(labels)
    assert "2 node(s) x 8 GPU(s)" in lines[0]


def test_a_microbatch_too_large_for_the_gpu_gets_a_smaller_one_suggested() -> None:
    # Base at microbatch 128 on a 24 GB L4: ~100 GB of activations alone.
    config = _config("--train_module.microbatch_size=128", "--data_loader.global_batch_size=512")
    verdict = next(
        line for line in footprint_report.estimate_lines(config, "L4") if "verdict" in line
    )
    assert "does not fit at microbatch 128: try --train_module.microbatch_size=" in verdict
