"""What every launcher command reads from the user's machine, each with its own one-line error.

The checkout (a git repository), a revision in it, the image flavor and launcher/clusters.yaml:
a wrong one is `BadInput` (exit 2, the message names the fix); an operation that failed with
a message that already says what to do is `Failed` (exit 1). The binaries hand both to
launcher/cli's Command, which prints `<binary>: <message>`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from launcher import clusters
from launcher.image import app_layer, base_layer, deps_layer
from launcher.services import packages
from launcher.workspace import workspace_root


class BadInput(ValueError):
    """An argument, the checkout or a file the user controls is wrong; the message says how."""


class Failed(RuntimeError):
    """An operation failed; the message says what failed and what to do."""


# Errors of lower layers whose message is already one line with the fix.
SAY_WHAT_TO_DO: tuple[type[BaseException], ...] = (
    Failed,
    base_layer.BaseLayerNeedsRoot,
    packages.MissingPackages,
)


def checkout() -> Path:
    """The checkout a command works in (launcher/workspace.py); it must be a git repository."""
    if shutil.which("git") is None:
        raise Failed("git is not installed; install it: sudo apt-get install -y git")
    where = str(workspace_root())
    result = subprocess.run(
        ["git", "-C", where, "rev-parse", "--show-toplevel"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BadInput(
            f"{where} is not a git repository; run this in a terra-lab checkout "
            "(`./tools/bazel run //launcher:...` from the clone)"
        )
    return Path(result.stdout.strip())


def commit(workspace: Path, revision: str) -> str:
    """The full sha of `revision` in `workspace`; an unknown one is bad input."""
    try:
        return app_layer.resolve_commit(workspace, revision)
    except RuntimeError as error:
        raise BadInput(
            f"unknown revision {revision!r}: no such commit in {workspace}; pass a commit sha, "
            "branch or tag that `git log --oneline` shows"
        ) from error


def flavor(value: str | None) -> str:
    """`--flavor`, else $TERRA_LAB_IMAGE_FLAVOR, else cpu; an unknown one is bad input."""
    source = "--flavor"
    if value is None:
        value, source = os.environ.get(deps_layer.FLAVOR_ENV) or "cpu", f"${deps_layer.FLAVOR_ENV}"
    if value not in deps_layer.FLAVOR_LOCKS:
        raise BadInput(
            f"unknown image flavor {value!r} ({source}); use one of "
            f"{', '.join(sorted(deps_layer.FLAVOR_LOCKS))}"
        )
    return value


def settings(workspace: Path) -> clusters.Settings:
    """launcher/clusters.yaml of `workspace`; a missing or malformed one is bad input."""
    try:
        return clusters.load(workspace)
    except FileNotFoundError as error:
        raise BadInput(
            f"{workspace} has no {clusters.CLUSTERS_FILE}; run this in a terra-lab checkout"
        ) from error
    except clusters.ClusterConfigError as error:
        raise BadInput(f"{error}; fix {clusters.CLUSTERS_FILE}") from error
