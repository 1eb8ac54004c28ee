"""Bad input, as a careless user or a hostile name would give it, to every entry point.

Each case runs one command (an experiment subcommand through the experiment CLI, or a tool
binary's `main`) in a throwaway workspace and asserts what the user sees and what is left:
  - the exit status: 2 for bad input, 1 for a failed operation;
  - one clear error line that names the problem (and the fix, through the fragment each
    case expects), and no traceback;
  - nothing written or changed: every file under the workspace, run root and cache is the
    same before and after (bytes and modes).
A case that would need a real service down (the registry) points at a closed loopback port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from experiments.framework import cli, testing

NANO = importlib.import_module("experiments.nano")
PROJECT = "2026_11_25_bad_input"
CLUSTERS_YAML = Path(__file__).parents[2] / "launcher" / "clusters.yaml"
NEWLINE_NAME = "nano_a\n#SBATCH --wrap=evil"


@dataclasses.dataclass
class World:
    """A workspace (git checkout, pushed), its run root, a cache and a tiny dataset."""

    root: Path
    workspace: Path
    run_root: Path
    h5_dir: Path

    @property
    def run_dir(self) -> Path:
        return self.run_root / PROJECT / "nano_a"


def _git(repo: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """A finished one-step nano run (run root, data), copied into each test's world."""
    base = tmp_path_factory.mktemp("trained")
    h5_dir = testing.write_tiny_dataset(base / "data")
    env = {"BUILD_WORKSPACE_DIRECTORY": str(base / "ws"), "TERRA_LAB_COMMIT": "a" * 40}
    with _environ(env):
        code = cli.run(
            testing.tiny_builders(NANO, h5_dir),
            ["train", "nano_a", "local", f"--trainer.callbacks.wandb.project={PROJECT}"],
            "nano",
            io.StringIO(),
            io.StringIO(),
        )
    assert code == 0
    return base / "ws" / "runs", h5_dir


@contextlib.contextmanager
def _environ(values: dict[str, str | None]):
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def world(tmp_path: Path, trained_run, monkeypatch) -> World:
    import shutil

    workspace = tmp_path / "ws"
    origin = tmp_path / "origin.git"
    workspace.mkdir()
    (workspace / ".gitignore").write_text("runs/\n")
    (workspace / "README.md").write_text("terra-lab\n")
    (workspace / "launcher").mkdir()
    shutil.copy(CLUSTERS_YAML, workspace / "launcher" / "clusters.yaml")
    _git(workspace, "init", "-q", "-b", "main")
    _git(workspace, "add", "-A")
    _git(workspace, "commit", "-qm", "start")
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    _git(workspace, "remote", "add", "origin", str(origin))
    _git(workspace, "push", "-q", "-u", "origin", "main")
    shutil.copytree(trained_run[0], workspace / "runs")
    monkeypatch.setenv("BUILD_WORKSPACE_DIRECTORY", str(workspace))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TERRA_LAB_COMMIT", "a" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name in ("TERRA_RUN_ROOT", "TERRA_DATA_DIR", "TERRA_LAB_JOB_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(workspace)
    return World(tmp_path, workspace, workspace / "runs", trained_run[1])


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    found = {}
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if ".git" in parts[:2] and ("objects" in parts or parts[-1] == "index"):
            continue  # `git status` refreshes the index's stat cache; refs and HEAD still count
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (digest, path.stat().st_mode)
        elif path.is_dir():
            found[str(path.relative_to(root)) + "/"] = ("dir", path.stat().st_mode)
    return found


def _experiment(world: World, *argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(testing.tiny_builders(NANO, world.h5_dir), list(argv), "nano", out, err)
    return code, err.getvalue()


def _tool(main: Callable[..., int], *argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse and sys.exit
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, err.getvalue()


def _tool_main(module: str) -> Callable[..., int]:
    return importlib.import_module(module).main


P = f"--trainer.callbacks.wandb.project={PROJECT}"


def _setup_corrupt_identity(world: World) -> None:
    (world.run_dir / "identity.json").write_text("{broken")


def _setup_dirty(world: World) -> None:
    (world.workspace / "README.md").write_text("edited\n")


def _setup_not_git(world: World) -> None:
    import shutil

    shutil.rmtree(world.workspace / ".git")


def _setup_detached_unpushed(world: World) -> None:
    (world.workspace / "new.txt").write_text("x\n")
    _git(world.workspace, "add", "new.txt")
    _git(world.workspace, "commit", "-qm", "unpushed")
    _git(world.workspace, "checkout", "-q", "--detach")


def _setup_shallow_dirty(world: World) -> None:
    """The workspace replaced by a shallow clone of itself, with an edit."""
    import shutil

    origin = world.root / "origin.git"
    shutil.rmtree(world.workspace / ".git")
    shallow = world.root / "shallow"
    _git(world.root, "clone", "-q", "--depth", "1", f"file://{origin}", str(shallow))
    shutil.move(str(shallow / ".git"), str(world.workspace / ".git"))
    (world.workspace / "README.md").write_text("edited in a shallow clone\n")


def _setup_corrupt_checkpoint_meta(world: World) -> None:
    for meta in (world.run_dir / "checkpoints").glob("step_*/meta.json"):
        meta.write_text("not json")


def _setup_no_git(world: World) -> None:
    os.environ["PATH"] = str(world.root / "empty-bin")


def _setup_slurm_down(world: World) -> None:
    """The slurm cluster's slurm.conf (under the services state) names a dead controller."""
    conf = world.root / "cache" / "terra-lab" / "services" / "slurm" / "slurm.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "ClusterName=dead\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=9\n"
        "AuthType=auth/none\nMessageTimeout=2\nNodeName=localhost CPUs=1 State=UNKNOWN\n"
        "PartitionName=debug Nodes=localhost Default=YES\n"
    )


def _setup_corrupt_config_yaml(world: World) -> None:
    (world.run_dir / "config.yaml").write_text("model: {encoder: [unclosed\n")


def _setup_corrupt_provenance(world: World) -> None:
    (world.run_dir / "provenance.json").write_text('{"starts": [')


# (id, setup, runner, argv, exit status, fragment of the error line)
EXPERIMENT_CASES = [
    ("dry_run-newline-name", None, ["dry_run", NEWLINE_NAME, "local"], 2, "control characters"),
    ("train-slash-name", None, ["train", "nano/../x", "local", P], 2, "run name 'nano/../x'"),
    ("train-dotdot-name", None, ["train", "..", "local", P], 2, "run name '..'"),
    ("train-bell-name", None, ["train", "nano\x07", "local", P], 2, "control characters"),
    ("train-long-name", None, ["train", "nano" + "x" * 300, "local", P], 2, "at most 128"),
    ("launch-newline-name", None, ["launch", "nano_a\n", "local", P], 2, "control characters"),
    ("evaluate-dash-name", None, ["evaluate", "-nano", "local"], 2, "come before the overrides"),
    ("visualize-space-name", None, ["visualize", "nano a", "local"], 2, "run name 'nano a'"),
    (
        "dry_run-unknown-key",
        None,
        ["dry_run", "nano_a", "local", "--trainer.max_stepz=3"],
        2,
        "Did you mean",
    ),
    (
        "train-malformed-yaml",
        None,
        ["train", "nano_b", "local", P, "--trainer.max_duration={unit: [steps"],
        2,
        "wrong type",
    ),
    (
        "train-wrong-type",
        None,
        ["train", "nano_b", "local", P, "--trainer.max_steps=many"],
        2,
        "wrong type",
    ),
    (
        "train-zero-steps",
        None,
        ["train", "nano_b", "local", P, "--trainer.max_steps=0"],
        2,
        "trainer.max_steps",
    ),
    (
        "train-newline-in-value",
        None,
        ["train", "nano_b", "local", P, "--trainer.seed=1\n#SBATCH x"],
        2,
        "control characters",
    ),
    (
        "train-positional-extra",
        None,
        ["train", "nano_b", "local", "stray"],
        2,
        "unexpected argument 'stray'",
    ),
    ("unknown-subcommand", None, ["trian", "nano_b", "local"], 2, "Did you mean train"),
    ("missing-arguments", None, ["train", "nano_b"], 2, "expected a subcommand"),
    ("unknown-cluster", None, ["dry_run", "nano_b", "nowhere"], 2, "unknown cluster 'nowhere'"),
    ("hostile-cluster", None, ["dry_run", "nano_b", "local\n"], 2, "control characters"),
    (
        "resume-on-dry_run",
        None,
        ["dry_run", "nano_a", "local", "--resume"],
        2,
        "--resume belongs to train and launch",
    ),
    (
        "untrained-on-train",
        None,
        ["train", "nano_b", "local", "--untrained"],
        2,
        "--untrained belongs to evaluate and visualize",
    ),
    (
        "impossible-project-date",
        None,
        ["dry_run", "nano_b", "local", "--trainer.callbacks.wandb.project=2026_13_40_x"],
        2,
        "not a real date",
    ),
    (
        "project-trailing-newline",
        None,
        ["dry_run", "nano_b", "local", "--trainer.callbacks.wandb.project=2026_11_25_x\n"],
        2,
        "control characters",
    ),
    (
        "run-root-override",
        None,
        ["train", "nano_b", "local", P, "--trainer.run.root=/tmp/x"],
        2,
        "is not allowed",
    ),
    (
        "model-override",
        None,
        ["train", "nano_b", "local", P, "--model.encoder.width=8"],
        2,
        "is not allowed",
    ),
    (
        "evaluate-unknown-run",
        None,
        ["evaluate", "nano_typo", "local", P],
        2,
        f"runs with checkpoints: {PROJECT}/nano_a",
    ),
    ("visualize-unknown-run", None, ["visualize", "nano_typo", "local", P], 2, "--untrained"),
    (
        "evaluate-missing-checkpoint-folder",
        None,
        ["evaluate", "nano_a", "local", P, "--visualize.checkpoint=/nonexistent/step_9"],
        2,
        "is not a checkpoint folder",
    ),
    ("train-same-name-again", None, ["train", "nano_a", "local", P], 2, "pass --resume"),
    (
        "train-same-name-other-config",
        None,
        ["train", "nano_a", "local", P, "--resume", "--train_module.max_grad_norm=0.5"],
        2,
        "train_module.max_grad_norm",
    ),
    (
        "train-corrupt-identity",
        _setup_corrupt_identity,
        ["train", "nano_a", "local", P, "--resume"],
        2,
        "identity.json is corrupt",
    ),
    ("launch-existing-run", None, ["launch", "nano_a", "local", P], 2, "already exists"),
    (
        "train-corrupt-config-yaml-other-config",
        _setup_corrupt_config_yaml,
        ["train", "nano_a", "local", P, "--resume", "--trainer.seed=7"],
        2,
        "seed",
    ),
    (
        "train-corrupt-provenance-same-name",
        _setup_corrupt_provenance,
        ["train", "nano_a", "local", P],
        2,
        "pass --resume",
    ),
    (
        "launch-not-a-git-checkout",
        _setup_not_git,
        ["launch", "nano_c", "local", P],
        2,
        "has no commit to launch",
    ),
    (
        "launch-without-git",
        _setup_no_git,
        ["launch", "nano_c", "local", P],
        2,
        "apt-get install git",
    ),
]

# Launch cases that reach the launcher's gate (the cheap checks; no test or image runs).
GATE_CASES = [
    ("launch-dirty-tree", _setup_dirty, ["launch", "nano_c", "local", P], 2, "dirty"),
    (
        "launch-detached-unpushed",
        _setup_detached_unpushed,
        ["launch", "nano_c", "local", P],
        2,
        "HEAD is detached",
    ),
    (
        "launch-shallow-clone-dirty",
        _setup_shallow_dirty,
        ["launch", "nano_c", "local", P],
        2,
        "dirty",
    ),
    (
        "launch-unknown-priority",
        None,
        ["launch", "nano_c", "local", P, "--launch.priority=asap"],
        2,
        "priority",
    ),
]


@pytest.mark.parametrize(
    ("setup", "argv", "status", "fragment"),
    [case[1:] for case in EXPERIMENT_CASES + GATE_CASES],
    ids=[case[0] for case in EXPERIMENT_CASES + GATE_CASES],
)
def test_experiment_command_refuses_bad_input_cleanly(world, setup, argv, status, fragment):
    if setup is not None:
        with _environ({"PATH": os.environ["PATH"]}):
            setup(world)
            _check(world, lambda: _experiment(world, *argv), status, fragment)
    else:
        _check(world, lambda: _experiment(world, *argv), status, fragment)


TOOL_CASES = [
    (
        "jobs-slurm-down",
        "launcher.jobs",
        ["status", "slurm", "12345"],
        1,
        "Slurm",
        _setup_slurm_down,
    ),
    (
        "compare-corrupt-config",
        "tools.compare.compare",
        ["--runs", f"runs/{PROJECT}", "--baseline", "nano_a"],
        2,
        "is not valid YAML",
        _setup_corrupt_config_yaml,
    ),
    ("jobs-unknown-cluster", "launcher.jobs", ["status", "mars", "1"], 2, "mars"),
    ("jobs-unknown-local-job", "launcher.jobs", ["status", "local", "nano_a-1"], 2, "no local job"),
    (
        "jobs-hostile-job-id",
        "launcher.jobs",
        ["logs", "local", "../../etc/passwd"],
        2,
        "is not a job id",
    ),
    ("jobs-bad-action", "launcher.jobs", ["restart", "local", "1"], 2, "unknown action"),
    (
        "compare-missing-runs",
        "tools.compare.compare",
        ["--runs", "/nonexistent/runs"],
        2,
        "compare:",
    ),
    (
        "compare-bad-window",
        "tools.compare.compare",
        ["--runs", "runs", "--window", "x"],
        2,
        "invalid int value",
    ),
    (
        "affected-unknown-base",
        "tools.affected_experiments.affected_experiments",
        ["--base", "no-such-revision"],
        2,
        "no-such-revision",
    ),
    (
        "new_experiment-bad-name",
        "tools.new_experiment.new_experiment",
        ["--name", "Bad Name", "--hypothesis", "h"],
        2,
        "new_experiment:",
    ),
    (
        "new_experiment-no-hypothesis",
        "tools.new_experiment.new_experiment",
        ["--name", "base_x_y"],
        2,
        "--hypothesis",
    ),
    (
        "push_image-registry-down",
        "launcher.push_image",
        ["--registry", "http://127.0.0.1:9"],
        1,
        "127.0.0.1:9",
    ),
    ("push_image-unknown-registry", "launcher.push_image", ["--registry", "nowhere"], 2, "nowhere"),
    (
        "build_image-unknown-revision",
        "launcher.build_image",
        ["--revision", "no-such-rev"],
        2,
        "no-such-rev",
    ),
    (
        "services-unknown-service",
        "tools.services.services_main",
        ["start", "postgres"],
        2,
        "postgres",
    ),
]


@pytest.mark.parametrize(
    ("module", "argv", "status", "fragment", "setup"),
    [(*case[1:5], case[5] if len(case) > 5 else None) for case in TOOL_CASES],
    ids=[case[0] for case in TOOL_CASES],
)
def test_tool_refuses_bad_input_cleanly(world, module, argv, status, fragment, setup):
    if setup is not None:
        setup(world)
    _check(world, lambda: _tool(_tool_main(module), *argv), status, fragment)


def _check(world: World, command: Callable[[], tuple[int, str]], status: int, fragment: str):
    before = _snapshot(world.root)
    code, err = command()
    after = _snapshot(world.root)
    assert "Traceback" not in err, err
    errors = [
        line
        for line in err.splitlines()
        if line.strip() and not line.startswith(("INFO ", "WARNING ", "usage:", "  ", "warning:"))
    ]
    assert len(errors) == 1, f"expected one error line, got:\n{err}"
    assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    assert code == status, f"exit {code}, expected {status}: {errors[0]}"
    assert len(errors[0]) < 700
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"files written or changed: {changed[:6]}"


def test_the_battery_covers_every_entry_point_and_at_least_40_cases():
    subcommands = {argv[0] for _, _, argv, *_ in EXPERIMENT_CASES + GATE_CASES}
    assert {"dry_run", "train", "launch", "evaluate", "visualize"} <= subcommands
    tools = {module.rsplit(".", 1)[-1] for _, module, *_ in TOOL_CASES}
    assert {
        "jobs",
        "compare",
        "affected_experiments",
        "new_experiment",
        "push_image",
        "build_image",
        "services_main",
    } <= tools
    assert len(EXPERIMENT_CASES) + len(GATE_CASES) + len(TOOL_CASES) >= 40


def test_a_corrupt_checkpoint_is_an_error_line_not_a_traceback(world):
    _setup_corrupt_checkpoint_meta(world)
    code, err = _experiment(world, "evaluate", "nano_a", "local", P)
    assert code in (1, 2) and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error:")


def test_json_of_a_refusal_mentions_no_secret(world, monkeypatch):
    """A refusal prints names and paths, never the values of the job's secrets."""
    monkeypatch.setenv("WANDB_API_KEY", "s3cr3t-value-123")
    code, err = _experiment(world, "train", "nano_a", "local", P)
    assert code == 2 and "s3cr3t" not in err
    json.dumps(err)


def test_a_held_run_lock_is_one_line_and_changes_nothing(world):
    """Another live process writes the run: resuming it now fails with who holds it."""
    from models.train.run_dir import RunLock

    with RunLock(world.run_dir):
        _check(
            world,
            lambda: _experiment(world, "train", "nano_a", "local", P, "--resume"),
            1,
            "is in use by PID",
        )


def test_corrupt_config_and_provenance_do_not_block_an_explicit_resume(world):
    """They are kept aside with a warning; the run continues to the longer duration."""
    _setup_corrupt_config_yaml(world)
    _setup_corrupt_provenance(world)
    code, err = _experiment(world, "train", "nano_a", "local", P, "--resume",
                            "--trainer.max_steps=2")  # fmt: skip
    assert code == 0, err
    assert len(list(world.run_dir.glob("config.corrupt-*.yaml"))) == 1
    assert len(list(world.run_dir.glob("provenance.corrupt-*.json"))) == 1
    steps = [json.loads(line)["step"] for line in (world.run_dir / "metrics.jsonl").open()]
    assert steps == [1, 2]
