"""The guide's naming rules: dated W&B projects, run names with the variant, user branches."""

from __future__ import annotations

import datetime

import pytest

from experiments.framework import naming


def test_a_dated_project_with_a_real_date_is_accepted() -> None:
    assert naming.validate_wandb_project("2025_11_21_per_modality_projection_experiments")


@pytest.mark.parametrize(
    "project",
    [
        "per_modality",
        "2025-11-21_per_modality",
        "2025_11_21",
        "2025_11_21_Per_Modality",
        "25_11_21_x",
    ],
)
def test_a_malformed_project_is_refused_with_a_valid_example(project: str) -> None:
    with pytest.raises(naming.NamingError) as error:
        naming.validate_wandb_project(project)
    message = str(error.value)
    assert "YYYY_MM_DD_description" in message
    example = message.rsplit("=", 1)[1]
    assert naming.validate_wandb_project(example) == example  # the suggestion itself is valid


def test_an_impossible_date_is_refused() -> None:
    with pytest.raises(naming.NamingError, match="not a real date"):
        naming.validate_wandb_project("2025_02_30_ablation_studies")


def test_dated_project_uses_the_given_day_and_a_clean_slug() -> None:
    day = datetime.date(2026, 11, 25)
    assert naming.dated_project("My Study: v2", day) == "2026_11_25_my_study_v2"


def test_run_name_must_contain_the_experiment_name() -> None:
    assert naming.validate_run_name("base_s2_only_lr3e-4", "base_s2_only")
    with pytest.raises(naming.NamingError, match="base_s2_only_my_run"):
        naming.validate_run_name("my_run", "base_s2_only")


def test_run_name_with_a_slash_is_refused() -> None:
    with pytest.raises(naming.NamingError, match="letters, digits"):
        naming.validate_run_name("base/x", "base")


@pytest.mark.parametrize("branch", ["henryh/per-modality-output-projection", "a/b/c", "HEAD", None])
def test_user_branches_need_no_warning(branch: str | None) -> None:
    assert naming.branch_name_warning(branch) is None


@pytest.mark.parametrize("branch", ["main", "per-modality", "/x"])
def test_other_branches_get_a_warning_naming_the_convention(branch: str) -> None:
    warning = naming.branch_name_warning(branch)
    assert warning is not None and "<user>/<description>" in warning


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        ("my_study", "2026_11_25_my_study"),
        ("2025-11-21_ablation_studies", "2026_11_25_ablation_studies"),
        ("2025_13_01_patch_size", "2026_11_25_patch_size"),
        ("2025_11_21", "2026_11_25_per_modality_projection_experiments"),
    ],
)
def test_the_suggestion_keeps_what_was_typed_with_a_valid_date(typed: str, suggested: str) -> None:
    assert naming.suggest_project(typed, datetime.date(2026, 11, 25)) == suggested
