"""End to end on a two-node dev Slurm cluster: nano trains across nodes, one process on each.

The dev cluster runs two slurmd on this host (`start slurm --nodes=2`: devnode1 and
devnode2, one core each); their names resolve through no DNS, so torchrun's c10d
rendezvous works only if the batch script dials the first node at the address Slurm has for
it. Three launches from one pushed scratch clone of this working tree (the first pays the
gate, image and push; the others find them done):

1. `--launch.num_nodes=2 --launch.num_gpus=1` on `slurm` reaches COMPLETED with a world of
   two, and `jobs logs` shows both nodes' lines, labelled;
2. the same config as one node with two processes (`--launch.num_gpus=2` on `local`: the
   same image on this machine; a one-core dev node cannot hold two processes) logs the same
   losses to 1e-5 at every step: the allreduced losses do not depend on where ranks live;
3. a two-node run requeued (`scontrol requeue`) after a checkpoint resumes from it on both
   nodes: one job, two starts, and every step once in metrics.jsonl.

The cluster is left in the shape it was found in (one node on a fresh machine), running if
it was, except under Bazel, where a cluster this test restarted is left stopped (`cluster`).
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from launcher import testing
from launcher.backends.backend import JobState
from launcher.backends.local import LocalBackend
from launcher.backends.slurm import SlurmBackend
from launcher.services import services

SOURCE = Path(__file__).resolve().parents[1]
PROJECT = "2026_01_01_launcher_e2e"
# What step results are compared on (train_module.LOSS_PARTS): each is a mean over all ranks.
LOSSES = ("loss", "patch_disc_a", "patch_disc_b", "infonce")
# 1e-5: the brief's bound. The two runs differ in where the ranks live and in torch's intra-op
# threads (one core per node vs two processes on two cores), which may reorder float sums;
# the gradients are allreduced over the same two ranks either way.
TOLERANCE = 1e-5
# Four steps of the smoke recipe: enough for the losses to depend on the updates between
# steps (a broken allreduce would make step 2 onwards differ), small enough for minutes.
STEPS = 4
SMOKE = [
    *(o for o in testing.NANO_SMOKE_OVERRIDES if not o.startswith("--trainer.max_steps")),
    # `local` shortens nano's warmup to 20 steps (script.for_local_cpu), `slurm` keeps 8000:
    # the two-node and one-node runs must share their learning rates to share their losses
    # (with 8000 vs 20, step 2's loss differed by 1e-2 after a bit-equal step 1).
    "--train_module.scheduler.warmup_steps=20",
]
# The config sections that decide the losses; the runs differ only in name, cluster, launch.
TRAINING_SECTIONS = ("model", "dataset", "data_loader", "train_module")
TWO_NODES = ["--launch.num_nodes=2", "--launch.num_gpus=1"]


@pytest.fixture(scope="module")
def env():
    return testing.e2e_environment()


@pytest.fixture(scope="module")
def cluster(env):
    """The developer's registry and dev Slurm cluster, the cluster as two nodes.

    Afterwards each goes back to how it was found: the registry stopped if it was started
    here; the cluster reshaped to its former node count (a later plain `start slurm` or a
    launch reads the shape from slurm.conf) and stopped if it was not running. Under Bazel a
    cluster this test restarted is stopped too: Bazel kills every process a test leaves
    (the controller and node restarted in the former shape were gone with a SIGKILL, no
    shutdown in their logs), so a clean stop is the one state it can leave; the next launch
    or `start slurm` starts it again in that shape.
    """
    state = testing.real_home() / ".cache" / "terra-lab" / "services"
    registry = services.registry(state)
    registry_started = registry.start_reporting()[1]
    before = services.slurm(state)
    shape_before = len(before.configured_nodes()) or 1
    was_up = before.running() and before.healthy()
    two = services.slurm(state, num_nodes=2)
    two.start()
    try:
        yield two
    finally:
        if shape_before != 2:
            services.slurm(state, num_nodes=shape_before).start()
        under_bazel = "TEST_TARGET" in os.environ  # set for every test Bazel runs
        if not was_up or (shape_before != 2 and under_bazel):
            services.slurm(state).stop()
        if registry_started:
            registry.stop()


@pytest.fixture(scope="module")
def workspace(env, cluster):
    # As e2e_slurm_test: the scratch clone's slurm cluster uses the daemonless runtime, so
    # the two nodes' images run under bubblewrap, sharing the host's network like Docker's
    # --network host.
    text = (SOURCE / "launcher" / "clusters.yaml").read_text()
    slurm_section = text.index("\n  slurm:\n")
    pinned = text[:slurm_section] + text[slurm_section:].replace(
        "    runtime: auto\n", "    runtime: bwrap\n", 1
    )
    work = testing.scratch_workspace(
        SOURCE, testing.E2E_ROOT / "ws-multinode", edits={"launcher/clusters.yaml": pinned}
    )
    yield work
    testing.shutdown_bazel(work, env)


def _launch(workspace: Path, env: dict[str, str], run: str, cluster: str, args: list[str]):
    """`nano launch <run> <cluster> <args>`; the job id."""
    result = testing.run_experiment(
        workspace,
        "nano",
        ["launch", run, cluster, f"--trainer.callbacks.wandb.project={PROJECT}",
         "--trainer.callbacks.evaluator.enabled=false", *SMOKE, *args],
        env,
        timeout_s=1800,  # a cold gate (nano's launch tests in a nested Bazel) on 2 cores
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return re.search(r"job id\s+(\S+)", result.stderr).group(1)


def _metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _slurm_backend(cluster) -> SlurmBackend:
    return SlurmBackend(cluster.conf, testing.real_home() / ".cache/terra-lab/jobs/slurm")


@pytest.fixture(scope="module")
def two_node_run(workspace, env, cluster):
    """nano on both dev nodes, one process each: (run folder, job id, seconds)."""
    run = "nano_e2e_two_nodes"
    start = time.monotonic()
    job_id = _launch(workspace, env, run, "slurm", [f"--trainer.max_steps={STEPS}", *TWO_NODES])
    backend = _slurm_backend(cluster)
    status = testing.wait_for_job(backend, job_id, timeout_s=900)
    seconds = time.monotonic() - start
    assert status.state is JobState.COMPLETED, testing.job_report(backend, job_id, status)
    return workspace / "runs" / PROJECT / run, job_id, seconds


def test_nano_trains_across_two_slurm_nodes_one_process_each(two_node_run, cluster):
    run_dir, job_id, seconds = two_node_run
    print(f"e2e multinode: two-node launch and job took {seconds:.0f} s")
    assert [row["step"] for row in _metrics(run_dir)] == list(range(1, STEPS + 1))
    (start,) = json.loads((run_dir / "provenance.json").read_text())["starts"]
    assert start["world_size"] == 2 and start["job_id"] == job_id
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], env=cluster.env(), capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    assert "NodeList=devnode[1-2]" in shown and "NumNodes=2" in shown


def test_jobs_logs_show_both_nodes_and_the_ranks_labelled(two_node_run, cluster):
    _, job_id, _ = two_node_run
    log = _slurm_backend(cluster).logs(job_id)  # what `jobs logs slurm <id>` prints
    for node in (0, 1):
        # srun --label: each node's runner, and torchrun's agent there, on lines of its own.
        assert re.search(rf"^{node}: \[run_image\] runtime bwrap$", log, re.MULTILINE), log
    # torchrun's rank prefix on the workers' lines (rank 0 reports the training).
    assert re.search(r"^\d: \[rank0\]: ", log, re.MULTILINE), log[-3000:]
    # The rendezvous dialled the first node at Slurm's NodeAddr (devnode1 does not resolve).
    assert "gives no NodeAddr" not in log


def test_one_node_with_two_processes_logs_the_same_losses(two_node_run, workspace, env):
    two_nodes_dir, _, _ = two_node_run
    run = "nano_e2e_one_node_two_procs"
    job_id = _launch(workspace, env, run, "local", [f"--trainer.max_steps={STEPS}",
                                                    "--launch.num_gpus=2"])  # fmt: skip
    backend = LocalBackend(testing.real_home() / ".cache/terra-lab/jobs/local")
    status = testing.wait_for_job(backend, job_id, timeout_s=900)
    assert status.state is JobState.COMPLETED, testing.job_report(backend, job_id, status)
    one_node_dir = workspace / "runs" / PROJECT / run
    configs = [
        yaml.safe_load((path / "config.yaml").read_text()) for path in (one_node_dir, two_nodes_dir)
    ]
    for section in TRAINING_SECTIONS:
        assert configs[0][section] == configs[1][section], f"the runs' {section} differ"
    one_node = _metrics(one_node_dir)
    two_nodes = _metrics(two_nodes_dir)
    assert [row["step"] for row in one_node] == [row["step"] for row in two_nodes]
    differences = {
        name: max(abs(a[name] - b[name]) for a, b in zip(one_node, two_nodes, strict=True))
        for name in LOSSES
    }
    print(f"e2e multinode: largest loss difference per part over {STEPS} steps {differences}")
    print("e2e multinode: losses", [round(row["loss"], 6) for row in two_nodes])
    assert all(difference <= TOLERANCE for difference in differences.values()), differences
    # Not the same by accident: training moved the loss, so step 1's agreement is not all.
    assert len({round(row["loss"], 6) for row in two_nodes}) > 1


def _newest_checkpoint_step(run_dir: Path) -> int:
    """The step of the run's newest complete checkpoint (0 with none): `step_<N>` with its
    meta.json, which is written last (see e2e_slurm_test)."""
    steps = [
        int(path.name.removeprefix("step_"))
        for path in (run_dir / "checkpoints").glob("step_*")
        if path.name.removeprefix("step_").isdigit() and (path / "meta.json").is_file()
    ]
    return max(steps, default=0)


def test_a_requeued_two_node_job_resumes_with_every_step_once(two_node_run, workspace, env,
                                                              cluster):  # fmt: skip
    run = "nano_e2e_two_nodes_requeue"
    # 40 steps keep the job running for several seconds past its second checkpoint (a smoke
    # step took 0.5 s on one core per node), so the requeue lands mid-run.
    max_steps = 40
    job_id = _launch(workspace, env, run, "slurm", [f"--trainer.max_steps={max_steps}",
                                                    *TWO_NODES])  # fmt: skip
    run_dir = workspace / "runs" / PROJECT / run
    backend = _slurm_backend(cluster)
    testing.wait_while_job_runs(
        backend,
        job_id,
        lambda: _newest_checkpoint_step(run_dir) >= 2,
        "a checkpoint of step 2 or later",
        timeout_s=900,
    )
    requeued_at = _newest_checkpoint_step(run_dir)
    # What a preemption or a node failure does: Slurm puts the job back and starts it again,
    # on both nodes.
    subprocess.run(["scontrol", "requeue", job_id], env=cluster.env(), check=True)
    status = testing.wait_for_job(backend, job_id, timeout_s=900)
    assert status.state is JobState.COMPLETED, testing.job_report(backend, job_id, status)
    assert "restarts 1" in status.detail, "the job ended before the requeue reached it"
    starts = json.loads((run_dir / "provenance.json").read_text())["starts"]
    assert [start["job_id"] for start in starts] == [job_id, job_id]
    assert [start["world_size"] for start in starts] == [2, 2]
    resumed_at = starts[1]["resumed_at_step"]
    print(f"e2e multinode: requeued after checkpoint {requeued_at}, resumed at {resumed_at}")
    assert starts[0]["resumed_at_step"] == 0 and resumed_at >= 2
    # Resumed, not restarted, and nothing logged twice: the steps read as one run.
    assert [row["step"] for row in _metrics(run_dir)] == list(range(1, max_steps + 1))
    assert "resumed from /app/runs/" in backend.logs(job_id)
