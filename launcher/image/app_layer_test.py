"""The application layer: exactly a commit's tracked files, the same from any clone, no secrets."""

import os

import pytest

from launcher import testing
from launcher.image import app_layer, oci

FILES = {
    ".gitignore": "runs/\n*.log\n",
    "experiments/nano.py": "print('nano')\n",
    "models/__init__.py": "",
    "tools/run.sh": "#!/bin/sh\necho hi\n",
}


def _members(repo, tmp_path, name="app.tar"):
    commit = app_layer.resolve_commit(repo)
    store = oci.BlobStore(tmp_path / "store")
    layer = app_layer.build_app_layer(repo, commit, tmp_path / name)
    store.put_file(tmp_path / name, layer.digest)
    return layer, testing.layer_members(store, layer.digest)


def test_layer_holds_exactly_the_tracked_files_of_the_commit(tmp_path):
    repo = testing.make_repo(tmp_path / "repo", FILES, executable=("tools/run.sh",))
    (repo / "untracked.py").write_text("secret = 1\n")
    (repo / "debug.log").write_text("ignored\n")
    (repo / "runs").mkdir()
    (repo / "runs" / "metrics.jsonl").write_text("{}\n")
    (repo / "experiments" / "nano.py").write_text("print('edited, not committed')\n")
    layer, members = _members(repo, tmp_path)
    files = {name for name, content in members.items() if content is not None}
    assert files == {f"app/{name}" for name in FILES}
    assert members["app/experiments/nano.py"] == b"print('nano')\n"
    assert not any(".git/" in name or name.endswith(".git") for name in members)


def test_git_modes_become_file_modes(tmp_path):
    repo = testing.make_repo(tmp_path / "repo", FILES, executable=("tools/run.sh",))
    commit = app_layer.resolve_commit(repo)
    entries = {entry.path: entry for entry in app_layer.app_entries(repo, commit)}
    assert entries["app/tools/run.sh"].mode == 0o755
    assert entries["app/models/__init__.py"].mode == 0o644
    assert entries["app/tools"].kind == "dir"


def test_two_clones_of_one_commit_give_the_same_layer(tmp_path):
    repo = testing.make_repo(tmp_path / "repo", FILES)
    first = testing.clone(repo, tmp_path / "first")
    os.umask(0o077)
    try:
        second = testing.clone(repo, tmp_path / "second")
    finally:
        os.umask(0o022)
    (second / "models" / "__init__.py").touch()  # a newer mtime in the working tree
    layer_a, _ = _members(first, tmp_path, "a.tar")
    layer_b, _ = _members(second, tmp_path, "b.tar")
    assert layer_a == layer_b


def test_a_tracked_credential_file_stops_the_build(tmp_path):
    repo = testing.make_repo(tmp_path / "repo", {**FILES, "deploy/.netrc": "machine x\n"})
    with pytest.raises(app_layer.SecretInTreeError, match="deploy/.netrc"):
        app_layer.app_entries(repo, app_layer.resolve_commit(repo))


def test_a_file_holding_a_secret_variables_value_stops_the_build(tmp_path, monkeypatch):
    secret = "0123456789abcdef-wandb-key"
    repo = testing.make_repo(tmp_path / "repo", {**FILES, "notes.txt": f"key={secret}\n"})
    commit = app_layer.resolve_commit(repo)
    app_layer.app_entries(repo, commit)  # fine while the variable is not set
    monkeypatch.setenv("WANDB_API_KEY", secret)
    with pytest.raises(app_layer.SecretInTreeError, match=r"notes.txt.*WANDB_API_KEY"):
        app_layer.app_entries(repo, commit)
