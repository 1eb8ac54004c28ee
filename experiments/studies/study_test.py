"""The declaration test of one study (TERRA_STUDY=<name>, set by the study() macro).

It proves what `launch` would otherwise find out late: the study loads, its BUILD target
names exactly the experiments it imports (so the gate and the runfiles cover them), every run
resolves on every cluster it can go to, and no variant gets a hyperparameter its baseline
does not, outside the variant's CHANGES. It builds nothing and submits nothing.
"""

from __future__ import annotations

import importlib
import io
import os
from pathlib import Path

import pytest

from experiments.framework import study_cli
from experiments.framework.study import Study

NAME = os.environ.get("TERRA_STUDY", "per_modality_projection")
MAX_STUDY_LINES = 60


@pytest.fixture(scope="module")
def module():
    return importlib.import_module(f"experiments.studies.{NAME}")


@pytest.fixture(scope="module")
def study(module) -> Study:
    return module.STUDY


def test_the_study_is_named_for_its_file(study: Study) -> None:
    assert study.name == NAME


def test_the_bazel_target_names_exactly_the_imported_experiments(study: Study) -> None:
    declared = os.environ.get("TERRA_STUDY_EXPERIMENTS")
    if declared is None:
        pytest.skip("outside Bazel: the study() macro sets TERRA_STUDY_EXPERIMENTS")
    assert sorted(declared.split(",")) == sorted(study.experiment_names)


@pytest.mark.parametrize("cluster", ["local", "slurm"])
def test_the_dry_run_resolves_every_run_with_identical_hyperparameters(
    study: Study, cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERRA_RUN_ROOT", str(tmp_path))
    out, err = io.StringIO(), io.StringIO()
    status = study_cli.run(study, ["dry_run", cluster], out, err)
    assert status == 0, err.getvalue()
    text = out.getvalue()
    runs = len(study.experiments) * len(study.grid_points()) * len(study.seeds)
    assert f"{runs} runs" in text
    assert "hyperparameters: identical across the study" in text


def test_the_study_file_is_small(module) -> None:
    lines = Path(module.__file__).read_text().splitlines()
    assert len(lines) <= MAX_STUDY_LINES, (
        f"{module.__file__} has {len(lines)} lines; a study declares, it does not implement "
        f"(at most {MAX_STUDY_LINES})"
    )
