"""A run killed with SIGKILL resumes from its last checkpoint and continues exactly as
an uninterrupted run (CPU, deterministic, subprocesses of models.train.tiny_run); one whose
newest checkpoint does not load resumes, just as exactly, from the one before."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.train import checkpoint, pretrain, tiny_run
from models.train.callbacks.callback import Callback
from models.train.callbacks.metrics_logger import read_metrics

STEPS = 12
COMPARED = ("loss", "patch_disc_a", "patch_disc_b", "infonce", "grad_norm", "lr", "tokens_seen")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    tiny_run.write_tiny_dataset(root)
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run.write_tiny_dataset(tmp_path_factory.mktemp("samples"))


def _command(data_root: Path, run_root: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "models.train.tiny_run",
        *("--data", str(data_root), "--run-root", str(run_root), "--name", name),
        *("--steps", str(STEPS), "--checkpoint-interval", "3"),
        # Drop path draws from torch's generator: the resumed run must restore it too.
        *("--drop-path", "0.1"),
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_killed_run_resumes_and_replays_the_uninterrupted_losses_exactly(
    data_root: Path, tmp_path: Path
) -> None:
    straight = subprocess.run(
        _command(data_root, tmp_path, "straight"), env=_env(), capture_output=True, text=True
    )
    assert straight.returncode == 0, straight.stderr

    # Slow the victim down (0.3 s per step) so that it is surely killed mid-run.
    command = _command(data_root, tmp_path, "killed", "--step-delay", "0.3")
    victim = subprocess.Popen(command, env=_env(), stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "tiny" / "killed" / "checkpoints"
    deadline = time.monotonic() + 120
    while not (checkpoints / "step_6").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)  # somewhere inside step 7 or 8
    assert victim.poll() is None, "the run finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    resumed_from = checkpoint.latest_complete(checkpoints)
    assert resumed_from is not None and resumed_from.name in ("step_6", "step_9")
    killed_records = _records(tmp_path / "tiny" / "killed")
    assert killed_records[-1]["step"] < STEPS

    again = subprocess.run(command, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"resumed from {resumed_from}" in again.stderr

    expected = _records(tmp_path / "tiny" / "straight")
    got = _records(tmp_path / "tiny" / "killed")
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    for want, have in zip(expected, got, strict=True):
        assert {k: have[k] for k in COMPARED} == {k: want[k] for k in COMPARED}, want["step"]

    final_a = torch.load(tmp_path / "tiny" / "straight" / "checkpoints" / "step_12" / "model.pt")
    final_b = torch.load(tmp_path / "tiny" / "killed" / "checkpoints" / "step_12" / "model.pt")
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[name], final_b[name]) for name in final_a)


# -- a damaged newest checkpoint ------------------------------------------------------------


class _Killed(Exception):
    pass


class _KillAfter(Callback):
    """Dies after the loggers wrote step `at`, before the checkpointer runs."""

    def __init__(self, at: int) -> None:
        self.at = at

    def post_step(self, step: int, metrics: dict) -> None:
        if step == self.at:
            raise _Killed


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _damage(path: Path, how: str, marker: Path) -> None:
    part = path / "trainer.pt"
    if how == "truncated":
        part.write_bytes(part.read_bytes()[:-100])
        return
    # planted: code in place of the trainer state, with meta.json's size made to match
    torch.save({"step": 6, "rng": [_Planted(marker)]}, part)
    meta = json.loads((path / checkpoint.META_FILE).read_text())
    meta["sizes"]["trainer"] = part.stat().st_size
    (path / checkpoint.META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["truncated", "planted"])
def test_a_run_whose_newest_checkpoint_does_not_load_resumes_from_the_one_before_exactly(
    data_dir: Path, tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    torch.set_num_threads(1)
    # Drop path draws from torch's generator: the fallback must restore it too.
    straight = pretrain.train(
        tiny_run.tiny_config(data_dir, tmp_path, "straight", 8, drop_path=0.1)
    )
    config = tiny_run.tiny_config(
        data_dir, tmp_path, "damaged", 8, checkpoint_interval=2, keep_last=3, drop_path=0.1
    )
    with pytest.raises(_Killed):
        pretrain.train(config, callbacks=[_KillAfter(7)])
    checkpoints = tmp_path / "tiny" / "damaged" / "checkpoints"
    assert [step for step, _ in checkpoint.list_complete(checkpoints)] == [2, 4, 6]
    marker = tmp_path / "code-ran"
    _damage(checkpoints / "step_6", how, marker)

    with caplog.at_level(logging.WARNING):
        resumed = pretrain.train(config)
    assert not marker.exists()
    assert resumed.resumed_from == checkpoints / "step_4"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"cannot resume from {checkpoints / 'step_6'}: trainer.pt" in w for w in warnings)
    expected = read_metrics(straight.run_dir.metrics_path)
    got = read_metrics(resumed.run_dir.metrics_path)
    assert [r["step"] for r in got] == list(range(1, 9))
    for want, have in zip(expected, got, strict=True):
        assert {k: have[k] for k in COMPARED} == {k: want[k] for k in COMPARED}, want["step"]
    # Training got past step 6 again and wrote a good one in place of the damaged one.
    assert checkpoint.load(checkpoints / "step_6")["trainer"]["step"] == 6
