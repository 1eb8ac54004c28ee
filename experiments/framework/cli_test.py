"""The command line: strict overrides and names exit 2 saying what to type; dry_run shows
the config, parameter counts and a diff with base; the CLI surface is frozen."""

from __future__ import annotations

import dataclasses
import importlib
import io

import pytest

from experiments.framework import cli, resolution
from experiments.framework.experiment_config import Builders

BASE = importlib.import_module("experiments.base")


def _run(*argv: str, module=BASE, experiment: str = "base") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli.run(Builders.from_module(module), list(argv), experiment, out, err)
    return status, out.getvalue(), err.getvalue()


def test_unknown_override_exits_2_naming_the_closest_keys() -> None:
    status, _, err = _run("dry_run", "base_a", "local", "--trainer.max_stesp=20")
    assert status == 2
    assert "unknown override --trainer.max_stesp" in err
    assert "Did you mean: --trainer.max_steps=300" in err


def test_unknown_field_in_a_known_section_suggests_its_fields() -> None:
    status, _, err = _run("dry_run", "base_a", "local", "--launch.gpus=8")
    assert status == 2 and "--launch.num_gpus=1" in err


def test_wrong_type_exits_2_with_an_example() -> None:
    status, _, err = _run("dry_run", "base_a", "local", "--launch.num_gpus=eight")
    assert status == 2
    assert "expects an integer" in err and "Type for example: --launch.num_gpus=1" in err


def test_a_value_the_component_rejects_exits_2_with_its_reason() -> None:
    status, _, err = _run("dry_run", "base_a", "local", "--launch.priority=asap")
    assert status == 2 and "priority must be one of" in err


@pytest.mark.parametrize("project", ["per_modality", "2025-11-21_study", "2025_13_01_study"])
def test_malformed_wandb_project_exits_2_with_a_valid_example(project: str) -> None:
    status, _, err = _run(
        "dry_run", "base_a", "local", f"--trainer.callbacks.wandb.project={project}"
    )
    assert status == 2
    assert "Type for example: --trainer.callbacks.wandb.project=" in err
    suggestion = err.rsplit("=", 1)[1].strip()
    status, _, _ = _run(
        "dry_run", "base_a", "local", f"--trainer.callbacks.wandb.project={suggestion}"
    )
    assert status == 0


def test_a_builder_that_sets_a_malformed_wandb_project_exits_2() -> None:
    base = Builders.from_module(BASE)

    def trainer_with_project(common):
        trainer = base.trainer_config_builder(common)
        wandb = dataclasses.replace(trainer.callbacks["wandb"], project="per_modality")
        return dataclasses.replace(trainer, callbacks={**trainer.callbacks, "wandb": wandb})

    builders = dataclasses.replace(base, trainer_config_builder=trainer_with_project)
    out, err = io.StringIO(), io.StringIO()
    assert cli.run(builders, ["dry_run", "base_a", "local"], "base", out, err) == 2
    assert "'per_modality'" in err.getvalue() and "wandb" in err.getvalue()


def test_model_overrides_are_refused_pointing_to_the_scaffold() -> None:
    status, _, err = _run("dry_run", "base_a", "local", "--model.encoder.depth=2")
    assert status == 2 and "//tools:new_experiment" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["dryrun", "base_a", "local"], "Did you mean dry_run?"),
        (["train", "base_a"], "expected a subcommand, a run name and a cluster"),
        (["train", "--trainer.max_steps=2", "local"], "come before the overrides"),
        (["dry_run", "base_a", "moon"], "unknown cluster 'moon'"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], expected: str) -> None:
    status, _, err = _run(*argv)
    assert status == 2 and expected in err


def test_a_local_run_name_without_the_variant_is_only_a_warning() -> None:
    status, _, err = _run("dry_run", "my_run", "local")
    assert status == 0 and "warning: run name 'my_run'" in err


def test_launch_refuses_a_run_name_without_the_variant_before_launching() -> None:
    status, _, err = _run("launch", "my_run", "local")
    assert status == 2 and "does not contain the experiment name 'base'" in err


def test_both_batch_size_flags_set_the_loaders_global_batch() -> None:
    for flag in ("--train_module.global_batch_size=64", "--data_loader.global_batch_size=64"):
        invocation = resolution.resolve(
            Builders.from_module(BASE), ["dry_run", "base_a", "local", flag], "base"
        )
        assert invocation.config.data_loader.global_batch_size == 64
        assert [a.path for a in invocation.applied] == ["data_loader.global_batch_size"]
        assert "global_batch_size" not in invocation.config.as_dict()["train_module"]


def test_the_two_batch_size_flags_together_are_refused() -> None:
    with pytest.raises(cli.ov.OverrideError, match="global_batch_size"):
        resolution.resolve(
            Builders.from_module(BASE),
            [
                "dry_run",
                "base_a",
                "local",
                "--train_module.global_batch_size=64",
                "--data_loader.global_batch_size=32",
            ],
            "base",
        )


def test_the_seed_is_the_trainers_and_seed_is_its_alias() -> None:
    for flag in ("--trainer.seed=7", "--seed=7"):
        invocation = resolution.resolve(
            Builders.from_module(BASE), ["dry_run", "base_a", "local", flag], "base"
        )
        assert invocation.config.trainer.seed == 7 and invocation.config.seed == 7
        assert [a.path for a in invocation.applied] == ["trainer.seed"]
        assert "seed" not in invocation.config.as_dict()


def test_every_alias_targets_a_field_of_the_base_config() -> None:
    invocation = resolution.resolve(Builders.from_module(BASE), ["dry_run", "b", "local"], "base")
    keys = set(cli.ov.leaf_keys(invocation.config))
    for alias in resolution.ALIASES.values():
        target = alias.target.rstrip(".")
        assert any(k == target or k.startswith(target + ".") for k in keys), target


def test_the_cli_surface_is_frozen() -> None:
    # Changing these changes every launch script and doc: do it on purpose, here.
    assert cli.SUBCOMMANDS == ("dry_run", "train", "launch", "evaluate", "visualize")
    assert set(resolution.ALIASES) == {
        "trainer.max_steps",
        "trainer.callbacks.wandb.project",
        "trainer.wandb.",
        "trainer.checkpointer.",
        "trainer.progress.",
        "seed",
        "train_module.global_batch_size",
    }
    assert set(resolution.REFUSED) == {"model", "experiment", "run_name", "cluster"}
    assert set(resolution.OPTIONS) == {"model_size", "estimate.gpu"}


def test_dry_run_of_the_encoder_variant_shows_its_projection_and_a_model_only_diff() -> None:
    module = importlib.import_module("experiments.base_encoder_per_mod_proj")
    status, out, _ = _run(
        "dry_run", "my_run", "local", module=module, experiment="base_encoder_per_mod_proj"
    )
    assert status == 0
    config_part = out.split("== resolved config")[1].split("== parameters")[0]
    model_part = config_part.split("\nmodel:")[1].split("\ndataset:")[0]
    assert "EncoderWithPerModalityProjectionConfig" in model_part
    diff_part = out.split("== diff against base")[1].split("== run folder")[0]
    entries = [line.strip() for line in diff_part.splitlines() if line.startswith("  ")]
    assert entries and all(entry.startswith("model.") for entry in entries)
    assert "sections: model" in diff_part


def test_help_prints_the_subcommands() -> None:
    status, out, _ = _run("--help")
    assert status == 0 and "visualize" in out


ENCODER_VARIANT = importlib.import_module("experiments.base_encoder_per_mod_proj")


def _section(out: str, title: str) -> str:
    """One `== title ===` section of dry_run's output."""
    return out.split(f"== {title} ")[1].split("\n== ")[0]


def test_model_size_runs_a_variant_at_nano_width_with_only_its_change_against_base() -> None:
    status, out, err = _run(
        "dry_run",
        "base_encoder_per_mod_proj_nano",
        "local",
        "--model_size=nano",
        module=ENCODER_VARIANT,
        experiment="base_encoder_per_mod_proj",
    )
    assert status == 0, err
    assert "--model_size=nano (sets model): 'encoder 768 wide" in _section(out, "overrides")
    invocation = resolution.resolve(
        Builders.from_module(ENCODER_VARIANT),
        ["dry_run", "base_encoder_per_mod_proj_nano", "local", "--model_size=nano"],
        "base_encoder_per_mod_proj",
    )
    encoder, decoder = invocation.config.model.encoder, invocation.config.model.decoder
    assert type(encoder).__name__ == "EncoderWithPerModalityProjectionConfig"
    assert (encoder.width, encoder.depth, encoder.num_heads) == (128, 4, 8)
    assert (decoder.width, decoder.encoder_width, decoder.output_width) == (128, 128, 128)
    assert "width: 128" in _section(out, "resolved config")
    # base is resized too, so the variant differs from it in its CHANGES alone.
    diff_part = _section(out, "diff against base")
    entries = [line.strip() for line in diff_part.splitlines() if line.startswith("  ")]
    assert "1 field(s) differ from base" in diff_part
    assert len(entries) == 1 and entries[0].startswith("model.encoder._class_:"), entries


def test_model_size_applies_before_the_other_overrides_and_is_recorded_as_typed() -> None:
    argv = ["dry_run", "base_a", "local", "--trainer.max_steps=3", "--model_size=tiny"]
    invocation = resolution.resolve(Builders.from_module(BASE), argv, "base")
    assert [a.override.text for a in invocation.applied] == [
        "--model_size=tiny",  # first, so what overrides.txt re-creates is the same config
        "--trainer.max_steps=3",
    ]
    assert invocation.config.model.encoder.width == 192
    assert invocation.config.trainer.max_duration.value == 3


@pytest.mark.parametrize("size", ["nanoo", "huge", ""])
def test_an_unknown_model_size_exits_2_naming_the_valid_sizes(size: str) -> None:
    status, _, err = _run("dry_run", "base_a", "local", f"--model_size={size}")
    assert status == 2
    (line,) = err.strip().splitlines()
    assert f"--model_size={size}: unknown model size {size!r}" in line
    assert "Valid sizes (models/latent_mim/sizes.py): nano, tiny," in line
    assert ("Did you mean --model_size=nano?" in line) == (size == "nanoo")


def test_a_study_s_wandb_group_job_type_and_hypothesis_reach_the_config_as_typed() -> None:
    hypothesis = (
        "Per-modality projections help: S2, S1 and Landsat (10 m, 20 m) gain >= 0.5 kNN "
        "points [3 seeds]; p=0.05 (Holm)"
    )
    argv = [
        "dry_run",
        "base_a",
        "local",
        "--trainer.callbacks.wandb.group=per_modality_projection",
        "--trainer.callbacks.wandb.job_type=base_encoder_per_mod_proj",
        f"--trainer.callbacks.wandb.notes={hypothesis}",
    ]
    wandb = resolution.resolve(Builders.from_module(BASE), argv, "base").config.trainer.callbacks[
        "wandb"
    ]
    assert (wandb.group, wandb.job_type, wandb.notes) == (
        "per_modality_projection",
        "base_encoder_per_mod_proj",
        hypothesis,
    )
