"""Follow launched jobs: `./tools/bazel run //launcher:jobs -- ACTION CLUSTER JOB_ID`.

status CLUSTER JOB_ID           state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED,
                                PREEMPTED, UNKNOWN)
logs   CLUSTER JOB_ID [-f]      the job's output; -f follows it until the job ends
cancel CLUSTER JOB_ID           stop it

A run of a job array (a study launched on Slurm) has the id `<array id>_<index>`.

Exit status: 0 done; 2 a wrong cluster or job id (the message says what exists); 1 the
scheduler or the job's files could not be read. TERRA_LAB_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import sys
import time
import types

from absl import flags

from launcher import clusters, inputs
from launcher.cli import command
from launcher.launch import make_backend
from launcher.workspace import workspace_root

ACTIONS = ("status", "logs", "cancel")

FLAGS = flags.FlagValues()
flags.DEFINE_bool(
    "follow", False, "logs: follow the output until the job ends.", short_name="f",
    flag_values=FLAGS,
)  # fmt: skip


def run(args: types.SimpleNamespace) -> int:
    if args.action not in ACTIONS:
        raise inputs.BadInput(f"unknown action {args.action!r}; use one of {', '.join(ACTIONS)}")
    settings = clusters.load(workspace_root())
    try:
        backend = make_backend(settings.cluster(args.cluster))
    except clusters.ClusterConfigError as error:
        raise inputs.BadInput(str(error)) from error
    # Before the id reaches scontrol/scancel or an index file name: an option ("-x"), a path
    # ("../x") or a malformed Slurm id is refused; `12_3` (a task of a job array) is an id.
    if problem := backend.job_id_problem(args.job_id):
        raise inputs.BadInput(problem)
    try:
        return _act(backend, args)
    except KeyError as error:  # a job id the backend has no record of
        raise inputs.BadInput(str(error.args[0] if error.args else error)) from error
    except KeyboardInterrupt:  # how `logs -f` is stopped
        return 130


def _act(backend, args: types.SimpleNamespace) -> int:
    if args.action == "status":
        status = backend.status(args.job_id)
        print(f"{status.state.value} {status.detail}".rstrip())
        return 0
    if args.action == "cancel":
        backend.cancel(args.job_id)
        print(f"cancel requested for {args.job_id}")
        return 0
    shown = 0
    while True:
        text = backend.logs(args.job_id)
        sys.stdout.write(text[shown:])
        sys.stdout.flush()
        shown = len(text)
        if not args.follow or backend.status(args.job_id).state.finished:
            return 0
        time.sleep(2)


COMMAND = command.Command(
    "jobs",
    FLAGS,
    run,
    positional=("action", "cluster", "job_id"),
    bad_input=(inputs.BadInput,),
    failures=inputs.SAY_WHAT_TO_DO,
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.run_app()
