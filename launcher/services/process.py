"""Daemons we start ourselves: one pid file each, stopped by that pid and nothing else.

A pid file alone can lie (the daemon died and the number was reused), so a pid counts as
ours only while /proc/<pid>/cmdline still starts with the program we launched. Stopping
never matches processes by name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_SYSTEM_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin")


def program(name: str) -> str:
    """Absolute path of `name`: $PATH first, then the sbin directories a test's PATH lacks."""
    path = os.environ.get("PATH", "")
    found = shutil.which(name, path=os.pathsep.join([path, *_SYSTEM_DIRS]))
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (looked in $PATH and {_SYSTEM_DIRS})")
    return found


@contextlib.contextmanager
def exclusive_lock(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_file` (created if missing) for the `with` block.

    A service's check-install-start sequence runs under it: two launches on a fresh machine
    would otherwise both find no daemon and both start one, and the loser (which cannot bind
    the port) would leave its pid in the pid file and the winner running as an orphan. The
    kernel drops the lock when its holder exits, however it exits, so a crash leaves nothing
    to clean up. Daemons do not inherit it: Popen closes every other descriptor.
    """
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def check_proc_is_ours() -> None:
    """Refuse to judge pids through a /proc that belongs to another pid namespace.

    Bazel's linux-sandbox runs a test in a fresh pid namespace but leaves the host's /proc
    mounted, so /proc/<pid> there describes an unrelated host process. Pid-file checks would
    then silently answer for the wrong process.
    """
    try:
        proc_self = Path("/proc/self").resolve().name
    except OSError:
        proc_self = ""
    if proc_self != str(os.getpid()):
        raise RuntimeError(
            f"/proc belongs to another pid namespace (/proc/self is {proc_self!r}, our pid is "
            f"{os.getpid()}): run this outside a pid-namespace sandbox (Bazel tests that manage "
            'daemons need tags = ["local"])'
        )


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def running_pid(pid_file: Path, program: str) -> int | None:
    """The pid in `pid_file` if that process is alive and runs `program` (a basename)."""
    try:
        pid = int(Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        return None
    check_proc_is_ours()
    argv = cmdline(pid)
    if not argv or is_zombie(pid):
        return None
    if os.path.basename(argv[0]) != program:
        return None
    return pid


def start_daemon(
    argv: list[str],
    pid_file: Path,
    log_file: Path,
    ready: Callable[[], bool],
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
    user: str | None = None,
    program: str | None = None,
) -> int:
    """Start `argv` in the foreground of a new session, record its pid, wait until `ready()`.

    The daemon gets its own session so that the caller's terminal or test runner ending does
    not take it down; it is stopped only through `stop_daemon(pid_file)`. `program` is the
    daemon's name once it runs (default: argv[0]'s), for an argv that starts with a wrapper
    that execs it in the same process (`unshare ... slurmd`): a daemon that fails to become
    ready is stopped under that name.
    """
    program = program or os.path.basename(argv[0])
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise RuntimeError(
                f"{program} exited with {process.returncode} while starting; "
                f"last lines of {log_file}:\n{tail(log_file)}"
            )
        # The kernel wakes Popen (its close-on-exec pipe, or vfork) before the new program's
        # arguments are published in /proc/<pid>/cmdline; until they are, running_pid() cannot
        # recognise the daemon, so it is not started yet as far as callers can tell.
        if cmdline(process.pid) and ready():
            return process.pid
        time.sleep(0.05)
    stop_daemon(pid_file, program)
    raise RuntimeError(
        f"{program} did not become ready in {timeout_s:.0f} s; "
        f"last lines of {log_file}:\n{tail(log_file)}"
    )


def stop_daemon(pid_file: Path, program: str, timeout_s: float = 30.0) -> bool:
    """SIGTERM the daemon of `pid_file`, SIGKILL after `timeout_s`; True if one was running."""
    pid = running_pid(pid_file, program)
    if pid is None:
        Path(pid_file).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running_pid(pid_file, program) is None:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        while running_pid(pid_file, program) is not None:
            time.sleep(0.1)
    Path(pid_file).unlink(missing_ok=True)
    return True


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
