"""A run folder belongs to one setup: a second start with another config, commit or
experiment is refused; the same setup continues only when asked (--resume) or requeued."""

from __future__ import annotations

import importlib
import io
import json
from pathlib import Path

import pytest

from experiments.framework import identity, testing
from experiments.framework.cli import run

NANO = importlib.import_module("experiments.nano")
BASE_ARGS = ["local", "--trainer.callbacks.wandb.project=2026_11_25_identity"]


def _fingerprint(commit: str = "c" * 40, **config_changes) -> identity.Fingerprint:
    config = {
        "experiment": "nano",
        "run_name": "nano_a",
        "train_module": {"lr": 1e-3, "microbatch_size": 4},
        "trainer": {"max_duration": {"value": 10}, "run": {"root": "/r"}},
        "launch": {"num_gpus": 1},
        "dataset": {"h5_dir": "/host/data", "modalities": ["s2"]},
    }
    for dotted, value in config_changes.items():
        node = config
        *parents, leaf = dotted.split("__")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return identity.Fingerprint.of("nano", commit, config)


def _claimed(tmp_path: Path, job_id: str | None = "job-1") -> Path:
    claim = identity.check(tmp_path, _fingerprint(), False, job_id, "run nano_a")
    identity.write_record(claim, _fingerprint(), job_id)
    return tmp_path


def test_an_empty_folder_is_a_new_run(tmp_path):
    assert identity.check(tmp_path / "x", _fingerprint(), False, None, "run x").kind == "new"


def test_the_same_setup_again_without_resume_is_refused(tmp_path):
    _claimed(tmp_path)
    with pytest.raises(identity.RunIdentityError, match="pass --resume") as refused:
        identity.check(tmp_path, _fingerprint(), False, None, "run nano_a")
    assert refused.value.exit_code == 2


def test_the_same_setup_continues_with_resume_and_records_the_job(tmp_path):
    _claimed(tmp_path)
    claim = identity.check(tmp_path, _fingerprint(), True, "job-2", "run nano_a")
    assert claim.kind == "resume"
    identity.write_record(claim, _fingerprint(), "job-2")
    assert json.loads((tmp_path / "identity.json").read_text())["jobs"] == ["job-1", "job-2"]


def test_a_requeued_job_continues_without_resume(tmp_path):
    _claimed(tmp_path, job_id="4711")
    assert identity.check(tmp_path, _fingerprint(), False, "4711", "run").kind == "requeue"


def test_another_config_is_refused_even_with_resume_and_the_key_is_named(tmp_path):
    _claimed(tmp_path)
    changed = _fingerprint(train_module__lr=3e-4)
    with pytest.raises(identity.RunIdentityError) as refused:
        identity.check(tmp_path, changed, True, None, "run nano_a")
    assert "train_module.lr 0.001 -> 0.0003" in str(refused.value)
    assert "another run name" in str(refused.value)


def test_another_commit_or_experiment_is_refused(tmp_path):
    _claimed(tmp_path)
    with pytest.raises(identity.RunIdentityError, match="commit cccc"):
        identity.check(tmp_path, _fingerprint(commit="d" * 40), True, None, "run")
    other = identity.Fingerprint("base", "c" * 40, _fingerprint().config)
    with pytest.raises(identity.RunIdentityError, match="experiment nano -> base"):
        identity.check(tmp_path, other, True, None, "run")


@pytest.mark.parametrize(
    "change",
    [
        {"trainer__max_duration": {"value": 20}},
        {"launch__num_gpus": 8},
        {"trainer__run": {"root": "/app/runs"}},
        {"dataset__h5_dir": "/data"},
        {"run_name": "other"},
    ],
)
def test_volatile_fields_may_change_on_an_explicit_resume(tmp_path, change):
    _claimed(tmp_path)
    assert identity.check(tmp_path, _fingerprint(**change), True, None, "run").kind == "resume"


def test_a_corrupt_identity_file_names_itself_and_the_repair(tmp_path):
    (tmp_path / "identity.json").write_text("{not json")
    with pytest.raises(identity.RunIdentityError, match="identity.json is corrupt.*--resume"):
        identity.check(tmp_path, _fingerprint(), True, None, "run")


def test_a_run_from_before_identity_is_adopted_only_with_resume(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(identity.RunIdentityError, match="before runs recorded"):
        identity.check(tmp_path, _fingerprint(), False, None, "run")
    assert identity.check(tmp_path, _fingerprint(), True, None, "run").kind == "adopt"


def test_a_dirty_checkout_has_its_own_commit_identity(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f.py").write_text("a = 1\n")
    git("add", "f.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = identity.workspace_commit(tmp_path, {})
    (tmp_path / "f.py").write_text("a = 2\n")
    first_edit = identity.workspace_commit(tmp_path, {})
    (tmp_path / "f.py").write_text("a = 3\n")
    assert len(clean) == 40 and first_edit.startswith(clean + "+dirty.")
    assert identity.workspace_commit(tmp_path, {}) != first_edit
    assert identity.workspace_commit(tmp_path, {"TERRA_LAB_COMMIT": "abc"}) == "abc"


# -- through the command line: one tiny CPU step per start -------------------------------


@pytest.fixture
def cli_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    h5_dir = testing.write_tiny_dataset(tmp_path / "data")
    monkeypatch.setenv("BUILD_WORKSPACE_DIRECTORY", str(tmp_path / "ws"))
    monkeypatch.delenv("TERRA_RUN_ROOT", raising=False)
    monkeypatch.delenv("TERRA_LAB_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("TERRA_LAB_COMMIT", "a" * 40)
    builders = testing.tiny_builders(NANO, h5_dir)

    def train(*extra: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        status = run(builders, ["train", "nano_a", *BASE_ARGS, *extra], "nano", out, err)
        return status, err.getvalue()

    return tmp_path / "ws" / "runs" / "2026_11_25_identity" / "nano_a", train


def test_cli_second_train_with_the_same_name_is_refused_then_resumes_on_request(cli_workspace):
    run_dir, train = cli_workspace
    assert train()[0] == 0
    before = (run_dir / "identity.json").read_text()
    status, err = train()
    assert status == 2
    assert err.strip().splitlines()[-1].startswith("error: run nano_a of project")
    assert "--resume" in err and "Traceback" not in err
    assert (run_dir / "identity.json").read_text() == before
    status, err = train("--resume", "--trainer.max_steps=2")
    assert status == 0, err
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert steps == [1, 2]


def test_cli_train_with_another_config_or_commit_into_an_existing_run_is_refused(
    cli_workspace, monkeypatch
):
    run_dir, train = cli_workspace
    assert train()[0] == 0
    snapshot = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    status, err = train("--resume", "--train_module.max_grad_norm=0.5")
    assert status == 2 and "train_module.max_grad_norm" in err, err
    monkeypatch.setenv("TERRA_LAB_COMMIT", "b" * 40)
    status, err = train("--resume")
    assert status == 2 and "commit aaaa" in err, err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == snapshot


@pytest.mark.parametrize(
    "override",
    [
        "--trainer.run.name=other",
        "--trainer.run.root=/tmp/elsewhere",
        "--trainer.run.project=2026_11_25_x",
        "--trainer.wandb.name=other",
        "--trainer.callbacks.wandb.name=other",
        "--trainer.wandb.project=2026_11_25_x",
    ],
)
def test_identity_fields_cannot_be_overridden(cli_workspace, override):
    run_dir, train = cli_workspace
    status, err = train(override)
    assert status == 2 and "is not allowed" in err and "Traceback" not in err
    assert not run_dir.exists()
