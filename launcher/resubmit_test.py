"""resubmit_image: a pushed image runs again as a new run, with a registry that still has it
(a stand-in registry on loopback) and a recording backend; nothing is built or gated."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import resubmit
from launcher.backends.backend import Backend, JobSpec, JobState, JobStatus
from launcher.launch import LaunchFailed
from launcher.settings import LaunchSettings

DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
PROJECT = "2026_12_03_repro"


class _Registry(http.server.BaseHTTPRequestHandler):
    """Serves one manifest, of DIGEST in repository terra-lab; 404 for anything else."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == f"/v2/terra-lab/manifests/{DIGEST}":
            body = b'{"schemaVersion": 2}'
            self.send_response(200)
            self.send_header("Docker-Content-Digest", DIGEST)
        else:
            body = b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}'
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _RecordingBackend(Backend):
    """Takes jobs; each status call advances PENDING -> RUNNING -> COMPLETED."""

    def __init__(self) -> None:
        self.jobs: list[JobSpec] = []
        self._states = iter([JobState.PENDING, JobState.RUNNING, JobState.COMPLETED])

    def submit(self, job: JobSpec) -> str:
        self.jobs.append(job)
        return "7"

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(next(self._states, JobState.COMPLETED))

    def logs(self, job_id: str) -> str:
        return "step 1/3 (33%) | loss 3.61\n"

    def cancel(self, job_id: str) -> None:
        pass

    def follow_hint(self, job_id: str) -> str:
        return f"tail -f job-{job_id}.log"


@pytest.fixture
def registry_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def workspace(tmp_path: Path, registry_url: str) -> Path:
    (tmp_path / "launcher").mkdir()
    (tmp_path / "launcher" / "clusters.yaml").write_text(
        f"registries:\n  stand_in:\n    url: {registry_url}\n"
        "clusters:\n  local:\n    backend: local\n    registry: stand_in\n"
        f"    run_root: {tmp_path / 'runs'}\n    data_root: {tmp_path / 'data'}\n"
        f"    image_cache: {tmp_path / 'images'}\n    job_cache: null\n"
    )
    return tmp_path


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> _RecordingBackend:
    recording = _RecordingBackend()
    monkeypatch.setattr(resubmit, "make_backend", lambda cluster: recording)
    return recording


def _image(registry_url: str, digest: str = DIGEST) -> str:
    return f"{registry_url.removeprefix('http://')}/terra-lab@{digest}"


def test_the_image_runs_by_digest_with_the_runs_arguments_and_is_followed_to_its_end(
    workspace: Path, registry_url: str, backend: _RecordingBackend
) -> None:
    lines: list[str] = []
    result = resubmit.resubmit_image(
        "nano",
        "nano_s0_repro1",
        "local",
        ["--seed=0", "--trainer.max_steps=3"],
        image=_image(registry_url),
        commit="c" * 40,
        wandb_project=PROJECT,
        launch=LaunchSettings(num_gpus=0),
        wait=True,
        workspace=workspace,
        poll_seconds=0,
        report=lines.append,
    )
    (job,) = backend.jobs
    assert job.args == ("nano", "nano_s0_repro1", "local", "--seed=0", "--trainer.max_steps=3")
    assert job.image.digest == DIGEST
    assert job.env["TERRA_LAB_COMMIT"] == "c" * 40
    assert job.env["TERRA_LAB_IMAGE"] == _image(registry_url)
    assert job.run_dir == workspace / "runs" / PROJECT / "nano_s0_repro1"
    assert result.state is JobState.COMPLETED and result.job_id == "7"
    assert result.run_dir == job.run_dir
    followed = [line.split("job 7: ")[-1] for line in lines if "job 7:" in line]
    assert followed == ["PENDING", "step 1/3 (33%) | loss 3.61", "RUNNING", "COMPLETED"]


def test_without_waiting_the_submitted_state_is_returned(
    workspace: Path, registry_url: str, backend: _RecordingBackend
) -> None:
    result = resubmit.resubmit_image(
        "nano", "nano_repro1", "local", [], _image(registry_url), "c" * 40, PROJECT,
        workspace=workspace, report=lambda line: None,
    )  # fmt: skip
    assert result.state is JobState.PENDING and len(backend.jobs) == 1


def test_an_image_the_registry_no_longer_has_is_one_line_and_nothing_is_submitted(
    workspace: Path, registry_url: str, backend: _RecordingBackend
) -> None:
    with pytest.raises(LaunchFailed) as raised:
        resubmit.resubmit_image(
            "nano", "nano_repro1", "local", [], _image(registry_url, OTHER_DIGEST), "c" * 40,
            PROJECT, workspace=workspace, report=lambda line: None,
        )  # fmt: skip
    message = str(raised.value)
    assert "\n" not in message and "no longer serves" in message and OTHER_DIGEST in message
    assert "push_image" in message
    assert backend.jobs == []


@pytest.mark.parametrize(
    ("run_name", "image", "cluster", "expected"),
    [
        ("bad name!", None, "local", "run name"),
        ("nano_repro1", "nano:latest", "local", "not an image reference by digest"),
        ("nano_repro1", None, "moon", "unknown cluster 'moon'"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_anything_is_submitted(
    workspace: Path,
    registry_url: str,
    backend: _RecordingBackend,
    run_name: str,
    image: str | None,
    cluster: str,
    expected: str,
) -> None:
    with pytest.raises(ValueError, match=expected) as raised:
        resubmit.resubmit_image(
            "nano", run_name, cluster, [], image or _image(registry_url), "c" * 40, PROJECT,
            workspace=workspace, report=lambda line: None,
        )  # fmt: skip
    assert "\n" not in str(raised.value)
    assert backend.jobs == []
