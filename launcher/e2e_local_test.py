"""End to end on the `local` cluster through the Docker engine, and what the image holds.

- `nano launch ... local` from a pushed scratch clone reaches COMPLETED with metrics and
  checkpoints (the image pulled by digest from the embedded registry into launcher/services'
  Docker engine, two gloo processes under torchrun);
- `docker run <image> python -c "import models"` works as a non-root user;
- WANDB_API_KEY, set in the launching environment, reaches the job but appears in no layer
  and not in `docker history`.
"""

import hashlib
import json
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from launcher import testing
from launcher.backends.backend import JobSpec, JobState
from launcher.backends.local import LocalBackend
from launcher.image import oci
from launcher.registry.client import ImageReference
from launcher.runtime import run_image

SOURCE = Path(__file__).resolve().parents[1]
PROJECT = "2026_01_01_launcher_e2e"
RUN = "nano_e2e_local"
# Made at run time: a literal here would be in the commit, and the image build refuses
# commits that contain the value of $WANDB_API_KEY.
SECRET = "e2e-wandb-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def env():
    return testing.e2e_environment({"WANDB_API_KEY": SECRET})


@pytest.fixture(scope="module")
def docker_host(env):
    """launcher/services' registry and Docker engine (started here if not running)."""
    with testing.dev_services("registry", "docker") as running:
        yield running["docker"].docker_host


@pytest.fixture(scope="module")
def launched(env, docker_host):
    """One launch of nano on `local`: (workspace, job id, image reference, seconds)."""
    work = testing.scratch_workspace(SOURCE, testing.E2E_ROOT / "ws")
    start = time.monotonic()
    result = testing.run_experiment(
        work,
        "nano",
        ["launch", RUN, "local", "--launch.num_gpus=2",
         f"--trainer.callbacks.wandb.project={PROJECT}", *testing.NANO_SMOKE_OVERRIDES],
        dict(env, DOCKER_HOST=docker_host),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    job_id = re.search(r"job id\s+(\S+)", result.stderr).group(1)
    image = re.search(r"image\s+(\S+@sha256:[0-9a-f]{64})", result.stderr).group(1)
    yield work, job_id, image, time.monotonic() - start
    testing.shutdown_bazel(work, env)


def _docker(docker_host: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        env=dict(os.environ, DOCKER_HOST=docker_host),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_nano_completes_on_the_local_cluster_through_docker(launched):
    work, job_id, image, launch_seconds = launched
    backend = LocalBackend(testing.real_home() / ".cache/terra-lab/jobs/local")
    start = time.monotonic()
    status = testing.wait_for_job(backend, job_id, timeout_s=600)
    print(f"e2e local: launch {launch_seconds:.0f} s, job {time.monotonic() - start:.0f} s more")
    logs = backend.logs(job_id)
    assert status.state is JobState.COMPLETED, testing.job_report(backend, job_id, status)
    assert "[run_image] runtime docker" in logs
    run_dir = work / "runs" / PROJECT / RUN
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 2
    assert (run_dir / "checkpoints" / "step_2").is_dir()
    # The recipe's in-loop evaluation ran inside the container, after the last step.
    assert 0.0 <= json.loads(records[-1])["eval/landcover/knn_accuracy"] <= 1.0
    (run,) = json.loads((run_dir / "provenance.json").read_text())["starts"]
    assert run["world_size"] == 2 and run["image"] == image and run["job_id"] == job_id


def test_the_image_imports_models_as_a_non_root_user(launched, docker_host):
    _, _, image, _ = launched
    result = _docker(
        docker_host, "run", "--rm", image, "python", "-c",
        "import os, models; print(os.getuid(), os.getgid(), models.__file__)",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1000", "1000", "/app/models/__init__.py"]


def test_the_wandb_key_reaches_the_job_but_no_layer_nor_the_history(
    launched, docker_host, monkeypatch
):
    _, _, image, _ = launched
    history = _docker(docker_host, "history", "--no-trunc", image)
    assert history.returncode == 0 and "debootstrap" in history.stdout
    assert SECRET not in history.stdout
    inspect = _docker(docker_host, "image", "inspect", image)
    assert SECRET not in inspect.stdout
    store = oci.BlobStore(testing.real_home() / ".cache" / "terra-lab" / "image" / "oci")
    manifest = json.loads(store.read(image.rsplit("@", 1)[1]))
    for blob in [manifest["config"], *manifest["layers"]]:
        with open(store.path(blob["digest"]), "rb") as f:
            assert SECRET.encode() not in f.read(), blob["digest"]
    # ...yet a job sees it: run_image passes it by name from its own environment (the
    # check compares hashes, so the value is on no command line either).
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    expected = hashlib.sha256(SECRET.encode()).hexdigest()
    check = (
        "import hashlib, os, sys; key = os.environ.get('WANDB_API_KEY', '').encode(); "
        f"sys.exit(0 if hashlib.sha256(key).hexdigest() == '{expected}' else 5)"
    )
    registry, _, reference = image.partition("/")
    code = run_image.main(
        ["--registry", f"http://{registry}", "--image", reference, "--cache", "/tmp/unused",
         "--runtime", "docker", "--docker-host", docker_host, "--pass-env", "WANDB_API_KEY",
         "--", "python", "-c", check]
    )  # fmt: skip
    assert code == 0


def test_a_local_job_reports_running_and_can_be_cancelled(launched, tmp_path):
    # The daemonless path of `local` (bubblewrap on the unpacked image), on a long command.
    _, _, image, _ = launched
    backend = LocalBackend(tmp_path / "index", runtime="bwrap")
    job = JobSpec(
        name="sleeper",
        image=ImageReference.parse(image),
        registry_url="http://127.0.0.1:5000",
        args=("sh", "-c", "echo sleeping as $(id -u); exec sleep 300"),
        env={},
        secrets=(),
        run_root=tmp_path / "runs",
        run_dir=tmp_path / "runs" / "p" / "sleeper",
        data_root=tmp_path / "no-data",
        job_dir=tmp_path / "job",
        runtime="bwrap",
        image_cache=testing.real_home() / ".cache" / "terra-lab" / "image-runtime",
    )
    job_id = backend.submit(job)
    deadline = time.monotonic() + 300
    while "sleeping as" not in backend.logs(job_id):
        status = backend.status(job_id)
        files = sorted(path.name for path in job.job_dir.iterdir())
        context = f"{status} {files} log: {backend.logs(job_id)[-3000:]!r}"
        assert time.monotonic() < deadline, context
        assert status.state is JobState.RUNNING, context
        time.sleep(0.5)
    assert "sleeping as 1000" in backend.logs(job_id)
    backend.cancel(job_id)
    status = testing.wait_for_job(backend, job_id, timeout_s=60)
    assert status.state is JobState.CANCELLED
