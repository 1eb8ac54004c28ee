"""The sbatch script the Slurm backend writes: resources, requeue, rendezvous, no secret values."""

import dataclasses
import subprocess
from pathlib import Path

import pytest

from launcher.backends.backend import JobSpec
from launcher.backends.slurm import SlurmBackend
from launcher.registry.client import ImageReference

DIGEST = "sha256:" + "ab" * 32


def _job(tmp_path: Path, **overrides) -> JobSpec:
    fields = dict(
        name="nano_smoke",
        image=ImageReference("127.0.0.1:5000", "terra-lab", DIGEST),
        registry_url="http://127.0.0.1:5000",
        args=("nano", "nano_smoke", "slurm", "--launch.num_gpus=2"),
        env={"TERRA_LAB_COMMIT": "c0ffee"},
        secrets=("WANDB_API_KEY",),
        run_root=tmp_path / "runs",
        run_dir=tmp_path / "runs" / "p" / "nano_smoke",
        data_root=tmp_path / "no-data",
        job_dir=tmp_path / "runs" / ".jobs" / "p" / "nano_smoke",
        num_nodes=2,
        procs_per_node=4,
        gpus_per_node=4,
        partitions=("a100", "h100"),
        priority_args=("--nice=200",),
    )
    fields.update(overrides)
    return JobSpec(**fields)


def test_script_requests_nodes_gpus_requeue_and_priority(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "s3cr3t-value")
    backend = SlurmBackend(tmp_path / "slurm.conf", tmp_path / "index")
    job = _job(tmp_path)
    script = backend.batch_script(job, job.job_dir / "run_image.py", "a100")
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    for expected in (
        "--nodes=2",
        "--ntasks-per-node=1",
        "--gpus-per-node=4",
        "--requeue",
        "--partition=a100",
        "--nice=200",
        f"--output={job.job_dir}/slurm-%j.out",
    ):
        assert f"#SBATCH {expected}" in directives
    (export,) = [line for line in directives if "--export=" in line]
    assert "WANDB_API_KEY" in export and "SLURM_CONF" in export
    assert "s3cr3t" not in script


def test_script_derives_the_rendezvous_from_slurm_and_runs_the_image_by_digest(tmp_path):
    backend = SlurmBackend(None, tmp_path / "index")
    job = _job(tmp_path)
    script = backend.batch_script(job, job.job_dir / "run_image.py", "")
    assert 'TERRA_LAB_RDZV_ENDPOINT="${nodes[0]}:$((29500 + SLURM_JOB_ID % 10000))"' in script
    assert "--image terra-lab@" + DIGEST in script
    assert "--env TERRA_LAB_NPROC_PER_NODE=4" in script
    assert "--pass-env TERRA_LAB_RDZV_ENDPOINT" in script
    assert script.rstrip().endswith("-- nano nano_smoke slurm --launch.num_gpus=2")
    assert "--partition" not in script  # no preference: Slurm's default partition
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_cpu_jobs_ask_for_one_core_per_process_and_can_opt_out_of_requeue(tmp_path):
    backend = SlurmBackend(None, tmp_path / "index")
    job = _job(tmp_path, gpus_per_node=0, procs_per_node=2, num_nodes=1, requeue=False)
    script = backend.batch_script(job, job.job_dir / "run_image.py", "debug")
    assert "#SBATCH --cpus-per-task=2" in script
    assert "--gpus-per-node" not in script
    assert "#SBATCH --no-requeue" in script


@pytest.mark.parametrize(
    "name", ["run\n", "nano_smoke\necho pwned", "a b", "../up", "-x", "x" * 200, ""]
)
def test_batch_script_refuses_names_that_would_break_its_lines(tmp_path, name):
    job = dataclasses.replace(_job(tmp_path), name=name)
    with pytest.raises(ValueError, match="job name"):
        SlurmBackend(None, tmp_path / "index").batch_script(job, tmp_path / "r.py", "")


def test_batch_script_refuses_arguments_with_line_breaks(tmp_path):
    job = _job(tmp_path)
    job = dataclasses.replace(job, args=(*job.args, "--trainer.x=1\n#SBATCH --wrap=evil"))
    with pytest.raises(ValueError, match="control characters"):
        SlurmBackend(None, tmp_path / "index").batch_script(job, tmp_path / "r.py", "")


def test_every_sbatch_directive_precedes_the_first_command(tmp_path):
    script = SlurmBackend(None, tmp_path / "index").batch_script(
        _job(tmp_path), tmp_path / "r.py", "debug"
    )
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    directive_rows = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    first_command = next(i for i, line in enumerate(lines[1:], 1) if not line.startswith("#"))
    assert directive_rows == list(range(1, len(directive_rows) + 1))
    assert max(directive_rows) < first_command
