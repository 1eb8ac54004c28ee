"""Pid-file daemons: started in their own session, trusted only while the pid runs our program."""

import fcntl
import os
import subprocess
import sys
import time

import pytest

from launcher.services import process


def test_a_daemon_is_started_recorded_and_stopped_by_its_pid(tmp_path):
    pid_file = tmp_path / "sleep.pid"
    pid = process.start_daemon(
        ["sleep", "60"], pid_file, tmp_path / "sleep.log", ready=lambda: True, timeout_s=10
    )
    assert int(pid_file.read_text()) == pid
    assert os.getsid(pid) == pid  # its own session: a finished caller does not take it down
    assert process.running_pid(pid_file, "sleep") == pid
    assert process.stop_daemon(pid_file, "sleep") is True
    assert process.running_pid(pid_file, "sleep") is None
    assert not pid_file.exists()
    assert process.stop_daemon(pid_file, "sleep") is False  # idempotent


def test_a_pid_file_naming_another_program_is_not_trusted(tmp_path):
    pid_file = tmp_path / "registry.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # our own pid: alive, but not a registry
    assert process.running_pid(pid_file, "docker-registry") is None
    assert process.stop_daemon(pid_file, "docker-registry") is False  # and we are not killed


def test_a_daemon_that_exits_while_starting_reports_its_log(tmp_path):
    with pytest.raises(RuntimeError, match=r"(?s)exited with 7.*boom"):
        process.start_daemon(
            ["sh", "-c", "echo boom; exit 7"],
            tmp_path / "x.pid",
            tmp_path / "x.log",
            ready=lambda: False,
            timeout_s=10,
        )


def test_a_daemon_started_through_a_wrapper_that_never_gets_ready_is_stopped_by_its_name(
    tmp_path,
):
    # `unshare ... sh -c 'exec slurmd'` in miniature: the wrapper execs the daemon in the same
    # process, so after the timeout the pid runs `sleep`, not `sh`, and only that name stops it.
    pid_file = tmp_path / "sleep.pid"
    started = []

    def ready() -> bool:
        started.append(int(pid_file.read_text()))
        return False

    with pytest.raises(RuntimeError, match=r"^sleep did not become ready in 1 s"):
        process.start_daemon(
            ["sh", "-c", 'exec "$@"', "sh", "sleep", "60"],
            pid_file,
            tmp_path / "sleep.log",
            ready=ready,
            timeout_s=1,
            program="sleep",
        )
    pid = started[-1]
    deadline = time.monotonic() + 5
    while process.cmdline(pid) and not process.is_zombie(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process.cmdline(pid) or process.is_zombie(pid)  # stopped, not left running
    assert not pid_file.exists()


def test_a_daemon_ignoring_sigterm_is_killed_after_the_timeout(tmp_path):
    pid_file = tmp_path / "stubborn.pid"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, "
            "signal.SIG_IGN); print('up', flush=True); time.sleep(60)",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert child.stdout.readline() == b"up\n"
    pid_file.write_text(str(child.pid))
    start = time.monotonic()
    assert process.stop_daemon(pid_file, os.path.basename(sys.executable), timeout_s=1) is True
    child.wait(timeout=5)
    assert child.returncode == -9
    assert time.monotonic() - start < 10


def test_a_started_daemon_is_recognised_at_once_every_time(tmp_path):
    # The kernel lets Popen return before /proc/<pid>/cmdline shows the new program; a start
    # must not return inside that window (it did, ~1 in 100 starts under load).
    pid_file = tmp_path / "sleep.pid"
    for _ in range(30):
        pid = process.start_daemon(
            ["sleep", "60"], pid_file, tmp_path / "sleep.log", ready=lambda: True, timeout_s=10
        )
        assert process.running_pid(pid_file, "sleep") == pid
        assert process.stop_daemon(pid_file, "sleep") is True


def test_the_lock_excludes_other_holders_and_is_not_inherited_by_daemons(tmp_path):
    lock_file = tmp_path / "service.lock"
    pid_file = tmp_path / "sleep.pid"

    def try_lock() -> bool:
        with open(lock_file, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

    with process.exclusive_lock(lock_file):
        assert not try_lock()  # another open file (another starter) must wait
        process.start_daemon(
            ["sleep", "60"], pid_file, tmp_path / "sleep.log", ready=lambda: True, timeout_s=10
        )
    try:
        # The daemon outlives the block; had it inherited the descriptor, it would hold the
        # lock for as long as it runs and every later start would hang.
        assert process.running_pid(pid_file, "sleep") is not None
        assert try_lock()
    finally:
        process.stop_daemon(pid_file, "sleep")
