"""End-to-end tests of `train(config)` on the tiny synthetic setup: learning, run files,
non-finite losses, the run-folder lock and config consistency checks."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.train import pretrain, tiny_run
from models.train.callbacks.callback import Callback
from models.train.callbacks.checkpointer import CheckpointerConfig
from models.train.run_dir import RunLockedError
from models.train.train_module import NonFiniteLossError


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # One intra-op thread: on 2 shared cores, 2 spinning threads per process thrash.
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run.write_tiny_dataset(tmp_path_factory.mktemp("data"))


def _records(run_path: Path) -> list[dict]:
    return [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]


def test_the_tiny_loss_falls_over_30_steps_and_the_run_folder_is_complete(
    data_dir: Path, tmp_path: Path
) -> None:
    config = tiny_run.tiny_config(data_dir, tmp_path, "learn", steps=30)
    trainer = pretrain.train(config)
    run = tmp_path / "tiny" / "learn"
    assert trainer.run_dir.path == run and trainer.step == 30
    losses = [record["loss"] for record in _records(run)]
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < 0.97 * first, (first, last)
    assert (run / "config.yaml").exists() and (run / "plots" / "loss.png").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_30"]
    assert not (run / "run.lock").exists()


class _PoisonInfoNCE(Callback):
    """From step `at` on, the InfoNCE term comes out NaN (a forward hook on the loss)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def pre_step(self, step: int) -> None:
        if step == self.at:
            loss = self.trainer.train_module.contrastive
            loss.register_forward_hook(lambda module, args, out: out * float("nan"))


def test_a_non_finite_loss_stops_the_run_naming_step_and_part_and_writes_no_checkpoint(
    data_dir: Path, tmp_path: Path
) -> None:
    config = tiny_run.tiny_config(data_dir, tmp_path, "nan", steps=10)
    config.trainer.callbacks["checkpointer"] = CheckpointerConfig(interval=1, keep_last=10)
    with pytest.raises(NonFiniteLossError, match=r"non-finite infonce at step 4 \(loss=nan") as err:
        pretrain.train(config, callbacks=[_PoisonInfoNCE(at=4)])
    assert err.value.step == 4 and err.value.parts == ["infonce"]
    assert math.isfinite(err.value.values["patch_disc_a"])
    run = tmp_path / "tiny" / "nan"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_1",
        "step_2",
        "step_3",
    ]
    assert [record["step"] for record in _records(run)] == [1, 2, 3]
    assert not (run / "run.lock").exists()


def test_a_run_folder_held_by_a_live_process_is_refused(data_dir: Path, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "models.train.tiny_run",
        *("--data", str(data_dir.parents[2]), "--run-root", str(tmp_path), "--name", "busy"),
        *("--steps", "200", "--step-delay", "0.2"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        lock = tmp_path / "tiny" / "busy" / "run.lock"
        deadline = time.monotonic() + 60
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        config = tiny_run.tiny_config(data_dir, tmp_path, "busy", steps=5)
        with pytest.raises(RunLockedError, match=f"PID {holder.pid}"):
            pretrain.train(config)
    finally:
        holder.kill()
        holder.wait()


def test_patch_sizes_outside_the_encoders_range_are_rejected(
    data_dir: Path, tmp_path: Path
) -> None:
    config = tiny_run.tiny_config(data_dir, tmp_path, "bad", steps=1)
    with pytest.raises(ValueError, match="max_patch_size"):
        dataclasses.replace(
            config, data_loader=dataclasses.replace(config.data_loader, max_patch_size=4)
        )
