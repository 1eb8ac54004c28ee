"""Each experiment's config test: it builds, dry_run works, one tiny CPU step trains, and it
differs from base only where its CHANGES say (Bazel runs one experiment per target through
$TERRA_EXPERIMENT; plain pytest runs them all)."""

from __future__ import annotations

import importlib
import io
import os
from pathlib import Path

import pytest
import torch

from experiments.framework import clusters, hygiene, testing, training
from experiments.framework.cli import run
from experiments.framework.experiment_config import Builders, ExperimentConfig
from models.config import serialization

EXPERIMENTS_DIR = Path(__file__).resolve().parent
NOT_EXPERIMENTS = {"__init__", "script"}


def discover() -> list[str]:
    """Experiment names: $TERRA_EXPERIMENT (Bazel), else every experiments/*.py file."""
    if os.environ.get("TERRA_EXPERIMENT"):
        return [os.environ["TERRA_EXPERIMENT"]]
    return sorted(
        path.stem
        for path in EXPERIMENTS_DIR.glob("*.py")
        if path.stem not in NOT_EXPERIMENTS and not path.stem.endswith("_test")
    )


@pytest.fixture(params=discover())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.write_tiny_dataset(tmp_path_factory.mktemp("data"))


def _module(name: str):
    return importlib.import_module(f"experiments.{name}")


def test_config_builds_and_round_trips_through_yaml_and_json(name: str) -> None:
    config, _ = testing.experiment_config(_module(name))
    assert config.experiment == name
    assert ExperimentConfig.from_dict(
        serialization.from_yaml(serialization.to_yaml(config)).as_dict()
    )
    assert serialization.from_yaml(serialization.to_yaml(config)) == config
    assert serialization.from_json(serialization.to_json(config)) == config


def test_dry_run_exits_0_and_diffs_only_declared_sections(name: str) -> None:
    module = _module(name)
    out, err = io.StringIO(), io.StringIO()
    status = run(
        Builders.from_module(module), ["dry_run", f"{name}_check", "local"], name, out, err
    )
    assert status == 0, err.getvalue()
    text = out.getvalue()
    assert "== resolved config" in text and "== parameters" in text and "trainable" in text
    baseline = hygiene.experiment_name(module.baseline) if name != "base" else "base"
    diff_part = text.split(f"== diff against {baseline} ")[1].split("== run folder")[0]
    if name != "base":
        declared = hygiene.declared_changes(module)
        entries = [line for line in diff_part.splitlines() if line.startswith("  ")]
        # The summary names the same baseline as the heading (v1_2_base, not always base).
        assert f"differ from {baseline};" in diff_part or f"identical to {baseline}" in diff_part
        for line in entries:
            section = line.strip().split(".", 1)[0].split(":", 1)[0]
            assert section in declared, f"{name}: {line.strip()} is outside CHANGES {declared}"


def test_one_tiny_training_step_on_cpu_updates_the_model(
    name: str, tiny_data: Path, tmp_path: Path
) -> None:
    config, _ = testing.experiment_config(_module(name))
    tiny = testing.tiny_config(config, tiny_data, tmp_path / "runs")
    torch.manual_seed(0)
    model = tiny.model.build()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    loader = tiny.data_loader.build_loader(tiny.dataset.build())
    module = tiny.train_module.build(
        model, max_steps=1, global_batch_size=tiny.data_loader.global_batch_size
    )
    metrics = module.train_batch(next(iter(loader)), step=1)
    assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["loss"] > 0
    after = model.state_dict()
    for key in before:
        if key.startswith(("encoder.blocks", "decoder.blocks")) and key.endswith("weight"):
            assert not torch.equal(before[key], after[key]), f"{key} did not train"
        assert torch.isfinite(after[key].float()).all(), f"{key} is not finite"


def test_training_writes_a_run_folder_whose_config_rebuilds_the_run(
    name: str, tiny_data: Path, tmp_path: Path
) -> None:
    config, _ = testing.experiment_config(_module(name))
    tiny = testing.tiny_config(config, tiny_data, tmp_path / "runs")
    result = training.train(tiny)
    assert result.steps == 1 and result.checkpoints
    saved = serialization.load(result.run_dir / "config.yaml")
    assert saved == tiny


@pytest.mark.parametrize("cluster", ["local", "gpu_cluster"])
def test_differs_from_its_baseline_only_in_declared_sections(
    name: str, cluster: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On `local` and on a GPU cluster: builders may depend on the cluster (nano's CPU step).
    The baseline is the experiment the variant imports as `baseline` (base, v1_2_base, ...)."""
    if name == "base":
        pytest.skip("base is the root baseline")
    roots = {"gpu_cluster": clusters.launcher_api.ClusterRoots(tmp_path / "runs", tmp_path)}
    monkeypatch.setattr(clusters.launcher_api, "cluster_roots", roots.get)
    monkeypatch.delenv("TERRA_RUN_ROOT", raising=False)
    module = _module(name)
    baseline = hygiene.baseline_of(module)
    assert baseline is _module(hygiene.experiment_name(baseline)), "the baseline is an experiment"
    hygiene.assert_hygienic(module, baseline, clusters=(cluster,))


def test_variant_file_is_a_small_derivation(name: str) -> None:
    if name == "base":
        pytest.skip("base defines the baseline model; script.py holds the shared builders")
    assert hygiene.check_variant_source(EXPERIMENTS_DIR / f"{name}.py") == []
