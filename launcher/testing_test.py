"""The e2e tests' waits stop as soon as the job has ended, and show its log."""

import time

import pytest

from launcher import testing
from launcher.backends.backend import JobState, JobStatus


class _Job:
    """A backend with one job that runs for `runs_s` seconds, then ends in `final`."""

    def __init__(self, runs_s: float, final: JobState, log: str) -> None:
        self.ends_at = time.monotonic() + runs_s
        self.final = final
        self.log = log
        self.status_calls = 0

    def status(self, job_id: str) -> JobStatus:
        self.status_calls += 1
        if time.monotonic() < self.ends_at:
            return JobStatus(JobState.RUNNING)
        return JobStatus(self.final, "exit code 1")

    def logs(self, job_id: str) -> str:
        return self.log


def test_a_failed_job_stops_the_wait_at_once_with_its_log():
    job = _Job(0.3, JobState.FAILED, "step 1\nRuntimeError: out of memory\n")
    start = time.monotonic()
    with pytest.raises(AssertionError) as raised:
        testing.wait_while_job_runs(
            job, "42", lambda: False, "a checkpoint", timeout_s=600, status_every_s=0.2
        )
    assert time.monotonic() - start < 5  # not the 600 s the checkpoint could have taken
    message = str(raised.value)
    assert message.startswith("the job ended before a checkpoint; job 42: FAILED exit code 1")
    assert "RuntimeError: out of memory" in message


def test_a_job_the_scheduler_forgot_stops_the_wait_too():
    job = _Job(0.0, JobState.UNKNOWN, "")
    with pytest.raises(AssertionError, match="the job ended before a checkpoint; job 7: UNKNOWN"):
        testing.wait_while_job_runs(job, "7", lambda: False, "a checkpoint", timeout_s=600)


def test_the_wait_returns_once_the_condition_holds_while_the_job_runs():
    job = _Job(600, JobState.FAILED, "")
    ready_at = time.monotonic() + 0.3
    testing.wait_while_job_runs(
        job, "1", lambda: time.monotonic() > ready_at, "a checkpoint", timeout_s=10
    )
    assert job.status_calls >= 1


def test_a_condition_met_just_before_the_end_is_not_a_failure():
    job = _Job(0.0, JobState.COMPLETED, "")
    answers = iter([False, True])  # false at the loop's check, true once the end is seen
    testing.wait_while_job_runs(job, "1", lambda: next(answers), "a checkpoint", timeout_s=10)


def test_a_running_job_that_never_gets_there_times_out_with_its_log():
    job = _Job(600, JobState.FAILED, "still at step 0\n")
    expected = r"(?s)a checkpoint did not come within 0 s.*still at step 0"
    with pytest.raises(AssertionError, match=expected):
        testing.wait_while_job_runs(job, "1", lambda: False, "a checkpoint", timeout_s=0.3)
