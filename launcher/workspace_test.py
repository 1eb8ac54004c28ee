"""Which checkout, and which folder a typed path means."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.workspace import user_path, workspace_root


def test_the_workspace_is_bazel_runs_checkout(tmp_path: Path) -> None:
    assert workspace_root({"BUILD_WORKSPACE_DIRECTORY": str(tmp_path)}) == tmp_path


def test_a_relative_path_means_the_folder_bazel_run_was_typed_in(tmp_path: Path) -> None:
    typed_in = {"BUILD_WORKING_DIRECTORY": str(tmp_path / "here")}
    assert user_path("runs/p/r", typed_in) == tmp_path / "here" / "runs" / "p" / "r"


def test_without_bazel_a_relative_path_means_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert user_path("runs", {}) == tmp_path / "runs"


def test_absolute_and_home_paths_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    typed_in = {"BUILD_WORKING_DIRECTORY": "/elsewhere"}
    assert user_path("/data/x", typed_in) == Path("/data/x")
    assert user_path("~/x", typed_in) == Path("/home/someone/x")
