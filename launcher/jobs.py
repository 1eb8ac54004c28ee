"""Follow launched jobs: `./tools/bazel run //launcher:jobs -- ACTION CLUSTER JOB_ID`.

status CLUSTER JOB_ID           state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
logs   CLUSTER JOB_ID [-f]      the job's output; -f follows it until the job ends
cancel CLUSTER JOB_ID           stop it

Exit status: 0 done; 2 a wrong cluster or job id (the message says what exists); 1 the
scheduler or the job's files could not be read. TERRA_LAB_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import argparse
import sys
import time

from launcher import clusters
from launcher.image.build import CommandError, CommandLineParser, run_command
from launcher.launch import make_backend
from launcher.workspace import workspace_root


def main(argv: list[str] | None = None) -> int:
    try:
        return run_command("jobs", lambda: _main(argv))
    except KeyboardInterrupt:  # how `logs -f` is stopped
        return 130


def _main(argv: list[str] | None = None) -> int:
    parser = CommandLineParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["status", "logs", "cancel"])
    parser.add_argument("cluster")
    parser.add_argument("job_id")
    parser.add_argument("-f", "--follow", action="store_true")
    args = parser.parse_args(argv)
    settings = clusters.load(workspace_root())
    try:
        backend = make_backend(settings.cluster(args.cluster))
    except clusters.ClusterConfigError as error:
        raise CommandError(str(error), exit_code=2) from error
    if not args.job_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise CommandError(f"{args.job_id!r} is not a job id (launch prints it)", exit_code=2)
    try:
        return _act(backend, args)
    except KeyError as error:  # a job id the backend has no record of
        raise CommandError(str(error.args[0] if error.args else error), exit_code=2) from error


def _act(backend, args: argparse.Namespace) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
