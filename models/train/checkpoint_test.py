"""Tests for atomic checkpoint directories: write, list, crash safety, pruning."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from models.train import checkpoint

# Saves step 1 cleanly, then dies (os._exit: no cleanup, like SIGKILL) while writing the
# second file of step 2.
_CRASH_MID_WRITE = textwrap.dedent(
    """
    import os, sys, torch
    from models.train import checkpoint
    out = sys.argv[1]
    checkpoint.save(out, 1, {"model": {"w": torch.ones(2)}, "optim": {}}, {})
    real_save, calls = torch.save, []
    def dying_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os._exit(9)
        real_save(obj, f, *args, **kwargs)
    torch.save = dying_save
    checkpoint.save(out, 2, {"model": {"w": torch.zeros(2)}, "optim": {}}, {})
    """
)


def test_saved_parts_load_back_with_their_meta(tmp_path: Path) -> None:
    parts = {"model": {"w": torch.arange(3.0)}, "state": {"step": 5, "note": (1, "a")}}
    path = checkpoint.save(tmp_path, 5, parts, {"world_size": 2})
    assert path == tmp_path / "step_5"
    loaded = checkpoint.load(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert loaded["state"] == {"step": 5, "note": (1, "a")}
    assert checkpoint.read_meta(path)["world_size"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_latest_is_the_highest_step_not_the_newest_name_or_write(tmp_path: Path) -> None:
    for step in (10, 9, 100, 20):
        checkpoint.save(tmp_path, step, {"x": step}, {})
    assert checkpoint.latest_complete(tmp_path) == tmp_path / "step_100"
    assert [s for s, _ in checkpoint.list_complete(tmp_path)] == [9, 10, 20, 100]


def test_directories_without_meta_or_with_temp_names_are_not_checkpoints(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, 3, {"x": 1}, {})
    (tmp_path / "step_7").mkdir()  # no meta.json: never finished
    (tmp_path / ".tmp-step_8-1-abc").mkdir()
    (tmp_path / ".tmp-step_8-1-abc" / checkpoint.META_FILE).write_text("{}")
    assert checkpoint.latest_complete(tmp_path) == tmp_path / "step_3"


def test_a_crash_mid_write_leaves_nothing_resume_would_pick_up(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CRASH_MID_WRITE, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 9, result.stderr
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-step_2")]
    assert len(leftovers) == 1  # the half-written step 2 is there, under its temp name
    latest = checkpoint.latest_complete(tmp_path)
    assert latest == tmp_path / "step_1"
    assert torch.equal(checkpoint.load(latest)["model"]["w"], torch.ones(2))
    assert checkpoint.remove_incomplete(tmp_path) == leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_1"]


def test_saving_an_existing_step_replaces_it(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, 4, {"x": "old"}, {})
    checkpoint.save(tmp_path, 4, {"x": "new"}, {})
    assert checkpoint.load(tmp_path / "step_4") == {"x": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["step_4"]


def test_prune_keeps_the_last_k_and_every_permanent_checkpoint(tmp_path: Path) -> None:
    for step in range(2, 22, 2):  # 2, 4, ..., 20
        checkpoint.save(tmp_path, step, {"x": step}, {})
    deleted = checkpoint.prune(tmp_path, keep_last=2, permanent_every=5)
    kept = [s for s, _ in checkpoint.list_complete(tmp_path)]
    assert kept == [10, 16, 18, 20]  # 10 and 20 are permanent; 16, 18 are the last two others
    assert sorted(int(p.name.split("_")[1]) for p in deleted) == [2, 4, 6, 8, 12, 14]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_prune_without_permanent_checkpoints_keeps_only_the_last_k(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, {"x": step}, {})
    checkpoint.prune(tmp_path, keep_last=1, permanent_every=None)
    assert [s for s, _ in checkpoint.list_complete(tmp_path)] == [3]
    with pytest.raises(ValueError, match="keep_last"):
        checkpoint.prune(tmp_path, keep_last=0, permanent_every=None)
