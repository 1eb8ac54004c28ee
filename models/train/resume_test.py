"""A run killed with SIGKILL resumes from its last checkpoint and continues exactly as
an uninterrupted run (CPU, deterministic, subprocesses of models.train.tiny_run); one whose
newest checkpoint does not load resumes, just as exactly, from the one before. The choice
of checkpoint (`Trainer.resume`) is tested on its own with a counter for a model."""

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.train import checkpoint, distributed, pretrain, tiny_run
from models.train.callbacks.callback import Callback, Phase
from models.train.callbacks.checkpointer import CheckpointerConfig
from models.train.callbacks.metrics_logger import read_metrics
from models.train.run_dir import RunDirConfig
from models.train.trainer import Duration, Trainer, TrainerConfig

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


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(run / "checkpoints" / f"step_{STEPS}", parts=["model"])["model"]


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

    final_a = _final_weights(tmp_path / "tiny" / "straight")
    final_b = _final_weights(tmp_path / "tiny" / "killed")
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


def test_a_planted_sharded_index_does_not_run_and_the_resume_falls_back_to_the_one_before(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.set_num_threads(1)
    config = tiny_run.tiny_config(
        data_dir, tmp_path, "planted_index", 6, checkpoint_interval=2, keep_last=3
    )
    with pytest.raises(_Killed):
        pretrain.train(config, callbacks=[_KillAfter(5)])
    checkpoints = tmp_path / "tiny" / "planted_index" / "checkpoints"
    newest = checkpoints / "step_4"
    assert checkpoint.read_meta(newest)["format"] == checkpoint.SHARDED_FORMAT
    # A careful planter: DCP's index replaced by code, meta.json's record made to match.
    marker = tmp_path / "code-ran"
    index = newest / checkpoint.SHARDED_DIR / ".metadata"
    index.write_bytes(pickle.dumps(_Planted(marker)))  # DCP pickles its index plainly
    meta = json.loads((newest / checkpoint.META_FILE).read_text())
    meta["sharded"]["files"][".metadata"] = index.stat().st_size
    (newest / checkpoint.META_FILE).write_text(json.dumps(meta))

    with caplog.at_level(logging.WARNING):
        resumed = pretrain.train(config)
    assert not marker.exists()
    assert resumed.resumed_from == checkpoints / "step_2" and resumed.step == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"cannot resume from {newest}: sharded/.metadata was refused" in w for w in warnings)


# -- Trainer.resume: which checkpoint, with a counter for a model ---------------------------


class _Counter:
    """A train module whose whole state is the number of steps it took."""

    def __init__(self) -> None:
        self.weights = torch.zeros(2)

    def train_batch(self, batch: int, step: int) -> dict[str, float]:
        self.weights = torch.full((2,), float(step))
        return {"loss": 1.0}

    def state_dict(self) -> dict:
        return {"model": {"weights": self.weights.clone()}}

    def load_state_dict(self, state: dict) -> None:
        self.weights = state["model"]["weights"].clone()


class _Batches:
    """A data loader of 100 numbered batches per epoch that remembers its position."""

    def __init__(self) -> None:
        self.position = 0

    def __iter__(self):
        while self.position < len(self):
            self.position += 1
            yield self.position
        self.position = 0

    def __len__(self) -> int:
        return 100

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


class _OnCheckpoint(Callback):
    """Lists the finished checkpoints each time one was written."""

    phase = Phase.OBSERVE

    def __init__(self) -> None:
        self.finished: dict[int, list[int]] = {}

    def on_checkpoint(self, step: int, path: Path) -> None:
        listed = checkpoint.list_finished(self.trainer.run_dir.checkpoints_dir)
        self.finished[step] = [s for s, _ in listed]


def _counter_trainer(run_root: Path, steps: int, *callbacks: Callback, **cadence) -> Trainer:
    cadence = {"interval": 3, "keep_last": 10, "permanent_interval": None, **cadence}
    config = TrainerConfig(
        run=RunDirConfig(project="p", name="counter", root=str(run_root)),
        max_duration=Duration.steps(steps),
        callbacks={"checkpointer": CheckpointerConfig(**cadence)},
    )
    return config.build(_Counter(), _Batches(), distributed.DistributedEnv(), callbacks)


def _write_counter_checkpoints(run_root: Path, steps: int) -> Path:
    trainer = _counter_trainer(run_root, steps)
    trainer.fit()
    return trainer.run_dir.checkpoints_dir


def _damage_counter(path: Path, how: str) -> None:
    if how == "truncated":
        (path / "trainer.pt").write_bytes((path / "trainer.pt").read_bytes()[:100])
    elif how == "garbage-meta":
        (path / checkpoint.META_FILE).write_text("{not json")
    elif how == "missing-part":
        (path / "trainer.pt").unlink()


@pytest.mark.parametrize("how", ["truncated", "garbage-meta", "missing-part"])
def test_resume_falls_back_past_checkpoints_that_do_not_load(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints = _write_counter_checkpoints(tmp_path, 9)
    _damage_counter(checkpoints / "step_9", how)
    _damage_counter(checkpoints / "step_6", "truncated")
    trainer = _counter_trainer(tmp_path, 9)
    with caplog.at_level(logging.WARNING):
        assert trainer.resume() == checkpoints / "step_3"
    assert trainer.step == 3 and trainer.resumed_from == checkpoints / "step_3"
    assert trainer.train_module.weights.tolist() == [3.0, 3.0]
    assert trainer.data_loader.position == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cannot resume from" in w and "step_9" in w for w in warnings), warnings
    assert any("cannot resume from" in w and "step_6" in w for w in warnings), warnings
    assert any("resuming from" in w and "step_3" in w and "2 newer" in w for w in warnings)


def test_when_no_checkpoint_loads_resume_stops_naming_each_and_the_fix(tmp_path: Path) -> None:
    checkpoints = _write_counter_checkpoints(tmp_path, 6)
    _damage_counter(checkpoints / "step_3", "garbage-meta")
    _damage_counter(checkpoints / "step_6", "truncated")
    with pytest.raises(RuntimeError) as raised:
        _counter_trainer(tmp_path, 6).resume()
    message = str(raised.value)
    assert f"no checkpoint in {checkpoints} loads" in message
    assert "step_6: trainer.pt has" in message and "step_3: meta.json does not read" in message
    assert "Move these step_<N> folders out" in message
    # Nothing was deleted: the decision is the user's.
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_3", "step_6"]


def test_a_planted_pickle_does_not_run_on_resume(tmp_path: Path) -> None:
    checkpoints = _write_counter_checkpoints(tmp_path, 6)
    newest = checkpoints / "step_6"
    marker = tmp_path / "code-ran"
    torch.save({"step": 6, "x": _Planted(marker)}, newest / "trainer.pt")
    meta = json.loads((newest / checkpoint.META_FILE).read_text())
    meta["sizes"]["trainer"] = (newest / "trainer.pt").stat().st_size  # a careful planter
    (newest / checkpoint.META_FILE).write_text(json.dumps(meta))
    trainer = _counter_trainer(tmp_path, 6)
    assert trainer.resume() == checkpoints / "step_3"
    assert not marker.exists()


def test_a_run_without_checkpoints_starts_from_step_zero(tmp_path: Path) -> None:
    trainer = _counter_trainer(tmp_path, 6)
    trainer.run_dir.create()
    assert trainer.resume() is None
    assert trainer.step == 0 and trainer.resumed_from is None


def test_a_trainer_config_with_resume_off_starts_over_despite_checkpoints(tmp_path: Path) -> None:
    _write_counter_checkpoints(tmp_path, 3)
    probe = _OnCheckpoint()
    trainer = _counter_trainer(tmp_path, 3, probe)
    trainer.config.resume = False
    trainer.fit()
    assert trainer.resumed_from is None and trainer.step == 3
    assert list(probe.finished) == [3]  # it trained steps 1-3 again and wrote step_3 again


def test_after_a_fallback_the_resaved_step_replaces_the_bad_one_and_pruning_spares_the_new(
    tmp_path: Path,
) -> None:
    checkpoints = _write_counter_checkpoints(tmp_path, 9)
    _damage_counter(checkpoints / "step_9", "truncated")
    checkpoint.delete(checkpoints / "step_6")
    probe = _OnCheckpoint()
    trainer = _counter_trainer(tmp_path, 9, probe, keep_last=1)
    trainer.fit()
    assert trainer.resumed_from == checkpoints / "step_3"
    # The unreadable step_9 (newer) must not count as the newest kept: step_6 stays.
    assert probe.finished[6] == [6, 9]
    assert [s for s, _ in checkpoint.list_complete(checkpoints)] == [9]
    assert checkpoint.load(checkpoints / "step_9")["trainer"]["step"] == 9
