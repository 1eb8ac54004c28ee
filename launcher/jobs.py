"""Follow launched jobs: `./tools/bazel run //launcher:jobs -- ACTION CLUSTER JOB_ID`.

status CLUSTER JOB_ID           state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
logs   CLUSTER JOB_ID [-f]      the job's output; -f follows it until the job ends
cancel CLUSTER JOB_ID           stop it
"""

from __future__ import annotations

import argparse
import sys
import time

from launcher import clusters
from launcher.launch import make_backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
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
