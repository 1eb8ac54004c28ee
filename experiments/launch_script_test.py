"""launch_per_modality_experiments.sh launches the three variants under one shared dated
W&B project, reports progress and a summary, and stops at the first failure."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "launch_per_modality_experiments.sh"

FAKE_BAZEL = """#!/usr/bin/env bash
echo "$*" >> "{log}"
target="$2"
if [[ "$target" == "{fail}" ]]; then echo "launch refused" >&2; exit 2; fi
echo "launched ${{target#//experiments:}} run $5 on $6: job ${{#target}}"
"""


def _run(tmp_path: Path, fail: str = "", **env: str) -> tuple[subprocess.CompletedProcess, list]:
    log = tmp_path / "calls.log"
    bazel = tmp_path / "bazel"
    bazel.write_text(FAKE_BAZEL.format(log=log, fail=fail))
    bazel.chmod(0o755)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BAZEL": str(bazel),
        "BUILD_WORKSPACE_DIRECTORY": str(tmp_path),
        **env,
    }
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, check=False
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_all_three_variants_share_one_dated_project(tmp_path: Path) -> None:
    result, calls = _run(tmp_path, CLUSTER="slurm")
    assert result.returncode == 0, result.stderr
    project = f"{datetime.date.today():%Y_%m_%d}_per_modality_projection_experiments"
    variants = ["base_encoder_per_mod_proj", "base_decoder_per_mod_proj", "base_both_per_mod_proj"]
    assert [call.split()[1] for call in calls] == [f"//experiments:{v}" for v in variants]
    for call, variant in zip(calls, variants, strict=True):
        assert call.split()[2:6] == ["--", "launch", variant, "slurm"]
        assert "--launch.num_gpus=8" in call and "--launch.priority=normal" in call
        assert f"--trainer.callbacks.wandb.project={project}" in call
    assert "[3/3] base_both_per_mod_proj launched" in result.stdout
    assert "All 3 variants launched" in result.stdout and "job " in result.stdout


def test_the_variables_at_the_top_can_be_set_from_the_environment(tmp_path: Path) -> None:
    result, calls = _run(
        tmp_path, NUM_GPUS="4", PRIORITY="high", WANDB_PROJECT="2026_01_02_x", CLUSTERS="[a,b]"
    )
    assert result.returncode == 0, result.stderr
    assert all("--launch.num_gpus=4" in c and "--launch.priority=high" in c for c in calls)
    assert all("project=2026_01_02_x" in c and "--launch.clusters=[a,b]" in c for c in calls)


def test_the_first_failure_stops_the_group(tmp_path: Path) -> None:
    result, calls = _run(tmp_path, fail="//experiments:base_decoder_per_mod_proj")
    assert result.returncode != 0
    assert len(calls) == 2  # the third variant was never launched
    assert "FAILED while launching base_decoder_per_mod_proj" in result.stderr
    assert "All 3 variants launched" not in result.stdout
