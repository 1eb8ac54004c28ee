"""launch_per_modality_experiments.sh is the thin form of the per-modality projection study:
one `launch` of the study, the script's variables passed as the study's flags, and the
study's exit status as its own."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "launch_per_modality_experiments.sh"

FAKE_BAZEL = """#!/usr/bin/env bash
echo "$*" >> "{log}"
exit {status}
"""


def _run(tmp_path: Path, status: int = 0, **env: str) -> tuple[subprocess.CompletedProcess, list]:
    log = tmp_path / "calls.log"
    bazel = tmp_path / "bazel"
    bazel.write_text(FAKE_BAZEL.format(log=log, status=status))
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


def test_it_launches_the_study_once_with_the_study_s_own_defaults(tmp_path: Path) -> None:
    result, calls = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls == ["run //experiments/studies:per_modality_projection -- launch slurm"]


def test_the_variables_at_the_top_become_the_study_s_flags(tmp_path: Path) -> None:
    result, calls = _run(
        tmp_path,
        CLUSTER="local",
        NUM_GPUS="4",
        PRIORITY="high",
        WANDB_PROJECT="2026_01_02_x",
        CLUSTERS="[a,b]",
    )
    assert result.returncode == 0, result.stderr
    [call] = calls
    assert call.split()[:5] == [
        "run",
        "//experiments/studies:per_modality_projection",
        "--",
        "launch",
        "local",
    ]
    for flag in (
        "--launch.num_gpus=4",
        "--launch.priority=high",
        "--launch.clusters=[a,b]",
        "--project=2026_01_02_x",
    ):
        assert flag in call.split()


def test_a_refused_study_is_the_script_s_failure(tmp_path: Path) -> None:
    result, calls = _run(tmp_path, status=2)
    assert result.returncode == 2
    assert len(calls) == 1
