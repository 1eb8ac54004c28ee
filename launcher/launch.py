"""launch_experiment: gate -> image -> push -> submit, for `<experiment> launch ...`.

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

Processes: `launch.num_gpus` processes per node (one per GPU; on CPU clusters, CPU
processes with gloo), at least one; `launch.num_nodes` nodes. The job gets TERRA_LAB_IMAGE,
TERRA_LAB_COMMIT, TERRA_LAB_CLUSTER, TERRA_LAB_JOB_ID for its provenance record, and the
cluster's `secrets` (WANDB_API_KEY, ...) from the submitter's environment at run time.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from launcher import clusters, publish
from launcher.backends import local
from launcher.backends.backend import Backend, JobSpec
from launcher.backends.local import LocalBackend
from launcher.backends.slurm import SlurmBackend
from launcher.cli import command
from launcher.gate import gate
from launcher.gate.gate import LaunchRefused
from launcher.image import app_layer
from launcher.services import services
from launcher.settings import LaunchSettings
from launcher.workspace import workspace_root

__all__ = [
    "LaunchFailed",
    "LaunchRefused",
    "LaunchResult",
    "launch_experiment",
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


class LaunchFailed(RuntimeError):
    """An operation of the launch failed (a service, the registry, the scheduler)."""

    exit_code = 1


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
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    parent = Path(run_root) / ".jobs" / project / run_name
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        job_dir = parent / f"{stamp}-{secrets.token_hex(3)}"
        try:
            job_dir.mkdir()
        except FileExistsError:
            continue
        return job_dir


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
    """Gate, build, push and submit one run (module docstring).

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
    workspace = Path(workspace or workspace_root()).resolve()
    commit = commit or gate.resolve_commit(workspace)
    try:
        settings = clusters.load(workspace)
        cluster_config = settings.cluster(cluster)
        resources = launch.build(cluster_config)
    except (clusters.ClusterConfigError, ValueError, TypeError) as error:
        raise LaunchRefused([str(error)]) from error
    except OSError as error:
        raise LaunchRefused(
            [
                f"cannot read the cluster list ({error.strerror}: {error.filename}); launch from "
                "a terra-lab checkout, which has launcher/clusters.yaml"
            ]
        ) from error
    problems = gate.static_problems(workspace, experiment, run_name, wandb_project, commit)
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
    commit = gate.check_tests_and_commit(workspace, experiment, label, commit=commit)
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

    run_dir = cluster_config.run_root / wandb_project / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    job_dir = new_job_dir(cluster_config.run_root, wandb_project, run_name)
    job = JobSpec(
        name=run_name,
        image=pushed.reference,
        registry_url=cluster_config.registry.url,
        args=(experiment, run_name, cluster, *overrides),
        env={
            "TERRA_LAB_IMAGE": str(pushed.reference),
            "TERRA_LAB_COMMIT": image.commit,
            "TERRA_LAB_CLUSTER": cluster,
        },
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
    (job_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))
    backend = make_backend(cluster_config)
    try:
        job_id = backend.submit(job)
    except (RuntimeError, OSError, ValueError) as error:
        raise LaunchFailed(
            f"submitting to {cluster} failed: {command.one_line(error)}; the image "
            f"{pushed.reference} is pushed, no job was submitted"
        ) from error
    follow = backend.follow_hint(job_id)
    print(
        f"\nlaunched {experiment} at {image.commit[:12]} on {cluster}\n"
        f"  job id    {job_id}\n"
        f"  image     {pushed.reference}\n"
        f"  logs      {follow}\n"
        f"            ./tools/bazel run //launcher:jobs -- logs {cluster} {job_id}\n"
        f"  W&B       project {wandb_project}, run {run_name}\n"
        f"  run dir   {run_dir}",
        file=sys.stderr,
    )
    return LaunchResult(
        job_id=job_id,
        cluster=cluster,
        image=str(pushed.reference),
        commit=image.commit,
        wandb_project=wandb_project,
        run_name=run_name,
        run_dir=run_dir,
        follow=follow,
        bytes_uploaded=pushed.bytes_uploaded,
    )
