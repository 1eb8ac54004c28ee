"""The one answer to "which checkout am I in?" for the launcher and the experiments.

`bazel run` changes the working directory to the runfiles tree and says where the user's
checkout is in BUILD_WORKSPACE_DIRECTORY; a plain `python` run in a clone has git's top
level; inside a job's image (/app, no .git) the working directory is the tree.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

WORKSPACE_ENV = "BUILD_WORKSPACE_DIRECTORY"


def workspace_root(environ: Mapping[str, str] | None = None) -> Path:
    """$BUILD_WORKSPACE_DIRECTORY, else git's top level of the working directory, else it."""
    environ = os.environ if environ is None else environ
    if workspace := environ.get(WORKSPACE_ENV):
        return Path(workspace)
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):  # no git on this machine (an image)
        return Path.cwd()
    if result.returncode == 0 and result.stdout.strip():
        return Path(result.stdout.strip())
    return Path.cwd()


def user_path(text: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Path:
    """A path as the user typed it: `~` expanded, a relative one taken from the folder the
    command was typed in ($BUILD_WORKING_DIRECTORY under `bazel run`, which itself starts
    in the runfiles), else from the working directory."""
    environ = os.environ if environ is None else environ
    path = Path(text).expanduser()
    if path.is_absolute():
        return path
    return Path(environ.get("BUILD_WORKING_DIRECTORY") or os.getcwd()) / path
