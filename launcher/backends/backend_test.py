"""The backend interface's own behaviour: a group submitted one by one, job ids, job folders."""

from pathlib import Path

import pytest

from launcher.backends.backend import (
    Backend,
    JobSpec,
    JobState,
    JobStatus,
    SubmissionIncomplete,
    unique_folder,
)
from launcher.registry.client import ImageReference

DIGEST = "sha256:" + "cd" * 32


class _Recorder(Backend):
    """Submits by remembering; the submission of a job named in `refuse` fails."""

    def __init__(self, refuse: str = "") -> None:
        self.refuse = refuse
        self.submitted: list[str] = []

    def submit(self, job: JobSpec) -> str:
        if job.name == self.refuse:
            raise RuntimeError(f"the scheduler refused {job.name}")
        self.submitted.append(job.name)
        return f"id-{job.name}"

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(JobState.UNKNOWN)

    def logs(self, job_id: str) -> str:
        return ""

    def cancel(self, job_id: str) -> None:
        pass

    def follow_hint(self, job_id: str) -> str:
        return ""


def _jobs(tmp_path: Path, names: list[str]) -> list[JobSpec]:
    return [
        JobSpec(
            name=name,
            image=ImageReference("127.0.0.1:5000", "terra-lab", DIGEST),
            registry_url="http://127.0.0.1:5000",
            args=("nano", name, "local"),
            env={},
            secrets=(),
            run_root=tmp_path,
            run_dir=tmp_path / name,
            data_root=tmp_path / "no-data",
            job_dir=tmp_path / ".jobs" / name,
        )
        for name in names
    ]


def test_by_default_an_array_is_submitted_one_by_one_in_order(tmp_path):
    backend = _Recorder()
    ids = backend.submit_array(_jobs(tmp_path, ["nano_a", "nano_b", "nano_c"]), "study")
    assert ids == ["id-nano_a", "id-nano_b", "id-nano_c"]
    assert backend.submitted == ["nano_a", "nano_b", "nano_c"]


def test_a_submission_failing_part_way_names_the_jobs_already_submitted(tmp_path):
    backend = _Recorder(refuse="nano_c")
    jobs = _jobs(tmp_path, ["nano_a", "nano_b", "nano_c", "nano_d"])
    with pytest.raises(SubmissionIncomplete) as incomplete:
        backend.submit_array(jobs, "study")
    assert incomplete.value.submitted == ["id-nano_a", "id-nano_b"]
    assert "the scheduler refused nano_c" in str(incomplete.value)
    assert "jobs already submitted: id-nano_a, id-nano_b" in str(incomplete.value)
    assert backend.submitted == ["nano_a", "nano_b"]  # it stopped: nano_d was not tried


def test_a_first_failing_submission_says_none_was_submitted(tmp_path):
    with pytest.raises(SubmissionIncomplete, match="already submitted: none") as incomplete:
        _Recorder(refuse="nano_a").submit_each(_jobs(tmp_path, ["nano_a", "nano_b"]))
    assert incomplete.value.submitted == []


@pytest.mark.parametrize("job_id", ["nano_a-20260101T000000-abcdef", "12", "12_0", "a.b"])
def test_ids_of_letters_digits_and_separators_are_job_ids(job_id):
    assert _Recorder().job_id_problem(job_id) is None


@pytest.mark.parametrize("job_id", ["../../etc/passwd", "-x", "--help", "a b", "", "x" * 201, "é"])
def test_paths_options_and_odd_characters_are_not_job_ids(job_id):
    assert "is not a job id" in _Recorder().job_id_problem(job_id)


def test_unique_folders_never_repeat(tmp_path):
    folders = [unique_folder(tmp_path / "p") for _ in range(50)]
    assert len(set(folders)) == 50 and all(folder.is_dir() for folder in folders)
