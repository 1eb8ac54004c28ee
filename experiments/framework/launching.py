"""`launch`: check names, then hand the resolved run to launcher/ (gate, image, submit).

The launcher (its public API, launcher/api.py) receives what it needs to re-create this
exact config inside the job: the experiment name, its Bazel label (//experiments:<name>,
whose tests the gate runs), the run name, the cluster, the launch settings, the resolved
config as plain data, and the overrides.
The job runs `experiments/<name>.py train <run> <cluster> <overrides>`, so the overrides
must pin everything that can change between now and the job's start: the W&B project,
whose default is dated, is therefore always passed explicitly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from experiments.framework import identity, naming
from experiments.framework.errors import CommandError
from launcher import api as launcher

if TYPE_CHECKING:
    from experiments.framework.resolution import Invocation

PROJECT_KEY = "trainer.callbacks.wandb.project"


def job_overrides(invocation: Invocation) -> list[str]:
    """The overrides as typed, plus the resolved W&B project when it was not given, and
    --resume when the user asked to continue an existing run."""
    texts = [override.text for override in invocation.overrides]
    if invocation.resume:
        texts.insert(0, "--resume")
    project_paths = {"trainer.run.project", PROJECT_KEY}
    if not any(override.key in project_paths for override in invocation.overrides):
        texts.append(f"--{PROJECT_KEY}={invocation.config.trainer.run.project}")
    return texts


def current_branch() -> str | None:
    branch = identity.git_output(launcher.workspace_root(), "rev-parse", "--abbrev-ref", "HEAD")
    return (branch or "").strip() or None


def check_run_identity(invocation: Invocation, commit: str) -> None:
    """Refuse now what the job would refuse when it claims its run folder (identity.py): a
    name taken by another setup, or by this one without --resume."""
    run = invocation.config.trainer.run
    fingerprint = identity.Fingerprint.of(
        invocation.experiment, commit, invocation.config.as_dict()
    )
    identity.check(run.build().path, fingerprint, invocation.resume, None, identity.run_label(run))


def launch_command(invocation: Invocation, stdout: TextIO, stderr: TextIO) -> int:
    warning = naming.branch_name_warning(current_branch())
    if warning:
        print(f"warning: {warning}", file=stderr)
    config = invocation.config
    workspace = launcher.workspace_root()
    try:
        commit = launcher.resolve_commit(workspace)
    except launcher.LaunchRefused as error:
        raise CommandError(str(error), exit_code=2) from error
    # The job will claim its run folder (identity.py); refuse now what it would refuse then,
    # before minutes of tests and an image push. The same job's requeues pass there.
    check_run_identity(invocation, commit)
    try:
        result = launcher.launch_experiment(
            experiment=invocation.experiment,
            label=f"//experiments:{invocation.experiment}",
            run_name=invocation.run_name,
            cluster=invocation.cluster,
            overrides=job_overrides(invocation),
            config=config.as_dict(),
            wandb_project=config.trainer.run.project,
            launch=config.launch,
            workspace=workspace,
            commit=commit,
        )
    except launcher.LaunchRefused as error:
        raise CommandError(str(error), exit_code=getattr(error, "exit_code", 2)) from error
    except launcher.LaunchFailed as error:
        raise CommandError(str(error), exit_code=getattr(error, "exit_code", 1)) from error
    print(
        f"launched {invocation.experiment} run {result.run_name} on {result.cluster}: "
        f"job {result.job_id}\n"
        f"  follow    {result.follow}\n"
        f"  W&B       project {result.wandb_project}, run {result.run_name}\n"
        f"  run dir   {result.run_dir}",
        file=stdout,
    )
    return 0
