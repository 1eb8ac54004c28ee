"""The `slurm` backend: sbatch a job that runs the image by digest on every allocated node.

The batch script (written to the job folder, which lies on the run root's filesystem)
asks for `num_nodes` nodes with one task each and, on GPU clusters, `gpus_per_node` GPUs.
It derives the torchrun rendezvous from Slurm's environment: the first host of
SLURM_JOB_NODELIST at port 29500 + (job id mod 10000), with the job id as rendezvous id;
then `srun` starts run_image.py once per node, which pulls the image by digest and runs the
entrypoint (torchrun with `procs_per_node` processes when there is more than one process).
Each node names itself to torchrun by its own NodeAddr (PET_LOCAL_ADDR, see NODE_RUNNER).

`--requeue`: a preempted or failed-node job goes back to the queue and reruns the same
script; training resumes from the run folder's newest checkpoint. Partitions are tried in
the order given: the first that has enough idle nodes now gets the job; when none has,
Slurm gets the whole list and starts the job wherever it can first.

Secrets: sbatch `--export` lists variable *names*; Slurm copies their values from the
submitting environment into the job, so they are never written into the script or image.

A group of runs (a study) is ONE job array: `sbatch --array=0-<n-1>` of a script whose
`case "$SLURM_ARRAY_TASK_ID"` picks each task's runner arguments and entrypoint arguments.
Slurm gives every task its own job (own SLURM_JOB_ID, so its own rendezvous port and id) and
its own requeue; the launcher names a task `<array id>_<index>`, as scontrol, sacct and
scancel do, and each task logs to `slurm-<array id>_<index>.out` (`%A_%a`) in the array's
folder `<run root>/.jobs/_arrays/<name>/<UTC time>-<hex>/`, next to the script.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from launcher.backends.backend import (
    Backend,
    JobSpec,
    JobState,
    JobStatus,
    SubmissionIncomplete,
    unique_folder,
)
from models.names import names

_STATES = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PREEMPTED,
    "REQUEUE_HOLD": JobState.PREEMPTED,
    "REQUEUE_FED": JobState.PREEMPTED,
    "PREEMPTED": JobState.PREEMPTED,
    "RESIZING": JobState.RUNNING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "CANCELLED": JobState.CANCELLED,
    "FAILED": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
}
# The submitter's variables the job needs besides the secrets.
_EXPORTED = ("PATH", "HOME", "USER", "LANG", "SLURM_CONF", "DOCKER_HOST")
# A job id: digits, or `<array job id>_<task index>` for a task of a job array.
_JOB_ID = re.compile(r"\d+(?:_\d+)?", re.ASCII)
# What an array's script writes once for all its tasks: every field that becomes an #SBATCH
# line or the shared runner, so the tasks of one array must agree on them.
_ARRAY_SHARED_FIELDS = (
    "num_nodes",
    "procs_per_node",
    "gpus_per_node",
    "partitions",
    "priority_args",
    "requeue",
    "secrets",
    "run_root",
)
# The rendezvous and restart variables the script exports for the runner to pass on.
_RENDEZVOUS = ("NNODES", "RDZV_ENDPOINT", "RDZV_ID", "JOB_ID", "RESTART")
# The rendezvous host: the first node at the address Slurm has for it. Node names need not
# resolve through DNS (the dev cluster's devnode1..N do not; on most clusters NodeAddr is
# the host name anyway); without a NodeAddr the name is dialled, as before, and said so.
RENDEZVOUS_HOST_LINES = (
    'rdzv_host="$(scontrol show node -o "${nodes[0]}" | grep -o \'NodeAddr=[^ ]*\' | cut -d= -f2'
    ' || true)"',
    'if [ -z "${rdzv_host}" ]; then',
    '  echo "[terra-lab] Slurm gives no NodeAddr for ${nodes[0]}; the rendezvous dials'
    ' ${nodes[0]}" >&2',
    '  rdzv_host="${nodes[0]}"',
    "fi",
)
# torchrun's own options through its PET_<OPTION> variables: tee each worker's output to the
# console (3: stdout and stderr) with its global rank in front, so `jobs logs` shows every
# rank's lines apart ("1: [rank1]: ..." is node task 1, rank 1). One process alone runs
# without torchrun (the image's entrypoint), and is rank 0.
_RANK_LABEL = ("PET_TEE", "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE")
RANK_LABEL_LINES = (
    "export PET_TEE=3",
    "export TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE='[rank${rank}]: '",
)
# torchrun's c10d rendezvous tells nodes apart by address and agent pid, the address being
# its --local_addr (PET_LOCAL_ADDR) or else the host name. Every node's image runs in a pid
# namespace of its own, where the agent has the same pid (2 under bubblewrap) on every node;
# nodes whose host name is the same (the dev cluster's, all on one host; containers that
# take the host's name) were then one node to it, and the rendezvous waited for the second
# node that had joined already. So each node names itself by its NodeAddr, the address
# Slurm and the other nodes reach it at (the rendezvous host above is node 0's NodeAddr).
_NODE_ADDRESS = ("PET_LOCAL_ADDR",)
NODE_ADDRESS_LINES = (
    'node_addr="$(scontrol show node -o "${SLURMD_NODENAME}" | grep -o \'NodeAddr=[^ ]*\' | cut -d='
    ' -f2)"',
    'if [ -n "${node_addr}" ]; then export PET_LOCAL_ADDR="${node_addr}"; fi',
)
# What srun runs on each node: its address for torchrun, then run_image.py ($0, then its
# arguments) under a container name of its own per node: the dev cluster's nodes share one
# host, and so one Docker engine.
NODE_RUNNER = "; ".join(
    [
        *NODE_ADDRESS_LINES,
        'exec python3 "$0" --name'
        ' "terra-${SLURM_JOB_ID}-${SLURM_RESTART_COUNT:-0}-${SLURMD_NODENAME}" "$@"',
    ]
)


class SlurmError(RuntimeError):
    """A Slurm command failed; the message has its output."""


class SlurmBackend(Backend):
    """sbatch/squeue/scontrol/scancel against one cluster.

    Args:
        slurm_conf: the cluster's slurm.conf (None: Slurm's default lookup).
        index_dir: folder of job-id -> job-folder records (for logs after Slurm forgets a job).
    """

    def __init__(self, slurm_conf: Path | None, index_dir: Path) -> None:
        self.slurm_conf = slurm_conf
        self.index_dir = Path(index_dir)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.slurm_conf:
            env["SLURM_CONF"] = str(self.slurm_conf)
        return env

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.slurm_conf and not Path(self.slurm_conf).is_file():
            # Slurm's tools retry a missing slurm.conf for 60 s, then print three lines.
            raise SlurmError(
                f"Slurm's configuration {self.slurm_conf} (slurm_conf in launcher/clusters.yaml) "
                "is not on this machine, so no such Slurm cluster is reachable from here; run on "
                "a login node of that cluster or point slurm_conf at its slurm.conf"
            )
        try:
            result = subprocess.run(list(command), env=self._env(), capture_output=True, text=True)
        except FileNotFoundError:
            raise SlurmError(
                f"Slurm's `{command[0]}` is not installed here; start the dev cluster "
                "(./tools/bazel run //tools/services -- start slurm) or install slurm-client"
            ) from None
        if check and result.returncode != 0:
            raise SlurmError(
                f"`{shlex.join(command)}` failed: {(result.stderr or result.stdout).strip()}"
            )
        return result

    # -- partitions ------------------------------------------------------------------------

    def partition_info(self) -> dict[str, tuple[bool, int]]:
        """{partition: (up, idle nodes)}."""
        output = self._run("sinfo", "-h", "-o", "%R %a %t %D").stdout
        info: dict[str, tuple[bool, int]] = {}
        for line in output.splitlines():
            name, avail, state, count = line.split()
            up, idle = info.get(name, (False, 0))
            up = up or avail == "up"
            if state.rstrip("*~#") == "idle":
                idle += int(count)
            info[name] = (up, idle)
        return info

    def preflight(self, job_partitions: tuple[str, ...]) -> list[str]:
        try:
            info = self.partition_info()
        except SlurmError as error:
            return [f"the Slurm cluster does not answer: {error}"]
        problems = []
        for partition in job_partitions:
            if partition not in info:
                problems.append(
                    f"unknown Slurm partition {partition!r} (--launch.clusters or clusters.yaml "
                    f"partitions); the cluster has: {', '.join(sorted(info))}"
                )
        return problems

    def choose_partitions(self, preferred: tuple[str, ...], num_nodes: int) -> str:
        """The first partition with enough idle nodes, else all of them (Slurm picks)."""
        if not preferred:
            return ""
        info = self.partition_info()
        for partition in preferred:
            up, idle = info.get(partition, (False, 0))
            if up and idle >= num_nodes:
                return partition
        return ",".join(preferred)

    # -- the batch script ------------------------------------------------------------------

    @staticmethod
    def script_problems(job: JobSpec) -> list[str]:
        """Why `job`'s strings cannot go into a batch script (empty: they can).

        Every user string lands either in an `#SBATCH` line (the job name) or in the
        shell-quoted command line. A line break in either would end that line early: a
        command standing before the `#SBATCH` lines makes Slurm ignore all of them (no
        requeue, no output file, `--export` of the whole environment). So the name must
        pass the one name rule and no argument may hold a control character.
        """
        problems = []
        if problem := names.run_name_problem(job.name):
            problems.append(f"job name: {problem}")
        for value in (*job.args, *job.env.values(), *job.secrets, str(job.job_dir)):
            if problem := names.control_character_problem("job argument", value):
                problems.append(problem)
        return problems

    def _directives(self, job: JobSpec, name: str, output: str, partition: str) -> list[str]:
        directives = [
            f"--job-name={name}",
            f"--nodes={job.num_nodes}",
            "--ntasks-per-node=1",
            f"--output={output}",
            "--open-mode=append",
            "--requeue" if job.requeue else "--no-requeue",
        ]
        if job.gpus_per_node:
            directives.append(f"--gpus-per-node={job.gpus_per_node}")
        else:
            directives.append(f"--cpus-per-task={job.procs_per_node}")
        if partition:
            directives.append(f"--partition={partition}")
        exported = [name for name in (*_EXPORTED, *job.secrets) if name in self._env()]
        directives.append(f"--export={','.join(exported) or 'NONE'}")
        directives += list(job.priority_args)
        return directives

    @staticmethod
    def _start_lines(job_id: str, runner: str, entrypoint_args: str) -> list[str]:
        """From the banner to `srun`: rendezvous from Slurm's environment, one runner per node.

        `job_id` is the shell expression of the id the launcher knows the job by; the
        rendezvous uses SLURM_JOB_ID, which every task of an array has of its own. `runner`
        is the shell words of run_image.py's path and arguments (before `--pass-env`).
        """
        return [
            f'echo "[terra-lab] job {job_id} (restart ${{SLURM_RESTART_COUNT:-0}}) on'
            ' ${SLURM_JOB_NODELIST}"',
            'nodes=($(scontrol show hostnames "${SLURM_JOB_NODELIST}"))',
            *RENDEZVOUS_HOST_LINES,
            'export TERRA_LAB_NNODES="${SLURM_JOB_NUM_NODES}"',
            'export TERRA_LAB_RDZV_ENDPOINT="${rdzv_host}:$((29500 + SLURM_JOB_ID % 10000))"',
            'export TERRA_LAB_RDZV_ID="${SLURM_JOB_ID}"',
            f'export TERRA_LAB_JOB_ID="{job_id}"',
            'export TERRA_LAB_RESTART="${SLURM_RESTART_COUNT:-0}"',
            *RANK_LABEL_LINES,
            "# One runner per node; each starts torchrun with the node's processes. --label",
            "# prefixes each line of the log with the node's task number (0: ..., 1: ...).",
            # --export=ALL: sbatch --export limits steps to its list, not to the TERRA_LAB_ above.
            "srun --export=ALL --ntasks-per-node=1 --kill-on-bad-exit=1 --label \\",
            " ".join(
                [
                    f"  bash -c {shlex.quote(NODE_RUNNER)} {runner}",
                    *(f"--pass-env TERRA_LAB_{name}" for name in _RENDEZVOUS),
                    *(f"--pass-env {name}" for name in (*_RANK_LABEL, *_NODE_ADDRESS)),
                    f"-- {entrypoint_args}",
                ]
            ),
            "",
        ]

    def batch_script(self, job: JobSpec, runner: Path, partition: str) -> str:
        if problems := self.script_problems(job):
            raise ValueError("; ".join(problems))
        directives = self._directives(job, job.name, f"{job.job_dir}/slurm-%j.out", partition)
        lines = [
            "#!/bin/bash",
            # Directives first: Slurm stops reading them at the first command line.
            *(f"#SBATCH {directive}" for directive in directives),
            f"# terra-lab job, image {shlex.quote(str(job.image))}",
            "set -euo pipefail",
            *self._start_lines(
                "${SLURM_JOB_ID}",
                shlex.join([str(runner), *job.runner_args()]),
                shlex.join(job.args),
            ),
        ]
        return "\n".join(lines)

    @staticmethod
    def array_problems(jobs: Sequence[JobSpec], name: str) -> list[str]:
        """Why `jobs` cannot be one job array called `name` (empty: they can)."""
        if not jobs:
            return ["a job array needs at least one job"]
        problems = []
        if problem := names.run_name_problem(name):
            problems.append(f"job array name: {problem}")
        for job in jobs:
            problems += SlurmBackend.script_problems(job)
            differing = [
                field
                for field in _ARRAY_SHARED_FIELDS
                if getattr(job, field) != getattr(jobs[0], field)
            ]
            if differing:
                problems.append(
                    f"job {job.name} differs from {jobs[0].name} in {', '.join(differing)}; the "
                    "tasks of one job array share their resources: give every run the same "
                    "launch settings, or submit them one by one"
                )
        return problems

    def array_script(
        self, jobs: Sequence[JobSpec], name: str, runner: Path, partition: str, folder: Path
    ) -> str:
        """One sbatch script for all `jobs`: task i runs jobs[i] (see the module docstring)."""
        if problems := self.array_problems(jobs, name):
            raise ValueError("; ".join(problems))
        first = jobs[0]
        directives = self._directives(first, name, f"{folder}/slurm-%A_%a.out", partition)
        directives.insert(1, f"--array=0-{len(jobs) - 1}")
        cases = []
        for index, job in enumerate(jobs):
            cases += [
                f"  {index})  # {job.name}",
                f"    runner_args=({shlex.join(job.runner_args())})",
                f"    entrypoint_args=({shlex.join(job.args)})",
                "    ;;",
            ]
        lines = [
            "#!/bin/bash",
            *(f"#SBATCH {directive}" for directive in directives),
            f"# terra-lab job array {name}: {len(jobs)} runs, image "
            + shlex.quote(str(first.image)),
            "set -euo pipefail",
            'case "${SLURM_ARRAY_TASK_ID}" in',
            *cases,
            "  *)",
            '    echo "[terra-lab] task ${SLURM_ARRAY_TASK_ID} is not in this array" >&2',
            "    exit 2",
            "    ;;",
            "esac",
            *self._start_lines(
                "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}",
                f'{shlex.quote(str(runner))} "${{runner_args[@]}}"',
                '"${entrypoint_args[@]}"',
            ),
        ]
        return "\n".join(lines)

    # -- the interface ---------------------------------------------------------------------

    def submit(self, job: JobSpec) -> str:
        runner = job.write_runner()
        partition = self.choose_partitions(job.partitions, job.num_nodes)
        script = job.job_dir / "job.sbatch"
        script.write_text(self.batch_script(job, runner, partition))
        result = self._run("sbatch", "--parsable", str(script))
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmError(f"sbatch printed no job id: {result.stdout!r}")
        job.record(job_id, {"backend": "slurm", "partition": partition, "script": str(script)})
        self._write_index(job_id, job.job_dir, self._log_path(job.job_dir, job_id))
        return job_id

    def submit_array(self, jobs: Sequence[JobSpec], name: str) -> list[str]:
        """ONE `sbatch --array=0-<n-1>`; task i runs jobs[i] and has id `<array id>_<i>`.

        Raises:
            ValueError: the jobs cannot share one array (`array_problems`); nothing submitted.
            SlurmError: sbatch refused it; nothing submitted.
            SubmissionIncomplete: the array is queued but its records could not be written;
                it names every task (they run; `jobs status` finds them through Slurm).
        """
        if problems := self.array_problems(jobs, name):
            raise ValueError("; ".join(problems))
        folder = unique_folder(Path(jobs[0].run_root) / ".jobs" / "_arrays" / name)
        runner = jobs[0].write_runner(folder)
        partition = self.choose_partitions(jobs[0].partitions, jobs[0].num_nodes)
        script = folder / "job.sbatch"
        script.write_text(self.array_script(jobs, name, runner, partition, folder))
        result = self._run("sbatch", "--parsable", str(script))
        array_id = result.stdout.strip().split(";")[0]
        if not array_id.isdigit():
            raise SlurmError(f"sbatch printed no job id: {result.stdout!r}")
        task_ids = [f"{array_id}_{index}" for index in range(len(jobs))]
        try:
            for index, (job, task_id) in enumerate(zip(jobs, task_ids, strict=True)):
                log = self._log_path(folder, task_id)
                job.record(
                    task_id,
                    {"backend": "slurm", "partition": partition, "script": str(script),
                     "array": array_id, "task": index, "log": str(log)},
                )  # fmt: skip
                self._write_index(task_id, job.job_dir, log)
        except OSError as error:
            raise SubmissionIncomplete(task_ids, error) from error
        return task_ids

    def _write_index(self, job_id: str, job_dir: Path, log: Path) -> None:
        self.index_dir.mkdir(parents=True, exist_ok=True)
        (self.index_dir / f"{job_id}.json").write_text(
            json.dumps({"job_dir": str(job_dir), "log": str(log)})
        )

    @staticmethod
    def _log_path(job_dir: Path, job_id: str) -> Path:
        return job_dir / f"slurm-{job_id}.out"

    def job_id_problem(self, job_id: str) -> str | None:
        if isinstance(job_id, str) and _JOB_ID.fullmatch(job_id):
            return None
        return (
            f"{job_id!r} is not a job id on a Slurm cluster: digits, or <array id>_<task> "
            "for a run of a job array (launch prints it)"
        )

    def _scontrol_fields(self, job_id: str) -> dict[str, str] | None:
        result = self._run("scontrol", "show", "job", "-o", job_id, check=False)
        said = (result.stdout + result.stderr).lower()
        # Forgotten: "Invalid job id specified" (stderr) for a job, "Job 9_0 not found"
        # (stdout) for an array task while Slurm still holds others of its array.
        forgotten = "invalid job id" in said or f"job {job_id.lower()} not found" in said
        if result.returncode != 0 and not forgotten:
            # Not "Slurm forgot this job" but "Slurm does not answer": saying UNKNOWN here
            # would read as a lost job while the controller is only down.
            raise SlurmError(
                f"the Slurm controller does not answer ({' '.join(result.stderr.split())[:200]}"
                "); start it (./tools/bazel run //tools/services -- start slurm) or check "
                "SLURM_CONF"
            )
        if result.returncode != 0 or not result.stdout.strip():
            return None
        return dict(re.findall(r"(\w+)=(\S*)", result.stdout))

    def status(self, job_id: str) -> JobStatus:
        fields = self._scontrol_fields(job_id)
        if fields is None:
            sacct = self._run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State", check=False)
            state_text = (
                sacct.stdout.strip().split()[0]
                if sacct.returncode == 0 and sacct.stdout.strip()
                else ""
            )
            state_text = state_text or self._completion_record(job_id)
            if not state_text:
                return JobStatus(JobState.UNKNOWN, "Slurm no longer knows this job")
            return JobStatus(_STATES.get(state_text, JobState.UNKNOWN), state_text)
        state_text = fields.get("JobState", "")
        detail = f"{state_text} on {fields.get('Partition', '?')}"
        if fields.get("ExitCode", "0:0") != "0:0":
            detail += f", exit {fields['ExitCode']}"
        if fields.get("Restarts", "0") != "0":
            detail += f", restarts {fields['Restarts']}"
        state = _STATES.get(state_text, JobState.UNKNOWN)
        if state is JobState.PREEMPTED and fields.get("Requeue") == "0":
            # Without --requeue a preempted job does not come back: it ended.
            return JobStatus(JobState.FAILED, f"{detail}, not requeued")
        return JobStatus(state, detail)

    def _completion_record(self, job_id: str) -> str:
        """JobState from a jobcomp/filetxt log (the dev cluster keeps one; no database needed)."""
        config = self._run("scontrol", "show", "config", check=False).stdout
        kind = re.search(r"^JobCompType\s*=\s*(\S+)", config, re.MULTILINE)
        location = re.search(r"^JobCompLoc\s*=\s*(\S+)", config, re.MULTILINE)
        if not kind or kind.group(1) != "jobcomp/filetxt" or not location:
            return ""
        try:
            lines = Path(location.group(1)).read_text().splitlines()
        except OSError:
            return ""
        array_id, _, task = job_id.partition("_")
        # A task of an array has a job id of its own; the record names its array and index.
        if task:
            ours = [line for line in lines if f" ArrayJobId={array_id} ArrayTaskId={task} " in line]
        else:
            ours = [line for line in lines if line.startswith(f"JobId={job_id} ")]
        states = [re.search(r"JobState=(\w+)", line) for line in ours]
        return states[-1].group(1) if states and states[-1] else ""

    def logs(self, job_id: str) -> str:
        fields = self._scontrol_fields(job_id) or {}
        path = Path(fields["StdOut"]) if fields.get("StdOut") else None
        record = self.index_dir / f"{job_id}.json"
        if (path is None or not path.exists()) and record.exists():
            path = Path(json.loads(record.read_text())["log"])
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")

    def cancel(self, job_id: str) -> None:
        self._run("scancel", job_id)

    def follow_hint(self, job_id: str) -> str:
        record = self.index_dir / f"{job_id}.json"
        if record.exists():
            return f"tail -f {json.loads(record.read_text())['log']}"
        return f"scontrol show job {job_id}"
