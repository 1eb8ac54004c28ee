"""launch_experiment and launch_runs: gate -> image -> push -> submit.

    ./tools/bazel run //experiments:nano -- launch nano_smoke slurm --launch.num_gpus=2 \\
        --trainer.callbacks.wandb.project=2026_11_25_smoke

The experiment binary resolves its config and calls `launch_experiment`; this module
  1. loads launcher/clusters.yaml and checks the launch settings against the cluster;
  2. runs the gate (launcher/gate/gate.py): names, clean tree, pushed commit, the
     tests of what the experiment depends on; any failure raises LaunchRefused before anything is
     pushed or submitted;
  3. builds the image of HEAD (cached layers) and pushes it (only missing blobs; the
     embedded registry is started on demand);
  4. submits the job by digest and prints the job id, how to follow its log, and the W&B
     project and run.

`launch_runs` does the same for a group of runs (a study's variants x seeds x grid points)
in one pass, and `launch_experiment` is its one-run case: every run's names are checked
before anything starts, ONE `bazel test` runs the union of the distinct experiments' launch
tests, ONE image is published, then every job is submitted (as one Slurm job array when an
array name is given). A refusal raises LaunchRefused before anything is pushed or
submitted; a submission that stops part-way raises LaunchFailed naming the runs that were
submitted (they run) and those that were not.

Processes: `launch.num_gpus` processes per node (one per GPU; on CPU clusters, CPU
processes with gloo), at least one; `launch.num_nodes` nodes. The job gets TERRA_LAB_IMAGE,
TERRA_LAB_COMMIT, TERRA_LAB_CLUSTER, TERRA_LAB_JOB_ID for its provenance record, and the
cluster's `secrets` (WANDB_API_KEY, ...) from the submitter's environment at run time.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from launcher import clusters, publish
from launcher.backends import local
from launcher.backends.backend import Backend, JobSpec, SubmissionIncomplete, unique_folder
from launcher.backends.local import LocalBackend
from launcher.backends.slurm import SlurmBackend
from launcher.cli import command
from launcher.gate import gate
from launcher.gate.gate import LaunchRefused
from launcher.image import app_layer
from launcher.registry.client import ImageReference
from launcher.services import services
from launcher.settings import JobResources, LaunchSettings
from launcher.workspace import workspace_root
from models.names import names

__all__ = [
    "GroupLaunchResult",
    "LaunchFailed",
    "LaunchRefused",
    "LaunchResult",
    "RunRequest",
    "launch_experiment",
    "launch_runs",
]


@dataclasses.dataclass(frozen=True)
class LaunchResult:
    """What a launch produced; also printed for the user.

    Attributes:
        job_id: the backend's id.
        cluster: cluster name.
        image: `host/repository@sha256:...`.
        commit: full sha of the launched commit.
        wandb_project: the W&B project.
        run_name: the W&B run and run folder name.
        run_dir: the run folder on the cluster's run root.
        follow: a command that follows the job's log.
        bytes_uploaded: what the push sent (only blobs the registry lacked).
    """

    job_id: str
    cluster: str
    image: str
    commit: str
    wandb_project: str
    run_name: str
    run_dir: Path
    follow: str
    bytes_uploaded: int


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One run of a group launch: what `<experiment> launch <run_name> ...` would submit.

    Attributes:
        experiment: the experiment's name; the job runs `experiments/<experiment>.py train`.
        label: its Bazel label, whose launch tests gate the launch ("" for
            //experiments:<experiment>).
        run_name: the W&B run and run folder name (must contain the experiment's name).
        overrides: the job's command-line overrides (`--key=value`).
        config: the resolved config as plain data, kept in the job folder (config.json);
            None for a resubmission, which has only its run folder's records.
    """

    experiment: str
    label: str
    run_name: str
    overrides: list[str]
    config: Mapping[str, Any] | None


@dataclasses.dataclass(frozen=True)
class GroupLaunchResult:
    """What `launch_runs` launched: one commit, one image, a job per run.

    Attributes:
        runs: one LaunchResult per run, in the order the runs were given.
        array_name: the Slurm job array's name (None: the jobs were submitted one by one).
    """

    commit: str
    image: str
    cluster: str
    wandb_project: str
    runs: list[LaunchResult]
    bytes_uploaded: int
    array_name: str | None = None


class LaunchFailed(RuntimeError):
    """An operation of the launch failed (a service, the registry, the scheduler).

    Attributes:
        submitted: {run name: job id} of the runs whose jobs were submitted before the
            failure (they run); empty when nothing was submitted.
    """

    exit_code = 1

    def __init__(self, message: str, submitted: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.submitted = dict(submitted or {})


def _failing_service_is_refusal(start: Any, cluster: clusters.ClusterConfig) -> None:
    """Start what the cluster needs; a service that cannot start refuses the launch."""
    try:
        start(cluster)
    except (RuntimeError, OSError, ValueError) as error:
        raise LaunchRefused(
            [f"a service {cluster.name} needs did not start: {str(error).strip()[:300]}"]
        ) from error


def new_job_dir(run_root: Path, project: str, run_name: str) -> Path:
    """A folder of this submission alone: `<run root>/.jobs/<project>/<run>/<UTC time>-<hex>`.

    Two launches of one run name never share a job folder (script, log, exit code), so a
    job id always leads to the files of exactly that job.
    """
    return unique_folder(Path(run_root) / ".jobs" / project / run_name)


def make_backend(cluster: clusters.ClusterConfig) -> Backend:
    index = clusters.cache_root() / "jobs" / cluster.name
    if cluster.backend == "local":
        return LocalBackend(index, cluster.runtime, tuple(cluster.services))
    return SlurmBackend(cluster.slurm_conf, index)


def ensure_services(cluster: clusters.ClusterConfig) -> None:
    """Start the dev services the cluster names, and the embedded registry (idempotent)."""
    wanted = set(cluster.services)
    if "registry" in wanted or cluster.registry.embedded:
        services.registry(address=cluster.registry.host).start()
    if "slurm" in wanted:
        services.slurm().start()
    if "docker" in wanted:
        services.docker().start()


def launch_experiment(
    experiment: str,
    label: str,
    run_name: str,
    cluster: str,
    overrides: list[str],
    config: Mapping[str, Any],
    wandb_project: str,
    launch: LaunchSettings,
    workspace: Path | None = None,
    commit: str | None = None,
) -> LaunchResult:
    """Gate, build, push and submit one run (module docstring): `launch_runs` of one run.

    Args:
        config: the resolved config as plain data, kept in the job folder (config.json).
        launch: the config's `launch` section.
        commit: the full sha to launch, resolved once by the caller (None: HEAD now). The
            gate's tests, the image and the job all use it; if HEAD is another commit when
            the tests are done, the launch is refused.

    Raises:
        LaunchRefused: a check failed; nothing was pushed or submitted (exit status 2).
        LaunchFailed: an operation failed (registry, scheduler); exit status 1.
    """
    run = RunRequest(experiment, label, run_name, overrides, config)
    group = launch_runs([run], cluster, wandb_project, launch, workspace, commit)
    return group.runs[0]


def launch_runs(
    runs: Sequence[RunRequest],
    cluster: str,
    wandb_project: str,
    launch: LaunchSettings,
    workspace: Path | None = None,
    commit: str | None = None,
    array_name: str | None = None,
) -> GroupLaunchResult:
    """Gate, build, push and submit a group of runs in one pass (module docstring).

    Args:
        runs: the runs, each submitted as the job its experiment's `launch` would submit.
        wandb_project: the W&B project of every run; run folders are
            `<run root>/<wandb_project>/<run name>`.
        launch: the `launch` section every run shares (one set of resources).
        commit: as for launch_experiment.
        array_name: submit the jobs as one group of that name (a Slurm job array; other
            backends submit one by one); None submits them one by one.

    Raises:
        ValueError: `runs` is empty.
        LaunchRefused: a check failed, for any run; nothing was pushed or submitted.
        LaunchFailed: an operation failed; when it stopped the submission part-way, its
            message and `submitted` name the runs already submitted.
    """
    if not runs:
        raise ValueError("launch_runs needs at least one run")
    workspace = Path(workspace or workspace_root()).resolve()
    commit = commit or gate.resolve_commit(workspace)
    settings, cluster_config, resources = _cluster_and_resources(workspace, cluster, launch)
    problems = _group_static_problems(workspace, runs, wandb_project, commit, array_name)
    problems += gate.moved_problems(workspace, commit)
    problems += app_layer.commit_secret_problems(workspace, commit)
    if not problems:
        # The scheduler must answer to check partitions, and a container runtime must exist
        # where the job runs; dev services start on demand. All of it before the tests run.
        _failing_service_is_refusal(ensure_services, cluster_config)
        problems += make_backend(cluster_config).preflight(resources.partitions)
        if cluster_config.backend == "slurm" and "slurm" in cluster_config.services:
            # The dev cluster's node is this machine: it runs the image with the same runtime.
            problems += local.ensure_container_runtime(
                cluster_config.runtime, start_docker="docker" in cluster_config.services
            )
    if problems:
        raise LaunchRefused(problems)
    # Each distinct experiment once: runs of one variant (seeds, grid points) share its tests.
    labels = list(dict.fromkeys(gate.experiment_label(run.experiment, run.label) for run in runs))
    commit = gate.check_group_tests_and_commit(workspace, labels, commit=commit)
    try:
        image, pushed = publish.publish_image(
            workspace, commit, cluster_config.image_flavor, settings, cluster_config.registry
        )
    except (RuntimeError, OSError, ValueError) as error:
        raise LaunchFailed(
            f"the image of {commit[:12]} could not be built or pushed to "
            f"{cluster_config.registry.url}: {command.one_line(error)}; nothing was submitted"
        ) from error
    print(
        f"[launch] pushed {pushed.reference} ({pushed.bytes_uploaded / 1e6:.1f} MB uploaded, "
        f"{pushed.blobs_skipped} blobs already there)",
        file=sys.stderr,
    )
    env = {
        "TERRA_LAB_IMAGE": str(pushed.reference),
        "TERRA_LAB_COMMIT": image.commit,
        "TERRA_LAB_CLUSTER": cluster,
    }
    jobs = [
        job_spec(run, cluster, cluster_config, resources, pushed.reference, env, wandb_project)
        for run in runs
    ]
    backend = make_backend(cluster_config)
    job_ids = _submit(backend, jobs, runs, cluster, array_name, str(pushed.reference))
    results = [
        LaunchResult(
            job_id=job_id,
            cluster=cluster,
            image=str(pushed.reference),
            commit=image.commit,
            wandb_project=wandb_project,
            run_name=run.run_name,
            run_dir=job.run_dir,
            follow=backend.follow_hint(job_id),
            bytes_uploaded=pushed.bytes_uploaded,
        )
        for run, job, job_id in zip(runs, jobs, job_ids, strict=True)
    ]
    if len(runs) == 1 and array_name is None:
        _print_launched_run(runs[0].experiment, results[0])
    else:
        _print_launched_group(results, array_name)
    return GroupLaunchResult(
        commit=image.commit,
        image=str(pushed.reference),
        cluster=cluster,
        wandb_project=wandb_project,
        runs=results,
        bytes_uploaded=pushed.bytes_uploaded,
        array_name=array_name,
    )


def _cluster_and_resources(
    workspace: Path, cluster: str, launch: LaunchSettings
) -> tuple[clusters.Settings, clusters.ClusterConfig, JobResources]:
    """clusters.yaml, the cluster, and the launch settings resolved against it; refusals."""
    try:
        settings = clusters.load(workspace)
        cluster_config = settings.cluster(cluster)
        return settings, cluster_config, launch.build(cluster_config)
    except (clusters.ClusterConfigError, ValueError, TypeError) as error:
        raise LaunchRefused([str(error)]) from error
    except OSError as error:
        raise LaunchRefused(
            [
                f"cannot read the cluster list ({error.strerror}: {error.filename}); launch from "
                "a terra-lab checkout, which has launcher/clusters.yaml"
            ]
        ) from error


def _group_static_problems(
    workspace: Path,
    runs: Sequence[RunRequest],
    wandb_project: str,
    commit: str,
    array_name: str | None,
) -> list[str]:
    """The gate's cheap checks for every run at once: each run's names (a problem shared by
    runs, such as the project's, once), run names given twice, then the tree and the push.
    For one run this is exactly gate.static_problems."""
    # The project is every run's: checked with the first run only (its example names that
    # run's experiment, so per-run checks would repeat it in as many spellings).
    problems = gate.name_problems(runs[0].experiment, runs[0].run_name, wandb_project)
    for run in runs[1:]:
        problems += gate.name_problems(run.experiment, run.run_name, None)
    seen: set[str] = set()
    for run in runs:
        if run.run_name in seen:
            problems.append(
                f"run name {run.run_name!r} is given twice; two jobs would write one run folder"
            )
        seen.add(run.run_name)
    if array_name is not None and (problem := names.run_name_problem(array_name)):
        problems.append(f"job array name: {problem}")
    problems += gate.tree_problems(workspace) + gate.push_problems(workspace, commit)
    return list(dict.fromkeys(problems))


def job_spec(
    run: RunRequest,
    cluster: str,
    cluster_config: clusters.ClusterConfig,
    resources: JobResources,
    image: ImageReference,
    env: dict[str, str],
    wandb_project: str,
) -> JobSpec:
    """The run's job: its run folder and a job folder of its own (with config.json) made."""
    run_dir = cluster_config.run_root / wandb_project / run.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    job_dir = new_job_dir(cluster_config.run_root, wandb_project, run.run_name)
    job = JobSpec(
        name=run.run_name,
        image=image,
        registry_url=cluster_config.registry.url,
        args=(run.experiment, run.run_name, cluster, *run.overrides),
        # The cluster's own settings (NCCL_*, ...) first; the launcher's TERRA_* cannot clash
        # (clusters.py refuses that prefix in a cluster's env).
        env={**dict(cluster_config.env), **env},
        secrets=cluster_config.secrets,
        run_root=cluster_config.run_root,
        run_dir=run_dir,
        data_root=cluster_config.data_root,
        job_dir=job_dir,
        num_nodes=resources.num_nodes,
        procs_per_node=resources.procs_per_node,
        gpus_per_node=resources.gpus_per_node,
        partitions=resources.partitions,
        priority_args=resources.priority_args,
        requeue=resources.requeue,
        runtime=cluster_config.runtime,
        image_cache=cluster_config.image_cache,
        job_cache=cluster_config.job_cache,
    )
    if run.config is not None:
        (job_dir / "config.json").write_text(json.dumps(run.config, indent=2, default=str))
    return job


def _submit(
    backend: Backend,
    jobs: list[JobSpec],
    runs: Sequence[RunRequest],
    cluster: str,
    array_name: str | None,
    image: str,
) -> list[str]:
    """Every job's id, in order; a failure says exactly which runs were submitted."""
    try:
        if array_name is None:
            return backend.submit_each(jobs)
        return backend.submit_array(jobs, array_name)
    except SubmissionIncomplete as error:
        submitted = {
            run.run_name: job_id for run, job_id in zip(runs, error.submitted, strict=False)
        }
        if not submitted:
            raise LaunchFailed(
                f"submitting to {cluster} failed: {command.one_line(error.cause)}; the image "
                f"{image} is pushed, no job was submitted"
            ) from error
        missing = [run.run_name for run in runs if run.run_name not in submitted]
        shown = ", ".join(f"{name} (job {job_id})" for name, job_id in submitted.items())
        raise LaunchFailed(
            f"submitting to {cluster} failed after {len(submitted)} of {len(runs)} jobs: "
            f"{command.one_line(error.cause)}; submitted, and running: {shown}; not submitted: "
            f"{', '.join(missing) or 'none'}",
            submitted=submitted,
        ) from error
    except (RuntimeError, OSError, ValueError) as error:
        raise LaunchFailed(
            f"submitting to {cluster} failed: {command.one_line(error)}; the image "
            f"{image} is pushed, no job was submitted"
        ) from error


def _print_launched_run(experiment: str, result: LaunchResult) -> None:
    print(
        f"\nlaunched {experiment} at {result.commit[:12]} on {result.cluster}\n"
        f"  job id    {result.job_id}\n"
        f"  image     {result.image}\n"
        f"  logs      {result.follow}\n"
        f"            ./tools/bazel run //launcher:jobs -- logs {result.cluster} {result.job_id}\n"
        f"  W&B       project {result.wandb_project}, run {result.run_name}\n"
        f"  run dir   {result.run_dir}",
        file=sys.stderr,
    )


def _print_launched_group(results: list[LaunchResult], array_name: str | None) -> None:
    first = results[0]
    how = f"job array {array_name}" if array_name else "one job each"
    width = max(len(result.run_name) for result in results)
    rows = "\n".join(
        f"  {result.run_name:<{width}}  {result.job_id}  {result.run_dir}" for result in results
    )
    print(
        f"\nlaunched {len(results)} runs at {first.commit[:12]} on {first.cluster} ({how})\n"
        f"  image     {first.image}\n"
        f"  W&B       project {first.wandb_project}\n"
        f"  logs      ./tools/bazel run //launcher:jobs -- logs {first.cluster} JOB_ID\n"
        f"{rows}",
        file=sys.stderr,
    )
