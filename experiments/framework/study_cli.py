"""The study command line: `<study> SUBCOMMAND CLUSTER [--option=...] [--key=value ...]`.

    ./tools/bazel run //experiments/studies:per_modality_projection -- dry_run local
    ./tools/bazel run //experiments/studies:per_modality_projection -- launch slurm
    ./tools/bazel run //experiments/studies:per_modality_projection -- status slurm
    ./tools/bazel run //experiments/studies:per_modality_projection -- compare slurm
    ./tools/bazel run //experiments/studies:per_modality_projection -- reproduce local base_s0

Subcommands:
    dry_run    the table of runs, each run's config diff against its baseline run (only the
               variant's CHANGES may differ: else the study is refused), the compute estimate
    launch     one gate over every experiment's launch tests, one image, every run submitted
               (a Slurm job array on Slurm); study.json written; the plan's Runs section
               filled. Again: submits only the runs that are missing or whose job failed
    status     one line per run: state, step, last loss, ETA
    compare    per variant mean and 95% interval over seeds, seed-paired deltas against the
               baseline with verdicts (tools/compare's study report: Markdown, HTML, PNG)
    reproduce  re-run one run from its run folder into a new folder; the first step whose
               metrics differ (none, on CPU)

Study options (not passed to the runs):
    --project=YYYY_MM_DD_name  which launch of the study (default: launch reuses the newest one
                               launched at code equal to HEAD, else today's; the others read
                               the newest one)
    --min-effect=metric=delta  (compare) the delta the seeds-needed column is computed for
    --where=auto|image|here    (reproduce) in the run's image, or from a checkout here

Every other `--key=value` is an override every run gets alike (dry_run, launch).
Exit status: 0 done; 2 the command line or the study is wrong (one line says what to type);
1 the work itself failed. TERRA_LAB_DEBUG=1 adds the traceback.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from experiments.framework import (
    cli,
    clusters,
    diff,
    footprint_report,
    identity,
    launching,
    naming,
    resolution,
    study_manifest,
    subcommands,
)
from experiments.framework import overrides as ov
from experiments.framework.errors import CommandError
from experiments.framework.study import (
    RUN_NAMING_FIELDS,
    PlannedRun,
    Study,
    StudyError,
    builders_of,
    hyperparameter_differences,
    plan_runs,
    shared_overrides,
)
from launcher import api as launcher
from models.names import names
from models.train import accelerators, footprint
from models.train.callbacks.metrics_logger import read_metrics

SUBCOMMANDS = ("dry_run", "launch", "status", "compare", "reproduce")
_SEEDS = "every run's seed comes from the study's `seeds` (edit the study file)"
_WANDB = "the study sets it for every run (--project=YYYY_MM_DD_name picks the project)"
STUDY_OWNED = {
    "--seed": _SEEDS,
    "--trainer.seed": _SEEDS,
    "--trainer.callbacks.wandb.project": _WANDB,
    "--trainer.callbacks.wandb.group": _WANDB,
    "--trainer.callbacks.wandb.job_type": _WANDB,
    "--trainer.callbacks.wandb.notes": _WANDB,
    "--trainer.run.project": _WANDB,
    "--resume": "a relaunch continues the runs whose job failed by itself",
}
"""Overrides a study sets for each run itself; typed on its command line they are refused."""
STUDY_OPTIONS = ("--project", "--min-effect", "--where")
USAGE = (
    "usage: <study> {dry_run,launch,status,compare} CLUSTER [--project=...] [--key=value ...]\n"
    "       <study> reproduce CLUSTER RUN_NAME [--where=auto|image|here]\n"
    "  e.g. ./tools/bazel run //experiments/studies:per_modality_projection -- dry_run local"
)
# Compute estimate: 6 FLOPs per parameter per token (forward + backward) at 40% of an
# H100's dense bf16 peak (models/train/accelerators.py), a typical utilisation for ViT
# pretraining.
FLOPS_PER_PARAM_TOKEN = 6
H100_PEAK_FLOPS = accelerators.get("H100").peak_bf16_flops
ASSUMED_MFU = footprint.DEFAULT_MFU
TIMING_KEYS = ("step_time_s", "samples_per_s", "tokens_per_s")


@dataclasses.dataclass
class StudyInvocation:
    study: Study
    subcommand: str
    cluster: str
    options: dict[str, str]
    overrides: list[str]
    positional: list[str]


@dataclasses.dataclass
class ResolvedRun:
    planned: PlannedRun
    invocation: resolution.Invocation

    @property
    def config(self) -> Any:
        return self.invocation.config


def parse(study: Study, argv: Sequence[str]) -> StudyInvocation:
    """The command line, checked (StudyError: exit 2)."""
    args = list(argv)
    if len(args) < 2 or args[0].startswith("-") or args[1].startswith("-"):
        raise StudyError(f"expected a subcommand and a cluster\n{USAGE}")
    subcommand, cluster, *rest = args
    if subcommand not in SUBCOMMANDS:
        close = ov.closest_keys(subcommand, SUBCOMMANDS, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise StudyError(f"unknown subcommand {subcommand!r}.{hint}\n{USAGE}")
    for value in (cluster, *rest):
        if problem := names.control_character_problem("argument", value):
            raise StudyError(problem)
    if problem := names.cluster_problem(cluster):
        raise StudyError(problem)
    options: dict[str, str] = {}
    overrides: list[str] = []
    positional: list[str] = []
    for arg in rest:
        key = arg.split("=", 1)[0]
        if key in STUDY_OPTIONS:
            if "=" not in arg:
                raise StudyError(f"{key} needs a value: {key}=...")
            options[key[2:]] = arg.split("=", 1)[1]
        elif arg.startswith("--"):
            overrides.append(arg)
        else:
            positional.append(arg)
    if subcommand == "reproduce":
        if len(positional) != 1:
            raise StudyError(f"reproduce takes the name of one run of the study\n{USAGE}")
    elif positional:
        raise StudyError(f"unexpected argument {positional[0]!r}\n{USAGE}")
    for override in overrides:
        key = override.split("=", 1)[0]
        if key in STUDY_OWNED:
            raise StudyError(f"{key} is not an override of a study: {STUDY_OWNED[key]}")
    if overrides and subcommand not in ("dry_run", "launch"):
        raise StudyError(
            f"{overrides[0]} is an override; {subcommand} takes none (runs keep what they were "
            "launched with)"
        )
    if "project" in options:
        naming.validate_wandb_project(options["project"], "--project")
    return StudyInvocation(study, subcommand, cluster, options, overrides, positional)


# -- resolving the runs --------------------------------------------------------------------


def resolve_runs(
    invocation: StudyInvocation, project: str, subcommand: str = "dry_run"
) -> list[ResolvedRun]:
    """Every run's config, resolved exactly as its experiment's own command line would."""
    study = invocation.study
    builders = builders_of(study)
    resolved = []
    for run in plan_runs(study, invocation.cluster, project, invocation.overrides):
        argv = [subcommand, run.name, invocation.cluster, *run.overrides]
        resolved.append(
            ResolvedRun(run, resolution.resolve(builders[run.experiment], argv, run.experiment))
        )
    return resolved


def refuse_unequal_hyperparameters(study: Study, runs: Sequence[ResolvedRun]) -> None:
    """Raise (exit 2) when any run differs from its paired baseline run outside CHANGES."""
    found = hyperparameter_differences(
        study, [run.planned for run in runs], {run.planned.name: run.config for run in runs}
    )
    if found:
        shown = "; ".join(item.message(study.baseline_name) for item in found[:5])
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise CommandError(
            f"study {study.name} refused: the variants must share every hyperparameter outside "
            f"their CHANGES: {shown}{more}. Nothing was built, pushed or submitted; make the "
            "override apply to every variant, or declare the change in the variant's CHANGES",
            exit_code=2,
        )


def run_root(cluster: str) -> Path:
    return Path(clusters.resolve_cluster(cluster).run_root)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return study_manifest.read(path)
    except study_manifest.ManifestError as error:
        raise CommandError(str(error), exit_code=2) from error


def manifest_for(invocation: StudyInvocation) -> tuple[Path, dict[str, Any]]:
    """The manifest status, compare and reproduce read (--project, else the newest)."""
    study, root = invocation.study, run_root(invocation.cluster)
    if "project" in invocation.options:
        path = study_manifest.manifest_path(root, invocation.options["project"], study.name)
    else:
        path = study_manifest.newest(
            root, study.name, invocation.cluster
        ) or study_manifest.manifest_path(root, study.dated_project(), study.name)
    manifest = _read_manifest(path)
    if manifest is None:
        raise CommandError(
            f"study {study.name} has no launch on {invocation.cluster} ({path} does not exist); "
            f"launch it first: ./tools/bazel run //experiments/studies:{study.name} -- launch "
            f"{invocation.cluster}",
            exit_code=2,
        )
    return path, manifest


# -- dry_run -------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    lines.insert(1, "  " + "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _max_steps(config: Any) -> int | None:
    duration = config.trainer.max_duration
    return int(duration.value) if getattr(duration, "unit", "") == "steps" else None


def _tokens_per_step(config: Any) -> int | None:
    loader = config.data_loader
    batch = getattr(loader, "global_batch_size", None)
    budget = getattr(loader, "token_budget", None)
    return int(batch * budget) if batch and budget else None


def compute_estimate(runs: Sequence[ResolvedRun]) -> list[str]:
    """Lines of the compute estimate: 6 * parameters * tokens per step * steps per run."""
    lines = []
    total = 0.0
    unknown = []
    params: dict[str, int] = {}
    for run in runs:
        experiment = run.planned.experiment
        if experiment not in params:
            params[experiment] = subcommands.parameter_counts(run.config.model)["total"]
        steps, tokens = _max_steps(run.config), _tokens_per_step(run.config)
        if steps is None or tokens is None:
            unknown.append(run.planned.name)
            continue
        total += FLOPS_PER_PARAM_TOKEN * params[experiment] * tokens * steps
    memory = {}
    for run in runs:
        if run.planned.experiment not in memory:
            try:
                memory[run.planned.experiment] = footprint_report.summary(run.config)
            except (AttributeError, ValueError) as error:  # a model or loader it cannot read
                memory[run.planned.experiment] = f"no memory estimate: {error}"
    for experiment, count in params.items():
        lines.append(f"  {experiment:<32} {subcommands.format_count(count):>9} parameters")
        lines.append(f"  {'':<32} {memory[experiment]}")
    if unknown:
        lines.append(
            f"  {len(unknown)} runs train for epochs, whose steps depend on the dataset size; "
            "pass --trainer.max_steps=N for an estimate"
        )
    if total:
        seconds = total / (H100_PEAK_FLOPS * ASSUMED_MFU)
        lines.append(
            f"  total {total:.3g} FLOPs over {len(runs) - len(unknown)} runs "
            f"(6 x parameters x tokens per step x steps; tokens = batch x token budget), "
            f"about {_duration(seconds)} of one H100 at {ASSUMED_MFU:.0%} of bf16 peak"
        )
    return lines


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2g} s"
    if seconds < 3600 * 48:
        return f"{seconds / 3600:.3g} hours"
    return f"{seconds / 86400:.3g} days"


def dry_run(invocation: StudyInvocation, stdout: TextIO) -> int:
    study = invocation.study
    project = invocation.options.get("project") or study.dated_project()
    runs = resolve_runs(invocation, project)
    rule = subcommands._rule
    print(
        f"study {study.name} on {invocation.cluster} (dry run: nothing is built or submitted)\n"
        f"  hypothesis  {study.hypothesis}\n"
        f"  baseline    {study.baseline_name}\n"
        f"  variants    {', '.join(study.experiment_names[1:])}\n"
        f"  seeds       {', '.join(map(str, study.seeds))}\n"
        f"  grid        {dict(study.grid) or '(none)'}\n"
        f"  project     {project} (W&B group {study.name}, job type = the variant)",
        file=stdout,
    )
    shared = shared_overrides(study, invocation.cluster, invocation.overrides)
    print(f"  every run   {' '.join(shared) or '(no shared overrides)'}", file=stdout)
    print(rule(f"{len(runs)} runs"), file=stdout)
    print(
        _table(
            [
                (r.planned.name, r.planned.experiment, r.planned.seed, r.planned.grid_label or "-")
                for r in runs
            ],
            ("run", "variant", "seed", "grid point"),
        ),
        file=stdout,
    )
    print(rule("each run against its baseline run (same seed and grid point)"), file=stdout)
    baseline_runs = {
        r.planned.pairing_key: r for r in runs if r.planned.experiment == study.baseline_name
    }
    first_baseline = next(iter(baseline_runs.values()))
    for run in runs:
        paired = baseline_runs[run.planned.pairing_key]
        reference = first_baseline if paired is run else paired
        changes = diff.diff_configs(reference.config, run.config, ignore=RUN_NAMING_FIELDS)
        allowed = study.changes(run.planned.experiment)
        print(
            f"  {run.planned.name} vs {reference.planned.name}"
            f" (may differ in: {', '.join(allowed) or 'the seed only'}):",
            file=stdout,
        )
        print("  " + diff.format_diff(changes).replace("\n", "\n  "), file=stdout)
    refuse_unequal_hyperparameters(study, runs)
    print(rule("compute"), file=stdout)
    for line in compute_estimate(runs):
        print(line, file=stdout)
    print(
        f"\nhyperparameters: identical across the study outside each variant's CHANGES "
        f"({len(runs)} runs checked)",
        file=stdout,
    )
    return 0


# -- launch --------------------------------------------------------------------------------

CODE_FREE_SUFFIXES = (".md",)
"""Files whose change between two commits leaves every run's code the same (the launch
itself fills the plan's Runs section, which the user then commits)."""


def same_code(workspace: Path, first: str, second: str) -> bool:
    """Whether commits `first` and `second` differ only in documents."""
    if first == second:
        return True
    changed = identity.git_output(workspace, "diff", "--name-only", first, second)
    if changed is None:
        return False
    return all(line.endswith(CODE_FREE_SUFFIXES) for line in changed.split())


def launch_project(invocation: StudyInvocation, workspace: Path, commit: str) -> str:
    """--project, else the newest launch of this study at the same code, else today's."""
    if "project" in invocation.options:
        return invocation.options["project"]
    newest = study_manifest.newest(
        run_root(invocation.cluster), invocation.study.name, invocation.cluster
    )
    if newest is not None:
        manifest = _read_manifest(newest) or {}
        if same_code(workspace, str(manifest.get("commit", "")), commit):
            return str(manifest["project"])
    return invocation.study.dated_project()


RESUBMITTED_STATES = ("failed", "cancelled")


def runs_to_submit(
    invocation: StudyInvocation, runs: Sequence[ResolvedRun], manifest: dict[str, Any] | None
) -> tuple[list[ResolvedRun], dict[str, str]]:
    """The runs the manifest lacks or whose job failed; every recorded run's state."""
    recorded = study_manifest.runs_by_name(manifest)
    job_ids = [recorded[r.planned.name]["job_id"] for r in runs if r.planned.name in recorded]
    states = _job_states(invocation.cluster, job_ids)
    todo, by_run = [], {}
    for run in runs:
        entry = recorded.get(run.planned.name)
        if entry is None:
            todo.append(run)
            continue
        state = states.get(entry["job_id"], "unknown")
        by_run[run.planned.name] = state
        if state in RESUBMITTED_STATES:
            todo.append(run)
    return todo, by_run


def _job_states(cluster: str, job_ids: Sequence[str]) -> dict[str, str]:
    if not job_ids:
        return {}
    try:
        found = launcher.job_states(cluster, list(job_ids))
    except (launcher.LaunchFailed, launcher.LaunchRefused, OSError, ValueError) as error:
        raise CommandError(
            f"cannot ask {cluster} for the study's jobs: {error}; nothing was submitted"
        ) from error
    # JobState values are upper case (PENDING, ...); the study shows them as words.
    return {job_id: str(getattr(s.state, "value", s.state)).lower() for job_id, s in found.items()}


def launch(invocation: StudyInvocation, stdout: TextIO, stderr: TextIO) -> int:
    study = invocation.study
    workspace = launcher.workspace_root()
    try:
        commit = launcher.resolve_commit(workspace)
    except launcher.LaunchRefused as error:
        raise CommandError(str(error), exit_code=2) from error
    project = launch_project(invocation, workspace, commit)
    runs = resolve_runs(invocation, project, "launch")
    refuse_unequal_hyperparameters(study, runs)
    path = study_manifest.manifest_path(run_root(invocation.cluster), project, study.name)
    try:
        with study_manifest.launch_lock(path):
            return _launch_locked(
                invocation, stdout, stderr, workspace, commit, project, runs, path
            )
    except study_manifest.LaunchInProgress as error:
        raise CommandError(str(error), exit_code=2) from error


def _launch_locked(
    invocation: StudyInvocation,
    stdout: TextIO,
    stderr: TextIO,
    workspace: Path,
    commit: str,
    project: str,
    runs: Sequence[ResolvedRun],
    path: Path,
) -> int:
    """`launch` once it holds the study's launch lock: read, submit, record."""
    study = invocation.study
    manifest = _read_manifest(path)
    todo, states = runs_to_submit(invocation, runs, manifest)
    if not todo:
        counts = _count(states.values())
        print(
            f"nothing to launch: all {len(runs)} runs of {study.name} are submitted ({counts}); "
            f"follow them: ./tools/bazel run //experiments/studies:{study.name} -- status "
            f"{invocation.cluster}",
            file=stdout,
        )
        return 0
    # Only what is submitted must share the study's code; a finished study is not refused.
    if manifest is not None and not same_code(workspace, str(manifest["commit"]), commit):
        raise CommandError(
            f"study {study.name} in {project} was launched at {str(manifest['commit'])[:12]}; "
            f"HEAD {commit[:12]} changes code since, and a study's runs must share it. Check out "
            f"{str(manifest['commit'])[:12]} to complete it, or pass --project=<a new dated "
            "project> for a new launch",
            exit_code=2,
        )
    requests = []
    for run in todo:
        # A run whose job failed continues its run folder.
        run.invocation.resume = run.planned.name in states
        launching.check_run_identity(run.invocation, commit)
        requests.append(
            launcher.RunRequest(
                experiment=run.planned.experiment,
                label=f"//experiments:{run.planned.experiment}",
                run_name=run.planned.name,
                overrides=launching.job_overrides(run.invocation),
                config=run.config.as_dict(),
            )
        )
    print(
        f"[study] {study.name}: {len(todo)} of {len(runs)} runs to submit to "
        f"{invocation.cluster} (project {project})",
        file=stderr,
        flush=True,
    )
    try:
        result = launcher.launch_runs(
            requests,
            cluster=invocation.cluster,
            wandb_project=project,
            launch=todo[0].config.launch,
            workspace=workspace,
            commit=commit,
            array_name=study.name,
        )
    except launcher.LaunchRefused as error:
        raise CommandError(str(error), exit_code=getattr(error, "exit_code", 2)) from error
    except launcher.LaunchFailed as error:
        submitted = dict(getattr(error, "submitted", {}) or {})
        if submitted:  # those jobs run: the manifest must know them, or a relaunch repeats them
            partial = types.SimpleNamespace(
                commit=commit,
                image=None,
                runs=[
                    types.SimpleNamespace(
                        run_name=name,
                        job_id=job_id,
                        run_dir=run_root(invocation.cluster) / project / name,
                    )
                    for name, job_id in submitted.items()
                ],
            )
            study_manifest.write(
                path, _updated_manifest(study, invocation, manifest, project, runs, partial)
            )
        raise CommandError(str(error), exit_code=getattr(error, "exit_code", 1)) from error
    manifest = _updated_manifest(study, invocation, manifest, project, runs, result)
    study_manifest.write(path, manifest)
    plan = fill_plan(workspace, study, manifest, path)
    print(_launch_summary(study, invocation.cluster, manifest, result, path, plan), file=stdout)
    return 0


def _count(states: Any) -> str:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"


def _updated_manifest(
    study: Study,
    invocation: StudyInvocation,
    manifest: dict[str, Any] | None,
    project: str,
    runs: Sequence[ResolvedRun],
    result: Any,
) -> dict[str, Any]:
    recorded = study_manifest.runs_by_name(manifest)
    submitted = {item.run_name: item for item in result.runs}
    entries = []
    for run in runs:
        name = run.planned.name
        entry = dict(recorded.get(name, {}))
        if name in submitted:
            item = submitted[name]
            previous = [*entry.get("previous_jobs", [])]
            if entry.get("job_id"):
                previous.append(entry["job_id"])
            entry.update(
                name=name,
                variant=run.planned.experiment,
                seed=run.planned.seed,
                grid=dict(run.planned.grid),
                grid_label=run.planned.grid_label,
                run_dir=str(item.run_dir),
                job_id=item.job_id,
                previous_jobs=previous,
                overrides=list(run.planned.overrides),
                max_steps=_max_steps(run.config),
                commit=result.commit,
                image=result.image,
                submitted=study_manifest.now(),
            )
        if entry:
            entries.append(entry)
    first = manifest or {}
    return {
        "format": study_manifest.FORMAT,
        "study": study.name,
        "hypothesis": study.hypothesis,
        "baseline": study.baseline_name,
        "variants": list(study.experiment_names),
        "seeds": list(study.seeds),
        "grid": {key: list(values) for key, values in study.grid.items()},
        "project": project,
        "cluster": invocation.cluster,
        "commit": first.get("commit", result.commit),
        "image": first.get("image", result.image),
        "launched": first.get("launched", study_manifest.now()),
        "relaunched": [*first.get("relaunched", []), study_manifest.now()] if manifest else [],
        "runs": entries,
    }


PLAN_START = "<!-- study runs of {project}: filled by `launch`; do not edit between these lines -->"
PLAN_END = "<!-- end of study runs of {project} -->"
"""One block per launch of the study (its project): a relaunch replaces its own block, a
launch into another project (another cluster, another day) adds one after the others."""


def fill_plan(workspace: Path, study: Study, manifest: dict[str, Any], path: Path) -> Path | None:
    """Write the study's runs into the Runs section of experiments/plans/<study>.plan.md."""
    plan = workspace / "experiments" / "plans" / f"{study.name}.plan.md"
    if not plan.exists():
        return None
    text = plan.read_text()
    shown = path.relative_to(workspace) if path.is_relative_to(workspace) else path
    rows = "\n".join(
        f"| {run['name']} | {run['variant']} | {run['seed']} | {run.get('grid_label') or '-'} "
        f"| {run['job_id']} | {str(run.get('commit', ''))[:12]} |"
        for run in manifest["runs"]
    )
    start, end = (marker.format(project=manifest["project"]) for marker in (PLAN_START, PLAN_END))
    block = (
        f"{start}\n"
        f"Study `{study.name}` on `{manifest['cluster']}`: W&B project `{manifest['project']}`, "
        f"group `{study.name}` (job type = variant), commit `{manifest['commit']}`, image "
        f"`{manifest['image']}`.\nManifest: `{shown}`.\n\n"
        "| run | variant | seed | grid point | job | commit |\n|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Follow: `./tools/bazel run //experiments/studies:{study.name} -- status "
        f"{manifest['cluster']}`; compare: `... -- compare {manifest['cluster']}`.\n"
        f"{end}"
    )
    last_end = re.search(r"<!-- end of study runs of [^>]* -->(?![\s\S]*<!-- end of study)", text)
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    elif last_end is not None:
        text = text[: last_end.end()] + "\n\n" + block + text[last_end.end() :]
    elif "\n## Runs\n" in text:
        head, rest = text.split("\n## Runs\n", 1)
        tail = rest[rest.index("\n## ") :] if "\n## " in rest else "\n"
        text = f"{head}\n## Runs\n{block}\n{tail.lstrip(chr(10)) and tail}"
    else:
        text = text.rstrip("\n") + f"\n\n## Runs\n{block}\n"
    plan.write_text(text)
    return plan


def _launch_summary(
    study: Study,
    cluster: str,
    manifest: dict[str, Any],
    result: Any,
    path: Path,
    plan: Path | None,
) -> str:
    lines = [
        f"launched {len(result.runs)} runs of study {study.name} on {cluster} at "
        f"{result.commit[:12]}",
        f"  image     {result.image}",
        f"  W&B       project {manifest['project']}, group {study.name}",
        f"  manifest  {path}",
    ]
    if plan is not None:
        lines.append(f"  plan      {plan} (Runs section filled; commit it)")
    lines.append("")
    lines.append(_table([(item.run_name, item.job_id) for item in result.runs], ("run", "job")))
    lines.append(
        f"\nfollow: ./tools/bazel run //experiments/studies:{study.name} -- status {cluster}"
    )
    return "\n".join(lines)


# -- status --------------------------------------------------------------------------------


def run_progress(run_dir: Path, max_steps: int | None) -> dict[str, Any]:
    """Step, last loss and ETA of a run folder's metrics.jsonl."""
    records = read_metrics(Path(run_dir) / "metrics.jsonl")
    if not records:
        return {"step": None, "loss": None, "eta_s": None}
    last = records[-1]
    step = int(last.get("step", 0))
    times = [r["step_time_s"] for r in records[-20:] if "step_time_s" in r]
    eta = None
    if max_steps and times and step < max_steps:
        eta = (max_steps - step) * sum(times) / len(times)
    return {"step": step, "loss": last.get("loss"), "eta_s": eta}


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    return (
        f"{minutes // 60}h{minutes % 60:02d}m"
        if minutes >= 60
        else f"{minutes}m{int(seconds % 60):02d}s"
    )


def status(invocation: StudyInvocation, stdout: TextIO) -> int:
    path, manifest = manifest_for(invocation)
    runs = manifest["runs"]
    states = _job_states(invocation.cluster, [run["job_id"] for run in runs])
    rows = []
    for run in runs:
        progress = run_progress(Path(run["run_dir"]), run.get("max_steps"))
        steps = (
            "-" if progress["step"] is None else f"{progress['step']}/{run.get('max_steps') or '?'}"
        )
        loss = "-" if progress["loss"] is None else f"{progress['loss']:.4f}"
        state = states.get(run["job_id"], "unknown")
        rows.append(
            (
                run["name"],
                state,
                steps,
                loss,
                _eta(progress["eta_s"]) if state in ("running", "pending", "preempted") else "-",
                run["job_id"],
            )
        )
    print(
        f"study {manifest['study']} on {invocation.cluster}: project {manifest['project']}, "
        f"commit {str(manifest['commit'])[:12]} ({path})",
        file=stdout,
    )
    print(_table(rows, ("run", "state", "step", "loss", "ETA", "job")), file=stdout)
    print(
        f"\n{len(runs)} runs: {_count(states.get(r['job_id'], 'unknown') for r in runs)}",
        file=stdout,
    )
    return 0


# -- compare, reproduce --------------------------------------------------------------------


def compare(invocation: StudyInvocation, stdout: TextIO, stderr: TextIO) -> int:
    """tools/compare's study report, run as a command (tools sit above experiments)."""
    path, _ = manifest_for(invocation)
    command = [sys.executable, "-m", "tools.compare.compare", "--study", str(path)]
    if "min-effect" in invocation.options:
        command.append(f"--min-effect={invocation.options['min-effect']}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    result = subprocess.run(command, env=env, stdout=stdout, stderr=stderr, check=False)
    return result.returncode


def reproduce(invocation: StudyInvocation, stdout: TextIO, stderr: TextIO) -> int:
    from experiments.framework import reproduce as reproducing

    _, manifest = manifest_for(invocation)
    name = invocation.positional[0]
    runs = study_manifest.runs_by_name(manifest)
    if name not in runs:
        raise CommandError(
            f"{name!r} is no run of study {manifest['study']} in {manifest['project']}; its "
            f"runs: {', '.join(sorted(runs))}",
            exit_code=2,
        )
    report = reproducing.reproduce_run(
        Path(runs[name]["run_dir"]), where=invocation.options.get("where", "auto")
    )
    print(reproducing.format_report(report), file=stdout)
    return 0 if report.identical else 1


# -- entry point ---------------------------------------------------------------------------


def run(
    study: Study, argv: Sequence[str], stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Parse and run one study command line; returns the exit status."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__, file=stdout)
        return 0 if argv else 2
    return cli.report_failures(
        lambda: _run(study, argv, stdout, stderr),
        stderr,
        f"study {study.name} {argv[0]} failed",
        usage_errors=(
            StudyError,
            resolution.UsageError,
            ov.OverrideError,
            naming.NamingError,
            clusters.UnknownClusterError,
        ),
    )


def _run(study: Study, argv: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    invocation = parse(study, argv)
    known = sorted({clusters.LOCAL, *clusters.launcher_cluster_names()})
    if invocation.cluster not in known:
        raise StudyError(
            f"unknown cluster {invocation.cluster!r}; known clusters: {', '.join(known)} "
            "(launcher/clusters.yaml)"
        )
    if invocation.subcommand == "dry_run":
        return dry_run(invocation, stdout)
    if invocation.subcommand == "launch":
        return launch(invocation, stdout, stderr)
    if invocation.subcommand == "status":
        return status(invocation, stdout)
    if invocation.subcommand == "compare":
        return compare(invocation, stdout, stderr)
    return reproduce(invocation, stdout, stderr)


def main(study: Study, argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of a study binary (experiments/studies/<name>.py)."""
    sys.exit(run(study, list(sys.argv[1:] if argv is None else argv)))
