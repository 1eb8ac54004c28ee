"""The sbatch scripts the Slurm backend writes (one job; a job array of runs) and how it reads
job and array-task states, logs and ids, with fake Slurm commands."""

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

from launcher.backends.backend import JobSpec, JobState
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
    assert 'TERRA_LAB_RDZV_ENDPOINT="${rdzv_host}:$((29500 + SLURM_JOB_ID % 10000))"' in script
    assert "--image terra-lab@" + DIGEST in script
    assert "--env TERRA_LAB_NPROC_PER_NODE=4" in script
    assert "--pass-env TERRA_LAB_RDZV_ENDPOINT" in script
    assert script.rstrip().endswith("-- nano nano_smoke slurm --launch.num_gpus=2")
    assert "--partition" not in script  # no preference: Slurm's default partition
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


# -- several nodes: where they meet, what each node runs, whose line a log line is ------------

# run_image.py's stand-in: writes what it was given on this node to <out>/<node>.json.
_RECORDING_RUNNER = """
import json, os, sys
node = os.environ["SLURMD_NODENAME"]
seen = {name: os.environ.get(name) for name in (
    "TERRA_LAB_RDZV_ENDPOINT", "TERRA_LAB_RDZV_ID", "TERRA_LAB_NNODES",
    "PET_TEE", "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE", "PET_LOCAL_ADDR")}
with open(os.path.join(os.environ["RUNNER_OUT"], node + ".json"), "w") as out:
    json.dump({"argv": sys.argv[1:], "env": seen}, out)
print("runner up on", node)
"""


# The dev cluster's two nodes: one host, a loopback address each.
DEV_NODE_ADDRS = {"devnode1": "127.0.0.1", "devnode2": "127.0.0.2"}


def _run_two_node_job(tmp_path: Path, monkeypatch, node_addrs: dict[str, str] | None):
    """The batch script of a 2-node job, run as Slurm would with job id 4242 on devnode1 and
    devnode2: scontrol answers for that allocation (`node_addrs`: each node's NodeAddr, None:
    Slurm shows none); srun runs its command once per node, with SLURMD_NODENAME and
    SLURM_NODEID set, and labels each output line with the task number as --label does."""
    bin_dir = tmp_path / "fake-slurm"
    bin_dir.mkdir()
    addr_cases = "".join(
        f'  {node}) addr=" NodeAddr={address}" ;;\n' for node, address in (node_addrs or {}).items()
    )
    (bin_dir / "scontrol").write_text(
        "#!/bin/sh\n"
        'if [ "$2" = hostnames ]; then printf "devnode1\\ndevnode2\\n"; exit 0; fi\n'
        f'addr=""\ncase "$4" in\n{addr_cases}esac\n'
        'if [ "$2" = node ]; then echo "NodeName=$4 Arch=x86_64${addr} State=IDLE"; exit 0; fi\n'
        "exit 1\n"
    )
    (bin_dir / "srun").write_text(
        "#!/bin/bash\n"
        'while [ "${1#--}" != "$1" ]; do shift; done  # srun options\n'
        "for task in 0 1; do\n"
        '  SLURMD_NODENAME="devnode$((task + 1))" SLURM_NODEID=$task "$@" | sed "s/^/$task: /"\n'
        "done\n"
    )
    for fake in bin_dir.iterdir():
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    runner = tmp_path / "run_image.py"
    runner.write_text(_RECORDING_RUNNER)
    (tmp_path / "out").mkdir()
    job = _job(tmp_path, procs_per_node=1, gpus_per_node=0)
    script = SlurmBackend(None, tmp_path / "index").batch_script(job, runner, "")
    env = dict(
        os.environ,
        SLURM_JOB_ID="4242",
        SLURM_JOB_NODELIST="devnode[1-2]",
        SLURM_JOB_NUM_NODES="2",
        RUNNER_OUT=str(tmp_path / "out"),
    )
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    seen = {
        node: json.loads((tmp_path / "out" / f"{node}.json").read_text())
        for node in ("devnode1", "devnode2")
    }
    return result, seen


def test_two_nodes_meet_at_the_first_nodes_address_from_slurm_not_its_name(tmp_path, monkeypatch):
    # The dev cluster's node names resolve through no DNS; Slurm knows their address.
    result, seen = _run_two_node_job(tmp_path, monkeypatch, DEV_NODE_ADDRS)
    for node in ("devnode1", "devnode2"):
        env = seen[node]["env"]
        assert env["TERRA_LAB_RDZV_ENDPOINT"] == f"127.0.0.1:{29500 + 4242}"
        assert env["TERRA_LAB_RDZV_ID"] == "4242" and env["TERRA_LAB_NNODES"] == "2"
    assert "NodeAddr" not in result.stderr


def test_each_node_tells_torchrun_its_own_address_from_slurm(tmp_path, monkeypatch):
    # torchrun tells rendezvous nodes apart by address and agent pid; in the nodes' images
    # the agents' pids are equal, and the dev nodes share a host name: only the address
    # Slurm has for each node (PET_LOCAL_ADDR: torchrun's --local_addr) sets them apart.
    _, seen = _run_two_node_job(tmp_path, monkeypatch, DEV_NODE_ADDRS)
    assert {node: seen[node]["env"]["PET_LOCAL_ADDR"] for node in seen} == DEV_NODE_ADDRS
    assert "--pass-env PET_LOCAL_ADDR" in " ".join(seen["devnode1"]["argv"])


def test_without_node_addresses_torchrun_names_each_node_by_its_host_name(tmp_path, monkeypatch):
    _, seen = _run_two_node_job(tmp_path, monkeypatch, node_addrs=None)
    assert {node: seen[node]["env"]["PET_LOCAL_ADDR"] for node in seen} == {
        "devnode1": None,
        "devnode2": None,
    }


def test_without_a_node_address_the_rendezvous_dials_the_node_name_and_says_so(
    tmp_path, monkeypatch
):
    result, seen = _run_two_node_job(tmp_path, monkeypatch, node_addrs=None)
    assert seen["devnode2"]["env"]["TERRA_LAB_RDZV_ENDPOINT"] == f"devnode1:{29500 + 4242}"
    assert "Slurm gives no NodeAddr for devnode1; the rendezvous dials devnode1" in result.stderr


def test_each_node_runs_the_image_under_a_container_name_of_its_own(tmp_path, monkeypatch):
    # Two dev nodes share one host and so one Docker engine: one name each, or one fails.
    _, seen = _run_two_node_job(tmp_path, monkeypatch, DEV_NODE_ADDRS)
    names = {node: seen[node]["argv"][seen[node]["argv"].index("--name") + 1] for node in seen}
    assert names == {"devnode1": "terra-4242-0-devnode1", "devnode2": "terra-4242-0-devnode2"}
    for node in seen:
        argv = seen[node]["argv"]
        assert argv[argv.index("--") + 1 :] == [
            "nano",
            "nano_smoke",
            "slurm",
            "--launch.num_gpus=2",
        ]


def test_log_lines_carry_the_node_task_and_torchrun_is_told_to_prefix_the_global_rank(
    tmp_path, monkeypatch
):
    result, seen = _run_two_node_job(tmp_path, monkeypatch, DEV_NODE_ADDRS)
    assert "0: runner up on devnode1\n1: runner up on devnode2\n" in result.stdout
    for node in seen:
        # torchrun reads its options from PET_<OPTION>: --tee 3 copies each worker's stdout
        # and stderr to the console, with ${rank} (the global rank) in front of every line.
        env = seen[node]["env"]
        assert env["PET_TEE"] == "3"
        assert env["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] == "[rank${rank}]: "


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


# -- job arrays: one sbatch for a group of runs --------------------------------------------


def _runs(tmp_path: Path, count: int = 2) -> list[JobSpec]:
    """`count` runs of one study: same resources, own run name, run folder, job folder, seed."""
    jobs = []
    for seed in range(count):
        run = f"nano_s{seed}"
        jobs.append(
            _job(
                tmp_path,
                name=run,
                args=("nano", run, "slurm", f"--seed={seed}"),
                run_dir=tmp_path / "runs" / "p" / run,
                job_dir=tmp_path / "runs" / ".jobs" / "p" / run / "20260101T000000-abcdef",
            )
        )
    return jobs


FORGOTTEN_JOB = "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1"
# Slurm 22 about an array task it no longer holds while it still holds others of the array:
# on stdout, exit 1 (the dev cluster printed this for 9_0 once 9_10 and 9_11 had ended).
FORGOTTEN_TASK = 'echo "Job $4 not found"; exit 1'


def _fake_slurm(
    tmp_path: Path,
    monkeypatch,
    scontrol_job: str = "",
    jobcomp: str = "",
    forgotten: str = FORGOTTEN_JOB,
) -> Path:
    """sbatch, scontrol, sacct, sinfo and srun stand-ins on PATH; each call is logged.

    sbatch answers array id 12; `scontrol show job` prints `scontrol_job` (none: Slurm has
    forgotten the job); `scontrol show config` names a jobcomp/filetxt log holding `jobcomp`;
    sacct has no database; srun logs its arguments and TERRA_LAB_JOB_ID.
    """
    bin_dir = tmp_path / "fake-slurm"
    bin_dir.mkdir()
    log = tmp_path / "slurm-calls.log"
    (tmp_path / "jobcomp.txt").write_text(jobcomp)
    show_job = f"echo '{scontrol_job}'" if scontrol_job else forgotten
    scripts = {
        "sbatch": 'echo "12;dev"',
        "sinfo": "echo 'debug up idle 1'",
        "sacct": "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1",
        "scontrol": (
            'if [ "$2" = hostnames ]; then echo node1; exit 0; fi\n'
            'if [ "$2" = node ]; then echo "NodeName=$4 NodeAddr=10.0.0.1 State=IDLE"; exit 0; fi\n'
            'if [ "$2" = config ]; then\n'
            "  echo 'JobCompType             = jobcomp/filetxt'\n"
            f"  echo 'JobCompLoc              = {tmp_path / 'jobcomp.txt'}'\n"
            "  exit 0\n"
            "fi\n" + show_job
        ),
        "srun": 'printf "%s\\n" "TERRA_LAB_JOB_ID=$TERRA_LAB_JOB_ID" "$@" > "$SRUN_LOG"',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\necho {name} "$@" >> {log}\n{body}\n')
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def test_an_array_script_asks_for_one_task_per_run_with_a_log_each_and_requeue(tmp_path):
    jobs = _runs(tmp_path, 3)
    folder = tmp_path / "array"
    script = SlurmBackend(None, tmp_path / "index").array_script(
        jobs, "study_x", folder / "run_image.py", "a100", folder
    )
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    for expected in (
        "--job-name=study_x",
        "--array=0-2",
        f"--output={folder}/slurm-%A_%a.out",
        "--requeue",
        "--nodes=2",
        "--gpus-per-node=4",
        "--partition=a100",
    ):
        assert f"#SBATCH {expected}" in directives
    # Each task's case holds its own run: entrypoint arguments and writable run folder.
    for index, job in enumerate(jobs):
        case = script[script.index(f"  {index})  # {job.name}") :].split(";;")[0]
        assert f"entrypoint_args=(nano nano_s{index} slurm --seed={index})" in case
        assert f"--writable {job.run_dir}" in case
    assert 'export TERRA_LAB_JOB_ID="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"' in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def _run_task(script: str, tmp_path: Path, task: int) -> subprocess.CompletedProcess[str]:
    """Run the array script as Slurm would run task `task` (job id 13 of array 12)."""
    env = dict(
        os.environ,
        SLURM_ARRAY_JOB_ID="12",
        SLURM_ARRAY_TASK_ID=str(task),
        SLURM_JOB_ID=str(13 + task),
        SLURM_JOB_NODELIST="node1",
        SLURM_JOB_NUM_NODES="1",
        SRUN_LOG=str(tmp_path / "srun.log"),
    )
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)


def test_each_array_task_runs_its_own_run_under_the_task_id(tmp_path, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch)
    jobs = _runs(tmp_path, 2)
    script = SlurmBackend(None, tmp_path / "index").array_script(
        jobs, "study_x", tmp_path / "run_image.py", "", tmp_path
    )
    for task in (0, 1):
        assert _run_task(script, tmp_path, task).returncode == 0
        srun = (tmp_path / "srun.log").read_text().splitlines()
        assert srun[0] == f"TERRA_LAB_JOB_ID=12_{task}"
        assert srun[srun.index("--") + 1 :] == ["nano", f"nano_s{task}", "slurm", f"--seed={task}"]
        assert srun[srun.index("--writable") + 1] == str(jobs[task].run_dir)
    outside = _run_task(script, tmp_path, 2)
    assert outside.returncode == 2 and "task 2 is not in this array" in outside.stderr


def test_runs_with_different_resources_cannot_share_an_array(tmp_path, monkeypatch):
    log = _fake_slurm(tmp_path, monkeypatch)
    first, second = _runs(tmp_path, 2)
    second = dataclasses.replace(second, gpus_per_node=8)
    with pytest.raises(ValueError, match="nano_s1 differs from nano_s0 in gpus_per_node"):
        SlurmBackend(None, tmp_path / "index").submit_array([first, second], "study_x")
    assert not log.exists()  # nothing reached Slurm


def test_submit_array_is_one_sbatch_whose_tasks_have_ids_logs_and_records(tmp_path, monkeypatch):
    calls = _fake_slurm(tmp_path, monkeypatch)
    backend = SlurmBackend(None, tmp_path / "index")
    jobs = _runs(tmp_path, 2)
    ids = backend.submit_array(jobs, "study_x")
    assert ids == ["12_0", "12_1"]
    (sbatch,) = [line for line in calls.read_text().splitlines() if line.startswith("sbatch")]
    script = Path(sbatch.split()[-1])
    assert script.parent.parent == tmp_path / "runs" / ".jobs" / "_arrays" / "study_x"
    assert "#SBATCH --array=0-1" in script.read_text()
    for index, (job, job_id) in enumerate(zip(jobs, ids, strict=True)):
        log = script.parent / f"slurm-{job_id}.out"
        log.write_text(f"step 1 of task {index}\n")
        # Slurm has forgotten the task (the fake scontrol says so): the record finds its log.
        assert backend.logs(job_id) == f"step 1 of task {index}\n"
        assert backend.follow_hint(job_id) == f"tail -f {log}"
        record = json.loads((job.job_dir / "job.json").read_text())
        assert record["job_id"] == job_id and record["array"] == "12" and record["task"] == index


@pytest.mark.parametrize(
    ("fields", "state", "detail"),
    [
        ("JobState=PREEMPTED Partition=debug Requeue=1", JobState.PREEMPTED, "PREEMPTED"),
        (
            "JobState=REQUEUED Partition=debug Requeue=1 Restarts=1",
            JobState.PREEMPTED,
            "restarts 1",
        ),
        ("JobState=PREEMPTED Partition=debug Requeue=0", JobState.FAILED, "not requeued"),
        ("JobState=RUNNING Partition=debug Requeue=1", JobState.RUNNING, "RUNNING on debug"),
    ],
)
def test_a_preempted_task_reads_preempted_while_slurm_will_run_it_again(
    tmp_path, monkeypatch, fields, state, detail
):
    calls = _fake_slurm(tmp_path, monkeypatch, scontrol_job=f"JobId=13 ArrayJobId=12 {fields}")
    status = SlurmBackend(None, tmp_path / "index").status("12_1")
    assert status.state is state and detail in status.detail
    assert "scontrol show job -o 12_1" in calls.read_text()


@pytest.mark.parametrize("forgotten", [FORGOTTEN_JOB, FORGOTTEN_TASK])
def test_a_forgotten_task_is_found_in_the_completion_log_by_its_array_and_index(
    tmp_path, monkeypatch, forgotten
):
    jobcomp = (
        "JobId=14 UserId=u(1) Name=study_x JobState=FAILED EligibleTime=x "
        "ArrayJobId=12 ArrayTaskId=0 DerivedExitCode=0:0 ExitCode=1:0 \n"
        "JobId=12 UserId=u(1) Name=study_x JobState=COMPLETED EligibleTime=x "
        "ArrayJobId=12 ArrayTaskId=1 DerivedExitCode=0:0 ExitCode=0:0 \n"
        "JobId=15 UserId=u(1) Name=nano_a JobState=CANCELLED EligibleTime=x "
        "DerivedExitCode=0:0 ExitCode=0:0 \n"
    )
    _fake_slurm(tmp_path, monkeypatch, jobcomp=jobcomp, forgotten=forgotten)
    backend = SlurmBackend(None, tmp_path / "index")
    assert backend.status("12_0").state is JobState.FAILED
    assert backend.status("12_1").state is JobState.COMPLETED
    assert backend.status("15").state is JobState.CANCELLED
    assert backend.status("12_2").state is JobState.UNKNOWN


@pytest.mark.parametrize("job_id", ["12", "12_0", "4294967_17"])
def test_job_ids_and_array_task_ids_are_slurm_job_ids(tmp_path, job_id):
    assert SlurmBackend(None, tmp_path).job_id_problem(job_id) is None


@pytest.mark.parametrize("job_id", ["-x", "--help", "12_", "_1", "12_1_2", "../x", "12;id", "١٢"])
def test_anything_else_is_not_a_slurm_job_id(tmp_path, job_id):
    assert "is not a job id" in SlurmBackend(None, tmp_path).job_id_problem(job_id)
