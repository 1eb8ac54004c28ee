"""The naming rules of the experiment guide, checked with errors that show a valid name.

- W&B project: `YYYY_MM_DD_description` with a real calendar date, so projects sort by
  date and a study's runs sit together (e.g. 2025_11_21_per_modality_projection_experiments).
- Run name: contains the experiment (variant) name, so a run is findable from its variant
  (e.g. base_encoder_per_mod_proj or base_encoder_per_mod_proj_lr3e-4).
- Branch: `<user>/<description>` (e.g. henryh/per-modality-output-projection); a warning
  only, because a launch from a differently named branch is still reproducible.
"""

from __future__ import annotations

import datetime
import re

from models.names import names

_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._/-]*")


class NamingError(names.InvalidNameError):
    """A name breaks one of the guide's rules; the message shows a valid example."""


def dated_project(description: str, day: datetime.date | None = None) -> str:
    """`YYYY_MM_DD_<description>` for `day` (default: today)."""
    day = day or datetime.date.today()
    slug = re.sub(r"[^a-z0-9]+", "_", description.lower()).strip("_") or "experiments"
    return f"{day:%Y_%m_%d}_{slug}"


def suggest_project(project: str, day: datetime.date | None = None) -> str:
    """A valid project close to what was typed: today's date + its description."""
    description = re.sub(r"^\d{2,4}[-_./]\d{1,2}[-_./]\d{1,2}[-_]?", "", project)[:60]
    if not re.search(r"[a-z]", description.lower()):
        description = "per_modality_projection_experiments"
    return dated_project(description, day)


def validate_wandb_project(project: str, option: str = "--trainer.callbacks.wandb.project") -> str:
    """Raise NamingError unless `project` is `YYYY_MM_DD_description` with a real date."""
    problem = names.project_problem(project)
    if problem is not None:
        example = suggest_project(project if isinstance(project, str) else "")
        raise NamingError(f"{problem}. Type for example: {option}={example}")
    return project


def validate_run_name(run_name: str, experiment: str) -> str:
    """Raise NamingError unless `run_name` is a clean name that contains `experiment`."""
    problem = names.run_name_problem(run_name)
    if problem is not None:
        raise NamingError(f"{problem}. Type for example: {experiment}")
    if experiment not in run_name:
        raise NamingError(
            f"run name {run_name!r} does not contain the experiment name {experiment!r}, so it "
            f"cannot be traced back to its variant in W&B. Type for example: {experiment} or "
            f"{experiment}_{run_name}"
        )
    return run_name


def branch_name_warning(branch: str | None) -> str | None:
    """A warning text when `branch` is not `<user>/<description>`, else None."""
    if branch is None or branch == "HEAD":
        return None  # detached or not a git checkout: nothing to say
    if _BRANCH.fullmatch(branch):
        return None
    return (
        f"branch {branch!r} is not named <user>/<description> (e.g. "
        "henryh/per-modality-output-projection); create one with "
        "`git checkout -b <user>/<description>` so the launched commit is easy to find"
    )
