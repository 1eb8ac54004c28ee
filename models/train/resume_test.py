"""A run killed with SIGKILL resumes from its last checkpoint and continues exactly as
an uninterrupted run (CPU, deterministic, subprocesses of models.train.tiny_run)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.train import checkpoint, tiny_run

STEPS = 12
COMPARED = ("loss", "patch_disc_a", "patch_disc_b", "infonce", "grad_norm", "lr", "tokens_seen")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    tiny_run.write_tiny_dataset(root)
    return root


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
