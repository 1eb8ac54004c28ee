"""Tests for atomic checkpoint directories: write, list, crash safety, pruning, and
loading without running pickled code."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
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


# -- no pickled code ---------------------------------------------------------------------


class _Planted:
    """Unpickling it creates `marker`: stands for any code a planted file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _plant(checkpoint_dir: Path, part: str, marker: Path, fix_meta: bool) -> None:
    """Replace `part` with a pickle that runs code, as a job that can write the run root
    could; `fix_meta` also edits meta.json to match (its size, or a new part's name)."""
    file = checkpoint_dir / f"{part}.pt"
    torch.save({"w": torch.ones(1), "payload": _Planted(marker)}, file)
    if fix_meta:
        meta = json.loads((checkpoint_dir / checkpoint.META_FILE).read_text())
        meta["parts"] = sorted(set(meta["parts"]) | {part})
        meta.setdefault("sizes", {})[part] = file.stat().st_size
        (checkpoint_dir / checkpoint.META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "part, fix_meta",
    [("trainer", True), ("trainer", False), ("extra", True)],
    ids=["replaced-part-and-meta", "replaced-part", "added-part"],
)
def test_a_planted_pickle_is_refused_unrun_naming_the_file(
    tmp_path: Path, part: str, fix_meta: bool
) -> None:
    path = checkpoint.save(tmp_path, 3, {"model": {"w": torch.zeros(1)}, "trainer": {}}, {})
    marker = tmp_path / "code-ran"
    _plant(path, part, marker, fix_meta)
    with pytest.raises(checkpoint.UnreadableCheckpointError, match=rf"{part}\.pt") as raised:
        checkpoint.load(path)
    assert not marker.exists()
    assert raised.value.path == path
    if fix_meta:  # past the size check: torch's weights_only unpickler refused the global
        assert "weights_only" in raised.value.reason and "posix.mkdir" in raised.value.reason


def test_a_format_1_checkpoint_still_loads_but_a_planted_pickle_in_one_does_not(
    tmp_path: Path,
) -> None:
    # Format 1 (before parts were kept plain): NumPy's RNG state as an array, no sizes.
    path = tmp_path / "step_2"
    path.mkdir()
    numpy_state = np.random.get_state()
    torch.save({"rng": [{"numpy": numpy_state}]}, path / "trainer.pt")
    (path / checkpoint.META_FILE).write_text(json.dumps({"step": 2, "parts": ["trainer"]}))
    loaded = checkpoint.load(path)["trainer"]["rng"][0]["numpy"]
    assert loaded[0] == numpy_state[0] and np.array_equal(loaded[1], numpy_state[1])

    marker = tmp_path / "code-ran"
    _plant(path, "trainer", marker, fix_meta=False)
    with pytest.raises(checkpoint.UnreadableCheckpointError, match="trainer.pt"):
        checkpoint.load(path)
    assert not marker.exists()


def test_saving_state_a_weights_only_load_would_refuse_fails_naming_where_it_is(
    tmp_path: Path,
) -> None:
    bad = {"rng": [{"numpy": np.random.get_state()}]}
    with pytest.raises(TypeError, match=r"trainer\['rng'\]\[0\]\['numpy'\]\[1\] is a numpy"):
        checkpoint.save(tmp_path, 1, {"trainer": bad}, {})
    with pytest.raises(TypeError, match=r"state\['lr'\] is a numpy.float64"):
        checkpoint.save(tmp_path, 1, {"state": {"lr": np.float64(0.1)}}, {})
    with pytest.raises(ValueError, match="plain file name"):
        checkpoint.save(tmp_path, 1, {"../model": {}}, {})
    assert checkpoint.list_finished(tmp_path) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# -- damaged checkpoints -----------------------------------------------------------------


def test_a_truncated_part_is_caught_before_it_is_unpickled(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path, 4, {"model": {"w": torch.arange(1000.0)}}, {})
    data = (path / "model.pt").read_bytes()
    (path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.UnreadableCheckpointError, match=r"model\.pt has \d+ bytes"):
        checkpoint.load(path)
    # Without a recorded size (format 1), torch's own check names it damaged.
    meta = json.loads((path / checkpoint.META_FILE).read_text())
    del meta["sizes"]
    (path / checkpoint.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(checkpoint.UnreadableCheckpointError, match=r"model\.pt is damaged"):
        checkpoint.load(path)


def test_a_missing_part_is_named(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path, 4, {"model": {}, "optim": {}}, {})
    (path / "optim.pt").unlink()
    with pytest.raises(checkpoint.UnreadableCheckpointError, match=r"optim\.pt is missing"):
        checkpoint.load(path)


@pytest.mark.parametrize(
    "meta_text, reason",
    [
        ('{"step": 5, "par', "does not read as JSON"),
        ("[1, 2]", "holds a list"),
        ('{"step": 4, "parts": []}', "says step 4, the folder name step 5"),
        ('{"step": 5, "parts": ["../../model"]}', "lists parts"),
    ],
    ids=["torn", "not-an-object", "other-step", "path-in-parts"],
)
def test_garbage_meta_is_left_out_of_the_complete_list_but_not_of_the_finished_one(
    tmp_path: Path, meta_text: str, reason: str
) -> None:
    checkpoint.save(tmp_path, 3, {"x": 1}, {})
    bad = checkpoint.save(tmp_path, 5, {"x": 2}, {})
    (bad / checkpoint.META_FILE).write_text(meta_text)
    assert checkpoint.list_complete(tmp_path) == [(3, tmp_path / "step_3")]
    assert checkpoint.latest_complete(tmp_path) == tmp_path / "step_3"
    assert [step for step, _ in checkpoint.list_finished(tmp_path)] == [3, 5]
    with pytest.raises(checkpoint.UnreadableCheckpointError, match=re.escape(reason)):
        checkpoint.load(bad)


# -- re-saving a step ------------------------------------------------------------------------


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, module, name: str, call: int) -> None:
    """Make the `call`-th call of module.name raise: a crash at that moment."""
    real, calls = getattr(module, name), []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == call:
            raise _Crash(f"{name} call {call}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


class _Crash(Exception):
    pass


def test_a_resave_interrupted_between_its_renames_is_undone_by_remove_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint.save(tmp_path, 4, {"x": "old"}, {})
    # The re-save's first rename moves the old step_4 aside; the second would put the new
    # one in place: die there.
    _fail_on_call(monkeypatch, checkpoint.os, "rename", call=2)
    with pytest.raises(_Crash):
        checkpoint.save(tmp_path, 4, {"x": "new"}, {})
    monkeypatch.undo()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "step_4" not in names
    assert any(name.startswith(".tmp-replaced-step_4-") for name in names)  # the old one

    removed = checkpoint.remove_incomplete(tmp_path)
    assert [p.name for p in removed] == [n for n in names if n.startswith(".tmp-step_4-")]
    assert checkpoint.list_complete(tmp_path) == [(4, tmp_path / "step_4")]
    assert checkpoint.load(tmp_path / "step_4") == {"x": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_4"]


def test_a_resave_interrupted_after_its_renames_keeps_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint.save(tmp_path, 4, {"x": "old"}, {})
    _fail_on_call(monkeypatch, checkpoint.shutil, "rmtree", call=1)  # deleting the old one
    with pytest.raises(_Crash):
        checkpoint.save(tmp_path, 4, {"x": "new"}, {})
    monkeypatch.undo()
    assert checkpoint.load(tmp_path / "step_4") == {"x": "new"}
    (removed,) = checkpoint.remove_incomplete(tmp_path)  # the old one, moved aside
    assert removed.name.startswith(".tmp-replaced-step_4-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_4"]
    assert checkpoint.load(tmp_path / "step_4") == {"x": "new"}


# Saves step 5, then re-saves it and dies (os._exit, like SIGKILL) right after moving the
# old one aside, before the new one takes its name.
_CRASH_MID_RESAVE = textwrap.dedent(
    """
    import os, sys, torch
    from models.train import checkpoint
    out = sys.argv[1]
    checkpoint.save(out, 5, {"model": {"w": torch.ones(2)}}, {})
    real_rename, calls = os.rename, []
    def dying_rename(src, dst):
        calls.append(1)
        real_rename(src, dst)
        if len(calls) == 1:
            os._exit(9)
    os.rename = dying_rename
    checkpoint.save(out, 5, {"model": {"w": torch.zeros(2)}}, {})
    """
)


def test_a_process_killed_mid_resave_leaves_a_whole_step_that_resume_finds(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CRASH_MID_RESAVE, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 9, result.stderr
    assert not (tmp_path / "step_5").exists()  # the moment between the renames
    checkpoint.remove_incomplete(tmp_path)  # what a resume does first
    assert checkpoint.latest_complete(tmp_path) == tmp_path / "step_5"
    assert torch.equal(checkpoint.load(tmp_path / "step_5")["model"]["w"], torch.ones(2))


def test_prune_up_to_a_step_ignores_checkpoints_past_it(tmp_path: Path) -> None:
    # step_9 is left by an earlier attempt whose resume fell back to step_3.
    for step in (3, 9, 6):
        checkpoint.save(tmp_path, step, {"x": step}, {})
    deleted = checkpoint.prune(tmp_path, keep_last=1, permanent_every=None, up_to_step=6)
    assert [p.name for p in deleted] == ["step_3"]
    assert [s for s, _ in checkpoint.list_complete(tmp_path)] == [6, 9]


def test_load_can_read_only_some_parts(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path, 2, {"model": {"w": torch.ones(1)}, "optim": {"lr": 0.1}}, {})
    (path / "optim.pt").write_bytes(b"damaged")  # not read, so not in the way
    assert list(checkpoint.load(path, parts=["model"])) == ["model"]
    with pytest.raises(checkpoint.UnreadableCheckpointError, match=r"no part \['ema'\]"):
        checkpoint.load(path, parts=["ema"])


# -- sharded checkpoints (format 3) in one process; several ranks: dcp_resume_test.py ------


def _model_and_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_a_sharded_checkpoint_holds_the_shards_the_plain_parts_and_meta_last(
    tmp_path: Path,
) -> None:
    model, optimizer = _model_and_optimizer()
    state = checkpoint.ShardedState(model, optimizer)
    path = checkpoint.save_sharded(tmp_path, 3, state, {"trainer": {"step": 3}}, {"world_size": 1})
    assert path == tmp_path / "step_3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_3"]  # no temp dir left
    meta = checkpoint.read_meta(path)
    assert meta["format"] == checkpoint.SHARDED_FORMAT and meta["world_size"] == 1
    assert meta["parts"] == ["model", "optim", "trainer"]
    files = meta["sharded"]["files"]
    assert sorted(files) == [".metadata", "__0_0.distcp"]
    assert files["__0_0.distcp"] == (path / "sharded" / "__0_0.distcp").stat().st_size
    loaded = checkpoint.load(path)
    assert loaded["trainer"] == {"step": 3}
    assert all(torch.equal(loaded["model"][k], v) for k, v in model.state_dict().items())
    assert torch.equal(
        loaded["optim"]["state"]["weight"]["exp_avg"], optimizer.state[model.weight]["exp_avg"]
    )
    assert checkpoint.part_bytes(path, "model") == 4 * (3 * 2 + 2)


def test_a_resume_gets_the_plain_parts_and_restores_the_shards_into_its_model(
    tmp_path: Path,
) -> None:
    model, optimizer = _model_and_optimizer()
    path = checkpoint.save_sharded(
        tmp_path, 3, checkpoint.ShardedState(model, optimizer), {"trainer": {"step": 3}}, {}
    )
    parts = checkpoint.load_resumable(path)
    assert sorted(parts) == ["sharded", "trainer"]
    fresh = torch.nn.Linear(3, 2)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1.0)
    parts["sharded"].restore(fresh, fresh_optimizer)
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)
    assert fresh_optimizer.param_groups[0]["lr"] == 1e-3
    # A plain (format 2) checkpoint resumes as before: its parts, no shards.
    plain = checkpoint.save(tmp_path, 4, {"model": model.state_dict(), "trainer": {}}, {})
    assert sorted(checkpoint.load_resumable(plain)) == ["model", "trainer"]


@pytest.mark.parametrize("how", ["truncated-shard", "missing-index", "garbage-index"])
def test_a_damaged_sharded_checkpoint_is_refused_naming_the_file(tmp_path: Path, how: str) -> None:
    model, optimizer = _model_and_optimizer()
    path = checkpoint.save_sharded(
        tmp_path, 3, checkpoint.ShardedState(model, optimizer), {"trainer": {}}, {}
    )
    shard, index = path / "sharded" / "__0_0.distcp", path / "sharded" / ".metadata"
    if how == "truncated-shard":
        shard.write_bytes(shard.read_bytes()[:-10])
        expected = "sharded/__0_0.distcp has"
    elif how == "missing-index":
        index.unlink()
        expected = "sharded/.metadata is missing"
    else:
        index.write_bytes(b"garbage!")
        meta = json.loads((path / checkpoint.META_FILE).read_text())
        meta["sharded"]["files"][".metadata"] = 8  # sizes made to match
        (path / checkpoint.META_FILE).write_text(json.dumps(meta))
        expected = "sharded/.metadata is damaged"
    for read in (checkpoint.load_resumable, checkpoint.load):
        with pytest.raises(checkpoint.UnreadableCheckpointError, match=re.escape(expected)):
            read(path)


def test_sharded_parts_cannot_be_shadowed_by_plain_ones(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer()
    with pytest.raises(ValueError, match="'model' is the sharded state's"):
        checkpoint.save_sharded(
            tmp_path, 1, checkpoint.ShardedState(model, optimizer), {"model": {}}, {}
        )
