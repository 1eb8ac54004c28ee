"""Sharded (DCP) checkpoints of real tiny runs under torchrun (2 gloo processes on CPU):
a 2-process checkpoint resumes bit-identically with 2 processes and, resharded, with 1 (on
the same global batches), a 1-process one with 2, a DDP one under FSDP or HSDP and the
reverse; a format 2 checkpoint (whole files, written before sharding) resumes exactly in one
process and under FSDP in two; a rank killed mid-save leaves no step_<N>.

The runs are this file run as a script (`_worker`, below): models.train.tiny_run's config
with a global batch of 8 in microbatches of 2, a checkpoint every 2 steps, and four test
hooks: die after a step (as a preempted job), write a format 2 checkpoint and die, dump the
model and optimizer state right after the resume, and kill one rank inside the save.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

from models.train import checkpoint, dcp_checkpoint, distributed, pretrain, rng, tiny_run
from models.train.callbacks.callback import Callback
from models.train.callbacks.metrics_logger import read_metrics

STEPS = 8
INTERRUPTED_AT = 5  # the run dies after step 5; its newest checkpoint is step_4
EXACT = ("loss", "patch_disc_a", "patch_disc_b", "infonce", "grad_norm", "lr", "tokens_seen")
CLOSE = ("loss", "patch_disc_a", "patch_disc_b", "infonce", "grad_norm")


# -- the worker: one tiny run, in this process or as one rank of torchrun -----------------


class _Preempted(Exception):
    pass


class _DieAfter(Callback):
    """Raises after the loggers wrote step `at`, before the checkpointer runs."""

    def __init__(self, at: int) -> None:
        self.at = at

    def post_step(self, step: int, metrics: dict) -> None:
        if step == self.at:
            raise _Preempted(f"preempted after step {step}")


class _DumpResumedState(Callback):
    """Writes the whole model and optimizer state, as loaded by the resume, to `path`
    (rank 0; gathering it is collective, so every rank runs this)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def pre_train(self) -> None:
        if self.trainer.resumed_from is None:
            raise RuntimeError("the run did not resume")
        module = self.trainer.train_module
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model, optim = get_state_dict(module.model, module.optimizer, options=options)
        if self.trainer.is_main:
            torch.save({"model": model, "optim": optim}, self.path)


class _SaveFormat2AndPreempt(Callback):
    """After step `at` (in one process): writes the checkpoint the trainer wrote before
    sharded ones (format 2: whole model.pt, optim.pt and trainer.pt), then stops."""

    def __init__(self, at: int) -> None:
        self.at = at

    def post_step(self, step: int, metrics: dict) -> None:
        if step != self.at:
            return
        state = dict(self.trainer.train_module.state_dict())
        parts = {
            "model": state.pop("model"),
            "optim": state.pop("optim"),
            "trainer": {
                "step": step,
                "world_size": 1,
                "train_module": state,
                "data_loader": [self.trainer.data_loader.state_dict()],
                "rng": [rng.capture_rng_state()],
            },
        }
        checkpoint.save(self.trainer.run_dir.checkpoints_dir, step, parts, {"world_size": 1})
        raise _Preempted(f"preempted after step {step}")


def _kill_rank_inside_save(step: int, rank: int) -> None:
    """Rank `rank` dies (SIGKILL) right after writing its shard of `step_<step>`, while
    rank 0 waits for it at the barrier before meta.json."""
    real_write = dcp_checkpoint.write

    def write(directory: Path, model, optimizer) -> None:
        real_write(directory, model, optimizer)
        if directory.parent.name.startswith(f".tmp-step_{step}-") and (
            distributed.DistributedEnv.from_environ().rank == rank
        ):
            os.kill(os.getpid(), signal.SIGKILL)

    dcp_checkpoint.write = write


def _worker(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run-root", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--parallelism", default="ddp")
    parser.add_argument("--shard-degree", type=int)
    parser.add_argument("--merge-ranks", type=int, default=0)
    parser.add_argument("--die-after", type=int, default=0)
    parser.add_argument("--dump", type=Path)
    parser.add_argument("--format-2-at", type=int, default=0)
    parser.add_argument("--kill-in-save", nargs=2, type=int, metavar=("STEP", "RANK"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)  # reductions over threads sum in a thread-dependent order
    config = tiny_run.tiny_config(
        args.data,
        args.run_root,
        args.name,
        STEPS,
        global_batch_size=8,
        microbatch_size=2,
        checkpoint_interval=2,
        parallelism=args.parallelism,
        shard_degree=args.shard_degree,
    )
    callbacks: list[Callback] = []
    if args.die_after:
        callbacks.append(_DieAfter(args.die_after))
    if args.dump:
        callbacks.append(_DumpResumedState(args.dump))
    if args.format_2_at:
        callbacks.append(_SaveFormat2AndPreempt(args.format_2_at))
    if args.kill_in_save:
        _kill_rank_inside_save(*args.kill_in_save)
    if args.merge_ranks:
        torch.use_deterministic_algorithms(True)
        tiny_run.build_rank_merged_trainer(config, args.merge_ranks, callbacks).fit()
    else:
        pretrain.train(config, callbacks)


# -- the tests --------------------------------------------------------------------------------


def _run(
    data: Path, run_root: Path, name: str, processes: int, *extra: str
) -> subprocess.CompletedProcess:
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
        launcher += [str(processes)]
    command = [
        *launcher,
        str(Path(__file__).resolve()),
        *("--data", str(data), "--run-root", str(run_root), "--name", name),
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _preempted(result: subprocess.CompletedProcess) -> None:
    assert result.returncode != 0 and "preempted after step" in result.stderr, result.stderr[-4000:]


class _Runs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = tiny_run.write_tiny_dataset(root / "data")
        self.run_root = root / "runs"

    def path(self, name: str) -> Path:
        return self.run_root / "tiny" / name

    def clone(self, source: str, name: str) -> Path:
        """A copy of run `source`'s folder under `name` (to resume it several ways)."""
        shutil.copytree(self.path(source), self.path(name))
        return self.path(name)

    def run(self, name: str, processes: int, *extra: str) -> subprocess.CompletedProcess:
        return _run(self.data, self.run_root, name, processes, *extra)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    """An uninterrupted 2-process DDP run, and one preempted after step 5 (kept untouched
    as `interrupted`; tests resume clones of it)."""
    runs = _Runs(tmp_path_factory.mktemp("dcp"))
    _ok(runs.run("straight", 2))
    _preempted(runs.run("interrupted", 2, "--die-after", str(INTERRUPTED_AT)))
    return runs


def _newest(run: Path) -> Path:
    latest = checkpoint.latest_complete(run / "checkpoints")
    assert latest is not None
    return latest


def _saved_state(path: Path) -> dict:
    """The model and optimizer state of checkpoint `path`, read whole in this process."""
    return checkpoint.load(path, parts=["model", "optim"])


def _assert_equal_states(loaded: dict, saved: dict) -> None:
    assert loaded["model"].keys() == saved["model"].keys()
    for name, tensor in saved["model"].items():
        assert torch.equal(loaded["model"][name], tensor), name
    assert loaded["optim"]["state"].keys() == saved["optim"]["state"].keys()
    for name, state in saved["optim"]["state"].items():
        assert state.keys() == loaded["optim"]["state"][name].keys()
        for key, value in state.items():
            assert torch.equal(loaded["optim"]["state"][name][key], value), (name, key)
    assert loaded["optim"]["param_groups"] == saved["optim"]["param_groups"]


def _assert_same_records(
    got: list[dict], want: list[dict], keys: Sequence[str], tol: float
) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, STEPS + 1))
    for have, expected in zip(got, want, strict=True):
        for key in keys:
            if tol:
                assert have[key] == pytest.approx(expected[key], abs=tol), (expected["step"], key)
            else:
                assert have[key] == expected[key], (expected["step"], key)


def test_a_two_process_checkpoint_is_written_by_both_ranks_and_marked_complete_last(
    runs: _Runs,
) -> None:
    path = _newest(runs.path("interrupted"))
    meta = checkpoint.read_meta(path)
    assert path.name == "step_4" and meta["format"] == checkpoint.SHARDED_FORMAT
    assert meta["world_size"] == 2 and meta["parallelism"] == "ddp"
    assert sorted(meta["sharded"]["files"]) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "sharded", "trainer.pt"]


def test_two_processes_resume_a_two_process_checkpoint_bit_identically(runs: _Runs) -> None:
    run = runs.clone("interrupted", "resumed_on_2")
    resumed = _ok(runs.run("resumed_on_2", 2))
    assert f"resumed from {run / 'checkpoints' / 'step_4'}" in resumed.stderr
    straight = runs.path("straight")
    _assert_same_records(
        read_metrics(run / "metrics.jsonl"), read_metrics(straight / "metrics.jsonl"), EXACT, 0
    )
    want = checkpoint.load(_newest(straight), parts=["model"])["model"]
    got = checkpoint.load(_newest(run), parts=["model"])["model"]
    assert got.keys() == want.keys()
    assert all(torch.equal(got[name], want[name]) for name in want)


def test_one_process_resumes_a_two_process_checkpoint_on_the_same_global_batches(
    runs: _Runs, tmp_path: Path
) -> None:
    run = runs.clone("interrupted", "resumed_on_1")
    saved = _saved_state(_newest(run))
    dump = tmp_path / "loaded.pt"
    resumed = _ok(runs.run("resumed_on_1", 1, "--merge-ranks", "2", "--dump", str(dump)))
    assert "written by 2 ranks, resuming on 1" in resumed.stderr
    _assert_equal_states(torch.load(dump, weights_only=True), saved)
    # One process on both ranks' samples continues the 2-process run to summation order.
    _assert_same_records(
        read_metrics(run / "metrics.jsonl"),
        read_metrics(runs.path("straight") / "metrics.jsonl"),
        CLOSE,
        1e-5,
    )


def test_two_processes_resume_a_one_process_checkpoint(runs: _Runs, tmp_path: Path) -> None:
    _preempted(runs.run("single", 1, "--die-after", str(INTERRUPTED_AT)))
    run = runs.path("single")
    saved = _saved_state(_newest(run))
    assert checkpoint.read_meta(_newest(run))["world_size"] == 1
    dump = tmp_path / "loaded.pt"
    resumed = _ok(runs.run("single", 2, "--dump", str(dump)))
    assert "written by 1 ranks, resuming on 2" in resumed.stderr
    _assert_equal_states(torch.load(dump, weights_only=True), saved)
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == list(range(1, STEPS + 1))
    assert checkpoint.read_meta(_newest(run))["world_size"] == 2


# fsdp: each rank holds half of every parameter and of the AdamW state. hsdp with shard
# groups of 1 rank: both ranks hold all of it (replicated), and DCP writes each tensor once.
@pytest.mark.parametrize(
    "parallelism, layout",
    [("fsdp", ()), ("hsdp", ("--shard-degree", "1"))],
    ids=["fsdp", "hsdp-replicated"],
)
def test_a_ddp_checkpoint_resumes_sharded_and_a_sharded_one_under_ddp(
    runs: _Runs, tmp_path: Path, parallelism: str, layout: tuple[str, ...]
) -> None:
    name = f"ddp_{parallelism}_ddp"
    run = runs.clone("interrupted", name)
    saved_by_ddp = _saved_state(_newest(run))
    dump = tmp_path / "loaded.pt"
    # DDP step_4 -> sharded, preempted again after step 7 (its newest checkpoint: step_6).
    sharded = runs.run(
        name, 2, "--parallelism", parallelism, *layout, "--die-after", "7", "--dump", str(dump)
    )
    _preempted(sharded)
    assert f"parallelism ddp, resuming with {parallelism}" in sharded.stderr
    _assert_equal_states(torch.load(dump, weights_only=True), saved_by_ddp)
    sharded_checkpoint = _newest(run)
    meta = checkpoint.read_meta(sharded_checkpoint)
    assert sharded_checkpoint.name == "step_6" and meta["parallelism"] == parallelism
    saved_sharded = _saved_state(sharded_checkpoint)
    assert saved_sharded["model"].keys() == saved_by_ddp["model"].keys()
    assert all(
        saved_sharded["model"][key].shape == tensor.shape
        for key, tensor in saved_by_ddp["model"].items()
    )
    # Sharded step_6 -> DDP, to the end.
    ddp = _ok(runs.run(name, 2, "--dump", str(dump)))
    assert f"parallelism {parallelism}, resuming with ddp" in ddp.stderr
    _assert_equal_states(torch.load(dump, weights_only=True), saved_sharded)
    # FSDP reduce-scatters the gradients DDP all-reduces: equal to summation order.
    _assert_same_records(
        read_metrics(run / "metrics.jsonl"),
        read_metrics(runs.path("straight") / "metrics.jsonl"),
        CLOSE,
        1e-5,
    )


def test_a_format_2_checkpoint_resumes_exactly_and_under_fsdp_on_two_processes(
    runs: _Runs, tmp_path: Path
) -> None:
    # Written the way checkpoints were before sharding: rank 0's whole files (one process).
    _preempted(runs.run("format_2", 1, "--format-2-at", "3"))
    old = runs.path("format_2") / "checkpoints" / "step_3"
    assert checkpoint.read_meta(old)["format"] == 2 and (old / "model.pt").is_file()
    saved = checkpoint.load(old)
    run = runs.clone("format_2", "format_2_fsdp")
    # One process resumes it exactly as it was written (its own run to the end).
    _ok(runs.run("format_2", 1))
    single = runs.path("format_2")
    _ok(runs.run("single_straight", 1))
    _assert_same_records(
        read_metrics(single / "metrics.jsonl"),
        read_metrics(runs.path("single_straight") / "metrics.jsonl"),
        EXACT,
        0,
    )
    # Two FSDP processes shard the whole state on load.
    dump = tmp_path / "loaded.pt"
    resumed = _ok(runs.run("format_2_fsdp", 2, "--parallelism", "fsdp", "--dump", str(dump)))
    assert f"resumed from {run / 'checkpoints' / 'step_3'}" in resumed.stderr
    loaded = torch.load(dump, weights_only=True)
    assert all(torch.equal(loaded["model"][k], v) for k, v in saved["model"].items())
    numbered, named = saved["optim"], loaded["optim"]
    for group, named_group in zip(numbered["param_groups"], named["param_groups"], strict=True):
        assert group["lr"] == named_group["lr"]
        for number, name in zip(group["params"], named_group["params"], strict=True):
            for key, value in numbered["state"][number].items():
                assert torch.equal(named["state"][name][key], value), (name, key)


def test_a_rank_killed_inside_a_save_leaves_no_step_and_the_run_resumes_before_it(
    runs: _Runs,
) -> None:
    killed = runs.run("killed_in_save", 2, "--kill-in-save", "4", "1")
    assert killed.returncode != 0
    checkpoints = runs.path("killed_in_save") / "checkpoints"
    names = sorted(p.name for p in checkpoints.iterdir())
    assert "step_4" not in names and "step_2" in names, names
    assert any(name.startswith(".tmp-step_4-") for name in names), names
    resumed = _ok(runs.run("killed_in_save", 2))
    assert "removed an incomplete checkpoint" in resumed.stderr
    assert f"resumed from {checkpoints / 'step_2'}" in resumed.stderr
    _assert_same_records(
        read_metrics(runs.path("killed_in_save") / "metrics.jsonl"),
        read_metrics(runs.path("straight") / "metrics.jsonl"),
        EXACT,
        0,
    )


if __name__ == "__main__":
    _worker(sys.argv[1:])
