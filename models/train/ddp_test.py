"""Two gloo processes under torchrun train exactly like one process on the same global
batch: DDP gradient averaging, no_sync microbatches and the global-mean loss."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.train import tiny_run

COMPARED = ("loss", "patch_disc_a", "patch_disc_b", "infonce", "grad_norm")


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_torchrun_processes_match_one_process_with_the_same_global_batch(
    tmp_path: Path,
) -> None:
    data_root = tmp_path / "data"
    tiny_run.write_tiny_dataset(data_root)
    # Global batch 8 in microbatches of 2: each of the 2 ranks runs 2 microbatches, so the
    # first one goes through no_sync and only the second averages gradients.
    common = [
        *("--data", str(data_root), "--run-root", str(tmp_path / "runs")),
        *("--steps", "4", "--global-batch-size", "8", "--microbatch-size", "2"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    ddp = subprocess.run(
        [
            *torchrun,
            "--nproc_per_node",
            "2",
            "-m",
            "models.train.tiny_run",
            *common,
            "--name",
            "ddp",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "models.train.tiny_run",
            *common,
            "--name",
            "one",
            "--merge-ranks",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]

    two = _records(tmp_path / "runs" / "tiny" / "ddp")
    one = _records(tmp_path / "runs" / "tiny" / "one")
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3, 4]
    for a, b in zip(two, one, strict=True):
        for key in COMPARED:
            assert a[key] == pytest.approx(b[key], abs=1e-5), (a["step"], key)
        assert a["tokens"] == b["tokens"] and a["samples"] == b["samples"] == 8
    # Rank 0 alone wrote the run folder: one checkpoint, one metrics line per step.
    assert [p.name for p in (tmp_path / "runs" / "tiny" / "ddp" / "checkpoints").iterdir()] == [
        "step_4"
    ]
