"""`bazel run //tools:compare -- --runs <dir or W&B project> [--baseline base]`

Compares the runs of a study against a baseline and writes a report: Markdown with PNG plots
and a self-contained HTML page (plots embedded). Sections: the runs, pretraining loss curves,
downstream task performance with deltas, convergence speed, parameter efficiency, and each
run's config diff against the baseline (definitions: tools/compare/analysis.py).

    --runs runs/2025_11_21_per_modality_projection_experiments   a folder of run folders
    --runs runs/<project>/<run>                                  one run folder
    --runs 2025_11_21_per_modality_projection_experiments        a project under --runs-root,
                                                                 else the W&B project online
Relative paths are taken from the directory `bazel run` was called in. The report goes to
`--out` (default: <runs folder>/compare/).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.compare import analysis, report, runs

logger = logging.getLogger(__name__)


def _user_path(text: str) -> Path:
    """A path as the user typed it: relative to where `bazel run` was called."""
    path = Path(text).expanduser()
    if path.is_absolute():
        return path
    return Path(os.environ.get("BUILD_WORKING_DIRECTORY") or os.getcwd()) / path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="compare", description=__doc__.split("\n\n")[1].replace("\n", " ")
    )
    parser.add_argument("--runs", required=True, help="run folder(s) or a W&B project")
    parser.add_argument("--baseline", default="base", help="baseline run or experiment name")
    parser.add_argument("--out", default=None, help="report folder (default: <runs>/compare)")
    parser.add_argument("--runs-root", default="runs", help="where projects are looked up")
    parser.add_argument("--metric", default=report.DEFAULT_METRIC, help="headline metric")
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="loss smoothing window in logged values (default: 10%% of them, at least 5)",
    )
    parser.add_argument("--entity", default=None, help="W&B entity for online projects")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--source",
        default=None,
        help="how the report names where the runs came from (default: the --runs value); "
        "for reports shared beyond this machine",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    runs_root = _user_path(args.runs_root)
    typed = _user_path(args.runs)
    target = str(typed) if typed.exists() else args.runs  # else: a project name
    try:
        found = runs.discover(target, runs_root, args.entity)
        baseline = analysis.pick_baseline(found, args.baseline)
    except (FileNotFoundError, ValueError) as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    if args.window is not None and args.window < 1:
        print("compare: --window must be >= 1", file=sys.stderr)
        return 2
    if args.out is not None:
        out = _user_path(args.out)
    elif Path(target).is_dir():
        out = Path(target) / "compare"
    else:
        out = _user_path(f"compare_{Path(target).name}")
    paths = report.write_report(
        found,
        baseline,
        out,
        metric=args.metric,
        window=args.window,
        source=args.source or args.runs,
        title=args.title or f"{Path(args.runs).name}: {len(found)} runs against {baseline.name}",
    )
    print(f"compared {len(found)} runs against {baseline.name}")
    print(f"  markdown {paths.markdown}")
    print(f"  html     {paths.html}")
    for image in paths.images:
        print(f"  plot     {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
