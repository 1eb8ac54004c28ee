"""reproduce_run: a finished CPU run of nano, re-run from its run folder alone in a child
process, matches at every logged step; a changed value is found at its step and key; runs
that cannot be re-run are refused in one line; commit_checkout on a scratch git repository.

Inside `bazel test` there is no git checkout, so the reproduction tests hand reproduce_run a
checkout that yields this test's own source tree for the recorded (made-up) commit; the
production checkout (commit_checkout) is tested on its own against a real git repository.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.framework import reproduce
from experiments.framework.cli import run
from experiments.framework.experiment_config import Builders

NANO = importlib.import_module("experiments.nano")
COMMIT = "c0ffee" + "0" * 34
PROJECT = "2026_12_03_reproduce_test"
# Three CPU steps of nano at batch 8 / 300 tokens: about 1.5 s; the loader in-process and no
# evaluator, W&B or progress line, so the run folder is metrics + checkpoint + records.
OVERRIDES = [
    "--trainer.max_steps=3",
    "--data_loader.num_workers=0",
    "--data_loader.prefetch_factor=null",
    "--trainer.callbacks.evaluator.enabled=false",
    "--trainer.callbacks.wandb.enabled=false",
    "--trainer.callbacks.progress.enabled=false",
    f"--trainer.callbacks.wandb.project={PROJECT}",
]
SOURCE_TREE = Path(importlib.import_module("experiments").__file__).parent.parent


@contextlib.contextmanager
def this_source_tree(workspace: Path, commit: str) -> Iterator[Path]:
    """The checkout a test gives reproduce_run: this tree stands for the recorded commit."""
    assert commit == COMMIT
    yield SOURCE_TREE


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished 3-step nano run, trained in this process as `train` trains it."""
    from models.data import synthetic

    root = tmp_path_factory.mktemp("reproduce")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TERRA_DATA_DIR", str(synthetic.write_synthetic_dataset(root / "data", 16, 0)))
        env.setenv("TERRA_RUN_ROOT", str(root / "runs"))
        env.setenv("BUILD_WORKSPACE_DIRECTORY", str(root / "ws"))
        env.setenv("TERRA_LAB_COMMIT", COMMIT)  # what a launched job's provenance records
        env.setenv("WANDB_MODE", "disabled")
        out, err = io.StringIO(), io.StringIO()
        argv = ["train", "nano_s0", "local", *OVERRIDES]
        assert run(Builders.from_module(NANO), argv, "nano", out, err) == 0, err.getvalue()
        # The child must find its data from the run's records, not from this environment.
        env.delenv("TERRA_DATA_DIR")
        env.delenv("TERRA_LAB_COMMIT")
        yield root / "runs" / PROJECT / "nano_s0"


def _reproduce(run_dir: Path) -> reproduce.ReproduceReport:
    return reproduce.reproduce_run(run_dir, where="here", checkout=this_source_tree)


def test_a_finished_cpu_run_reproduces_identically_at_every_logged_step(original: Path) -> None:
    report = _reproduce(original)
    assert report.reproduction_dir == original.parent / "nano_s0_repro1"
    assert report.steps_compared == 3 and report.first_difference is None
    assert report.setup_differences == () and report.identical
    assert report.weights.startswith("identical at step 3")
    assert report.commit == COMMIT and report.image is None
    # The timings did differ (they measure the machine); everything else was equal.
    timings = [
        reproduce.read_metrics(path / "metrics.jsonl")[1]["step_time_s"]
        for path in (original, report.reproduction_dir)
    ]
    assert timings[0] != timings[1]
    text = reproduce.format_report(report)
    assert text.splitlines()[0] == (
        f"reproduced nano_s0 (commit {COMMIT[:12]} here): identical at all 3 logged steps"
    )


def test_a_changed_value_is_reported_at_its_step_and_key(original: Path) -> None:
    metrics = original / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    real = records[1]["patch_disc_b"]
    records[1]["patch_disc_b"] = real + 1e-6
    saved = metrics.read_text()
    metrics.write_text("".join(json.dumps(record) + "\n" for record in records))
    try:
        report = _reproduce(original)
    finally:
        metrics.write_text(saved)
    assert report.reproduction_dir.name.startswith("nano_s0_repro")
    assert report.first_difference == (2, "patch_disc_b", real + 1e-6, real)
    assert report.steps_compared == 2 and not report.identical
    assert "differs first at step 2, patch_disc_b" in reproduce.format_report(report)


def _run_folder(path: Path, provenance: dict, identity_commit: str = COMMIT) -> Path:
    path.mkdir(parents=True)
    (path / "overrides.txt").write_text("# header\n--seed=1\n")
    (path / "provenance.json").write_text(json.dumps(provenance))
    (path / "identity.json").write_text(
        json.dumps({"config_sha256": "0" * 64, "commit": identity_commit, "experiment": "nano"})
    )
    (path / "config.yaml").write_text("launch: {}\n")
    (path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    return path


def _start(**fields: object) -> dict:
    return {"experiment": "nano", "cluster": "local", "starts": [{"commit": COMMIT, **fields}]}


@pytest.mark.parametrize(
    ("provenance", "identity_commit"),
    [
        (_start(dirty=True), COMMIT),
        (_start(dirty=None), f"{COMMIT}+dirty.0123456789ab"),
    ],
    ids=["provenance_dirty", "identity_dirty_commit"],
)
def test_a_run_from_a_dirty_tree_is_refused_in_one_line(
    tmp_path: Path, provenance: dict, identity_commit: str
) -> None:
    run_dir = _run_folder(tmp_path / "p" / "nano_s1", provenance, identity_commit)
    with pytest.raises(reproduce.ReproduceError) as raised:
        reproduce.reproduce_run(run_dir, where="here", checkout=this_source_tree)
    message = str(raised.value)
    assert "uncommitted changes" in message and "\n" not in message
    assert raised.value.exit_code == 2
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["nano_s1"]  # nothing trained


def test_a_missing_run_folder_or_overrides_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(reproduce.ReproduceError, match="does not exist; give a run folder"):
        reproduce.reproduce_run(tmp_path / "p" / "nope", checkout=this_source_tree)
    run_dir = _run_folder(tmp_path / "p" / "nano_s1", _start(dirty=False))
    (run_dir / "overrides.txt").unlink()
    with pytest.raises(reproduce.ReproduceError) as raised:
        reproduce.reproduce_run(run_dir, checkout=this_source_tree)
    assert "has no overrides.txt" in str(raised.value) and "\n" not in str(raised.value)


def test_image_is_refused_for_a_run_that_recorded_none(tmp_path: Path) -> None:
    run_dir = _run_folder(tmp_path / "p" / "nano_s1", _start(dirty=False, image=None))
    with pytest.raises(reproduce.ReproduceError, match="records no image"):
        reproduce.reproduce_run(run_dir, where="image")


def test_the_reproduction_takes_the_first_free_repro_name(tmp_path: Path) -> None:
    run_dir = _run_folder(tmp_path / "p" / "nano_s1", _start(dirty=False))
    (tmp_path / "p" / "nano_s1_repro1").mkdir()
    assert reproduce.next_run_name(reproduce.read_records(run_dir)) == "nano_s1_repro2"


def test_timings_are_skipped_and_a_missing_step_or_key_is_a_difference() -> None:
    a = {1: {"step": 1, "loss": 1.0, "step_time_s": 0.1, "eval/lc/seconds": 3.0},
         2: {"step": 2, "loss": float("nan"), "tokens_per_s": 5.0}}  # fmt: skip
    same = {1: {"step": 1, "loss": 1.0, "step_time_s": 0.2, "eval/lc/seconds": 9.0},
            2: {"step": 2, "loss": float("nan"), "tokens_per_s": 6.0}}  # fmt: skip
    assert reproduce.compare_metrics(a, same) == (2, None)
    assert reproduce.compare_metrics(a, {1: same[1]}) == (2, (2, "step", 2, "<absent>"))
    fewer = {**same, 1: {"step": 1, "step_time_s": 0.2}}
    assert reproduce.compare_metrics(a, fewer) == (1, (1, "loss", 1.0, "<absent>"))


def test_the_overrides_keep_the_original_project_when_it_was_a_default(tmp_path: Path) -> None:
    run_dir = _run_folder(tmp_path / "2026_01_02_old" / "nano_s1", _start(dirty=False))
    assert reproduce.project_overrides(reproduce.read_records(run_dir)) == [
        "--seed=1",
        f"{reproduce.PROJECT_FLAG}=2026_01_02_old",
    ]


def test_the_child_imports_terra_lab_only_from_the_commits_tree(tmp_path: Path) -> None:
    other_checkout = tmp_path / "checkout"
    (other_checkout / "experiments").mkdir(parents=True)
    (other_checkout / "experiments" / "__init__.py").write_text("")
    path = reproduce.child_pythonpath(tmp_path / "tree", [str(other_checkout), "/site", ""])
    assert path.split(os.pathsep) == [str(tmp_path / "tree"), "/site"]


# -- commit_checkout, on a scratch repository ---------------------------------------------


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for text in ("first", "second"):
        (repo / "code.py").write_text(text)
        _git(repo, "add", "code.py")
        _git(repo, "commit", "-q", "-m", text)
    return repo


def test_a_clean_head_at_the_commit_is_used_in_place(repo: Path) -> None:
    with reproduce.commit_checkout(repo, _git(repo, "rev-parse", "HEAD")) as tree:
        assert tree == repo


def test_another_commit_or_a_dirty_head_is_checked_out_into_a_removed_worktree(
    repo: Path,
) -> None:
    head, first = _git(repo, "rev-parse", "HEAD"), _git(repo, "rev-parse", "HEAD~1")
    (repo / "code.py").write_text("an uncommitted edit")
    for commit, text in ((first, "first"), (head, "second")):
        with reproduce.commit_checkout(repo, commit) as tree:
            assert tree != repo and (tree / "code.py").read_text() == text
        assert not tree.exists()
    assert len(_git(repo, "worktree", "list").splitlines()) == 1


def test_a_commit_the_checkout_lacks_is_one_line(repo: Path) -> None:
    with pytest.raises(reproduce.ReproduceError, match="is not in .*; fetch it"):
        with reproduce.commit_checkout(repo, "f" * 40):
            pass
