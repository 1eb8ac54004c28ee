"""Follow launched jobs: `./tools/bazel run //launcher:jobs -- ACTION CLUSTER JOB_ID`.

status CLUSTER JOB_ID           state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
logs   CLUSTER JOB_ID [-f]      the job's output; -f follows it until the job ends
cancel CLUSTER JOB_ID           stop it

Exit status: 0 done; 2 a wrong cluster or job id (the message says what exists); 1 the
scheduler or the job's files could not be read. TERRA_LAB_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from launcher import clusters
from launcher.launch import make_backend


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, as every tool here
        self.exit(2, f"jobs: {message} (usage: jobs status|logs|cancel CLUSTER JOB_ID [-f])\n")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    except KeyError as error:  # a job id the backend has no record of
        print(f"jobs: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, ValueError, clusters.ClusterConfigError) as error:
        if os.environ.get("TERRA_LAB_DEBUG"):
            raise
        print(f"jobs: {' '.join(str(error).split())[:500]}", file=sys.stderr)
        return 1


def _main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["status", "logs", "cancel"])
    parser.add_argument("cluster")
    parser.add_argument("job_id")
    parser.add_argument("-f", "--follow", action="store_true")
    args = parser.parse_args(argv)
    settings = clusters.load(clusters.workspace_root())
    try:
        backend = make_backend(settings.cluster(args.cluster))
    except clusters.ClusterConfigError as error:
        print(f"jobs: {error}", file=sys.stderr)
        return 2
    if not args.job_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
        print(f"jobs: {args.job_id!r} is not a job id (launch prints it)", file=sys.stderr)
        return 2
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
