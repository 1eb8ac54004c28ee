"""Tests for the run folder layout and its single-writer lock."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from models.train import run_dir

_HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from models.train import run_dir
    lock = run_dir.RunLock(Path(sys.argv[1])).acquire()
    print("locked", flush=True)
    time.sleep(60)
    """
)


def _start_holder(path: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_run_folder_is_root_project_name_with_the_documented_subfolders(tmp_path: Path) -> None:
    directory = run_dir.RunDirConfig(project="proj", name="run-1", root=str(tmp_path)).build()
    directory.create()
    assert directory.path == tmp_path / "proj" / "run-1"
    for sub in ("checkpoints", "wandb", "plots"):
        assert (directory.path / sub).is_dir()
    assert directory.metrics_path.name == "metrics.jsonl"
    assert directory.config_path.name == "config.yaml"


@pytest.mark.parametrize("field, value", [("project", "a/b"), ("name", ".."), ("name", "")])
def test_run_names_that_could_escape_the_folder_are_rejected(field: str, value: str) -> None:
    kwargs = {"project": "p", "name": "n", field: value}
    with pytest.raises(ValueError, match=f"RunDirConfig.{field}"):
        run_dir.RunDirConfig(**kwargs)


def test_lock_records_this_pid_and_is_removed_on_release(tmp_path: Path) -> None:
    with run_dir.RunLock(tmp_path) as lock:
        assert lock.held
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not lock.path.exists()


def test_a_second_lock_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with run_dir.RunLock(tmp_path):
        with pytest.raises(run_dir.RunLockedError, match=f"PID {os.getpid()}"):
            run_dir.RunLock(tmp_path).acquire()


def test_a_live_holder_blocks_the_run_with_its_pid_in_the_error(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path)
    try:
        with pytest.raises(run_dir.RunLockedError, match=f"in use by PID {holder.pid}"):
            run_dir.RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == holder.pid  # stale file
    with run_dir.RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_a_stale_lock_file_left_by_a_dead_pid_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run.lock").write_text(json.dumps({"pid": dead.pid, "host": "h", "since": 0}))
    with run_dir.RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
