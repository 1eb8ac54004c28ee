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

`bazel run //tools:compare -- --study runs/<project>/_studies/<study>/study.json
    [--out DIR] [--min-effect loss=0.02,eval/landcover/knn_accuracy=0.01]`
reports a study instead (tools/compare/study_report.py): per variant the mean and 95% interval
over seeds of the final loss and every downstream score, seed-paired deltas against the
baseline, Holm-corrected verdicts, power and the seeds needed for 80% power (to detect the
--min-effect delta of a metric, else the observed one). Default --out: <manifest dir>/compare/.
"""

from __future__ import annotations

import types
from pathlib import Path

from absl import app, flags

from launcher.cli import command
from launcher.workspace import user_path
from tools.compare import analysis, report, runs, study_report

FLAGS = flags.FlagValues()
flags.DEFINE_string("runs", None, "run folder(s) or a W&B project", flag_values=FLAGS)
flags.DEFINE_string(
    "study", None, "a study's manifest, <project>/_studies/<study>/study.json", flag_values=FLAGS
)
flags.DEFINE_string(
    "min-effect",
    None,
    "with --study: metric=delta,... the smallest delta worth detecting, for the seeds-needed "
    "column (default: the observed delta)",
    flag_values=FLAGS,
)
flags.DEFINE_string("baseline", "base", "baseline run or experiment name", flag_values=FLAGS)
flags.DEFINE_string(
    "out",
    None,
    "report folder (default: <runs>/compare; with --study: <manifest dir>/compare)",
    flag_values=FLAGS,
)
flags.DEFINE_string("runs-root", "runs", "where projects are looked up", flag_values=FLAGS)
flags.DEFINE_string("metric", report.DEFAULT_METRIC, "headline metric", flag_values=FLAGS)
flags.DEFINE_integer(
    "window",
    None,
    "loss smoothing window in logged values (default: 10% of them, at least 5)",
    flag_values=FLAGS,
)
flags.DEFINE_string("entity", None, "W&B entity for online projects", flag_values=FLAGS)
flags.DEFINE_string("title", None, "report title", flag_values=FLAGS)
flags.DEFINE_string(
    "source",
    None,
    "how the report names where the runs came from (default: the --runs value); for reports "
    "shared beyond this machine",
    flag_values=FLAGS,
)


def run(args: types.SimpleNamespace) -> int:
    if (args.runs is None) == (args.study is None):
        raise app.UsageError(
            "give either --runs <dir or W&B project> or --study <study.json> (see --help)"
        )
    if args.study is not None:
        return run_study(args)
    if args.min_effect is not None:
        raise app.UsageError("--min-effect applies to --study reports only")
    runs_root = user_path(args.runs_root)
    typed = user_path(args.runs)
    target = str(typed) if typed.exists() else args.runs  # else: a project name
    try:
        found = runs.discover(target, runs_root, args.entity)
        baseline = analysis.pick_baseline(found, args.baseline)
    except (FileNotFoundError, ValueError) as error:
        raise app.UsageError(str(error)) from error
    if args.window is not None and args.window < 1:
        raise app.UsageError("--window must be >= 1")
    if args.out is not None:
        out = user_path(args.out)
    elif Path(target).is_dir():
        out = Path(target) / "compare"
    else:
        out = user_path(f"compare_{Path(target).name}")
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


def run_study(args: types.SimpleNamespace) -> int:
    manifest = user_path(args.study)
    out = user_path(args.out) if args.out is not None else manifest.parent / "compare"
    paths = study_report.write_study_report(
        manifest, out, min_effect=study_report.parse_min_effect(args.min_effect)
    )
    print(f"study report of {manifest}")
    print(f"  markdown {paths.markdown}")
    print(f"  html     {paths.html}")
    for image in paths.images:
        print(f"  plot     {image}")
    return 0


COMMAND = command.Command("compare", FLAGS, run, bad_input=(study_report.StudyError,))
main = COMMAND.main


if __name__ == "__main__":
    COMMAND.run_app()
