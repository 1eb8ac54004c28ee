"""LocalBackend.preflight: a container runtime exists before anything is pushed or submitted."""

import os

import pytest

from launcher.backends import local
from launcher.backends.local import LocalBackend


@pytest.fixture
def no_engine(monkeypatch):
    """No Docker engine answers anywhere."""
    monkeypatch.setattr(local, "find_docker_host", lambda: None)


@pytest.fixture
def path_dir(tmp_path, monkeypatch):
    """The only folder on PATH: `which bwrap` finds what a test puts there, nothing else."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def _program(folder, name, script):
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def test_an_engine_that_answers_is_enough(monkeypatch):
    monkeypatch.setattr(local, "find_docker_host", lambda: "unix:///tmp/engine.sock")
    monkeypatch.setattr(local, "_ensure_bubblewrap", lambda: pytest.fail("bwrap not needed"))
    assert LocalBackend("/unused", runtime="auto").preflight(()) == []
    assert LocalBackend("/unused", runtime="docker").preflight(()) == []


def test_runtime_docker_without_an_engine_says_how_to_start_one(no_engine):
    (problem,) = LocalBackend("/unused", runtime="docker").preflight(())
    assert "asks for runtime docker, but no Docker engine answers" in problem
    assert problem.endswith("start one: ./tools/bazel run //tools/services -- start docker")


def test_auto_without_an_engine_uses_a_working_bwrap(no_engine, path_dir, monkeypatch):
    _program(path_dir, "bwrap", f'echo "$@" > {path_dir}/probe-args\n')
    monkeypatch.setattr(local.packages, "ensure_installed", lambda needs: pytest.fail("installed"))
    assert LocalBackend("/unused", runtime="auto").preflight(()) == []
    # The probe unshares what run_image does for an image with a non-root user.
    probe = (path_dir / "probe-args").read_text().split()
    assert probe[:4] == ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--ro-bind"]


def test_root_installs_bubblewrap_on_demand(no_engine, path_dir, monkeypatch):
    asked = []

    def ensure_installed(needs):
        asked.append(needs)
        _program(path_dir, "bwrap", "exit 0\n")  # what apt-get install bubblewrap provides

    monkeypatch.setattr(local.packages, "ensure_installed", ensure_installed)
    assert LocalBackend("/unused", runtime="bwrap").preflight(()) == []
    assert asked == [{"bwrap": "bubblewrap"}]


def test_a_non_root_user_without_bubblewrap_gets_the_command(no_engine, path_dir, monkeypatch):
    _program(path_dir, "dpkg-query", "exit 1\n")  # dpkg knows no bubblewrap
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    (problem,) = LocalBackend("/unused", runtime="auto").preflight(())
    assert problem == (
        "no Docker engine answers and bubblewrap is not installed; install it as root: "
        "sudo apt-get update && sudo apt-get install -y bubblewrap "
        "(or start Docker: ./tools/bazel run //tools/services -- start docker)"
    )


def test_a_bwrap_the_kernel_stops_is_reported_with_the_fix(no_engine, path_dir, monkeypatch):
    _program(
        path_dir, "bwrap", "echo 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    (problem,) = LocalBackend("/unused", runtime="auto").preflight(())
    assert problem.startswith(
        "bwrap cannot make a sandbox on this machine (bwrap: No permissions to create new "
        "namespace); allow unprivileged user namespaces"
    )


class _FakeEngine:
    def __init__(self, state_dir, fails=False):
        self.state_dir = state_dir
        self.fails = fails
        self.started = False

    def start(self):
        if self.fails:
            raise RuntimeError("dockerd exited with 1 while starting; last lines of log:\nboom")
        self.started = True
        return "unix:///engine.sock"


def test_a_cluster_listing_the_docker_service_starts_the_dev_engine(tmp_path, monkeypatch):
    engine = _FakeEngine(tmp_path)
    monkeypatch.setattr(local.services, "docker", lambda: engine)
    answering = lambda: "unix:///engine.sock" if engine.started else None
    monkeypatch.setattr(local, "find_docker_host", answering)
    monkeypatch.setattr(local, "_ensure_bubblewrap", lambda: pytest.fail("bwrap not needed"))
    backend = LocalBackend("/unused", runtime="auto", services=("registry", "docker"))
    assert backend.preflight(()) == []
    assert engine.started


def test_a_dev_engine_that_does_not_start_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(local.services, "docker", lambda: _FakeEngine(tmp_path, fails=True))
    (problem,) = LocalBackend("/unused", runtime="docker", services=("docker",)).preflight(())
    assert problem == (
        "the dev Docker engine did not start (dockerd exited with 1 while starting; last lines "
        f"of log:); see {tmp_path}/dockerd.log, or drop `docker` from the cluster's services in "
        "launcher/clusters.yaml to run jobs under bubblewrap"
    )


def test_without_the_docker_service_no_engine_is_started(no_engine, monkeypatch):
    monkeypatch.setattr(local.services, "docker", lambda: pytest.fail("no engine to start"))
    monkeypatch.setattr(local, "_ensure_bubblewrap", lambda: [])
    assert LocalBackend("/unused", runtime="auto", services=("registry",)).preflight(()) == []


def test_two_submissions_of_one_run_name_are_two_jobs_with_their_own_files(tmp_path):
    """Launch gives each submission its own folder; the local job id follows it, so `jobs`
    reaches exactly the job it names even for two submissions in the same second."""
    from launcher import launch
    from launcher.backends.backend import JobSpec
    from launcher.registry.client import ImageReference

    backend = LocalBackend(tmp_path / "index", "bwrap")
    ids = []
    for _ in range(2):
        job_dir = launch.new_job_dir(tmp_path / "runs", "2026_11_25_p", "nano_twice")
        job = JobSpec(
            name="nano_twice",
            image=ImageReference("127.0.0.1:9", "terra-lab", "sha256:" + "ab" * 32),
            registry_url="http://127.0.0.1:9",  # closed: each runner fails at once
            args=("nano", "nano_twice", "local"),
            env={},
            secrets=(),
            run_root=tmp_path / "runs",
            run_dir=tmp_path / "runs" / "2026_11_25_p" / "nano_twice",
            data_root=tmp_path / "no-data",
            job_dir=job_dir,
            image_cache=tmp_path / "image-cache",
        )
        ids.append(backend.submit(job))
    assert ids[0] != ids[1]
    folders = [backend._job_dir(job_id) for job_id in ids]
    assert folders[0] != folders[1]
    for job_id, folder in zip(ids, folders, strict=True):
        assert f'"job_id": "{job_id}"' in (folder / "job.json").read_text()
