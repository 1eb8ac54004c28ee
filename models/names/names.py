"""The one place that says which names are valid: run names, W&B projects, experiments.

Every name a user types reaches a path (`runs/<project>/<run>/`), a scheduler script
(`#SBATCH --job-name=<run>`), an image tag and W&B. One rule set, used by the CLI, the
launch gate, the run folder and every backend, so that no layer can accept what another
would misread. Each rule is a *full* match (`re.fullmatch`): `^...$` also matches before a
trailing newline, which let `"name\\n#!"` through and broke the sbatch script's lines.

This package sits below everything else and imports nothing of the repo.

    run name     letters, digits, '.', '_', '-'; starts with a letter or digit; <= 128
    W&B project  YYYY_MM_DD_description, a real date; lowercase, digits, '_'; <= 128
    experiment   lowercase letters, digits, '_'; starts with a letter; <= 100 (a file name)
    cluster      lowercase letters, digits, '_', '-'; starts with a letter; <= 64
"""

from __future__ import annotations

import datetime
import re

MAX_RUN_NAME = 128
MAX_PROJECT = 128
MAX_EXPERIMENT = 100
MAX_CLUSTER = 64

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
PROJECT = re.compile(r"(\d{4})_(\d{2})_(\d{2})_([a-z0-9][a-z0-9_]*)")
EXPERIMENT = re.compile(r"[a-z][a-z0-9_]*")
CLUSTER = re.compile(r"[a-z][a-z0-9_-]*")


class InvalidNameError(ValueError):
    """A name breaks a rule; the message says which rule and shows a valid name."""


def shown(value: object, limit: int = 60) -> str:
    """`value` for an error message: repr (control characters visible), cut to `limit`."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def run_name_problem(value: object) -> str | None:
    """Why `value` is not a valid run name, or None."""
    if not isinstance(value, str) or not value:
        return f"run name {shown(value)} is empty or not text"
    if len(value) > MAX_RUN_NAME:
        return f"run name {shown(value)} is {len(value)} characters long; at most {MAX_RUN_NAME}"
    if not RUN_NAME.fullmatch(value):
        return (
            f"run name {shown(value)} may use letters, digits, '.', '_' and '-' only and must "
            "start with a letter or digit (it names a folder, a job and a W&B run)"
        )
    return None


def project_problem(value: object) -> str | None:
    """Why `value` is not a valid W&B project (`YYYY_MM_DD_description`), or None."""
    if not isinstance(value, str) or not value:
        return f"W&B project {shown(value)} is empty or not text"
    if len(value) > MAX_PROJECT:
        return f"W&B project {shown(value)} is {len(value)} characters long; at most {MAX_PROJECT}"
    match = PROJECT.fullmatch(value)
    if match is None:
        return (
            f"W&B project {shown(value)} must be YYYY_MM_DD_description (lowercase letters, "
            "digits and '_' after the date)"
        )
    year, month, day, _ = match.groups()
    try:
        datetime.date(int(year), int(month), int(day))
    except ValueError:
        return (
            f"W&B project {shown(value)} starts with {year}_{month}_{day}, which is not a real date"
        )
    return None


def experiment_problem(value: object) -> str | None:
    """Why `value` is not a valid experiment name (the file experiments/<name>.py), or None."""
    if not isinstance(value, str) or not value:
        return f"experiment name {shown(value)} is empty or not text"
    if len(value) > MAX_EXPERIMENT or not EXPERIMENT.fullmatch(value):
        return (
            f"experiment name {shown(value)} must be lowercase letters, digits and '_', start "
            f"with a letter and have at most {MAX_EXPERIMENT} characters (the file "
            "experiments/<name>.py)"
        )
    return None


def cluster_problem(value: object) -> str | None:
    """Why `value` cannot be a cluster name, or None."""
    if not isinstance(value, str) or not value:
        return f"cluster name {shown(value)} is empty or not text"
    if len(value) > MAX_CLUSTER or not CLUSTER.fullmatch(value):
        return (
            f"cluster name {shown(value)} must be lowercase letters, digits, '_' and '-' and "
            "start with a letter"
        )
    return None


def _check(problem: str | None, value: str) -> str:
    if problem is not None:
        raise InvalidNameError(problem)
    return value


def check_run_name(value: str) -> str:
    """`value` when it is a valid run name; else InvalidNameError."""
    return _check(run_name_problem(value), value)


def control_character_problem(what: str, value: str) -> str | None:
    """Why `value` (an override, an argument) cannot travel in a command line, or None.

    Arguments are written into scheduler scripts and job records; a newline or another
    control character there would split a line, so none is accepted anywhere.
    """
    bad = sorted({char for char in value if ord(char) < 32 or ord(char) == 127})
    if bad:
        codes = ", ".join(f"\\x{ord(char):02x}" for char in bad)
        return f"{what} {shown(value)} contains control characters ({codes}); remove them"
    return None
