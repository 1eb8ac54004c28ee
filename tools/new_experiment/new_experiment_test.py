"""The scaffold, on a temporary copy of the workspace: it writes a plan, a variant equal to
base and its BUILD target, the result passes the experiment checks at once, and it refuses
bad names, thin hypotheses and overwriting."""

from __future__ import annotations

import ast
import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.new_experiment import new_experiment

ROOT = Path(__file__).resolve().parents[2]
HYPOTHESIS = (
    "Per-modality output heads improve representations by allowing modality-specific "
    "feature transformations of the decoder's predictions."
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of what the scaffold touches: experiments/ (sources only) and the ruff config."""
    copy = tmp_path / "ws"
    shutil.copytree(
        ROOT / "experiments",
        copy / "experiments",
        ignore=shutil.ignore_patterns("__pycache__", "plans", "*.runfiles"),
    )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def _experiment_targets(build: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(build.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "experiment":
            names += [ast.literal_eval(k.value) for k in node.keywords if k.arg == "name"]
    return names


def test_scaffold_writes_plan_variant_and_target(workspace: Path) -> None:
    before = _experiment_targets(workspace / "experiments" / "BUILD")
    day = datetime.date(2026, 11, 25)
    written = new_experiment.scaffold(workspace, "base_decoder_heads", HYPOTHESIS, day=day)
    plan, variant, build = written
    text = plan.read_text()
    assert plan == workspace / "experiments" / "plans" / "base_decoder_heads.plan.md"
    assert "modality-specific feature transformations" in text
    for section in ("## Hypothesis", "## Change", "## Files", "## Expected outcome", "## Baseline"):
        assert section in text
    assert "2026_11_25_<study>" in text
    assert _experiment_targets(build) == [*before, "base_decoder_heads"]
    source = variant.read_text()
    assert "Hypothesis: Per-modality output heads" in source
    assert 'CHANGES = ("model",)' in source


def test_the_new_variant_passes_the_experiment_checks_at_once(workspace: Path) -> None:
    from experiments.framework import hygiene

    new_experiment.scaffold(workspace, "base_decoder_heads", HYPOTHESIS)
    variant = workspace / "experiments" / "base_decoder_heads.py"
    assert hygiene.check_variant_source(variant) == []
    # Import the copy (not this checkout's experiments package) in a fresh interpreter.
    check = (
        "import io, importlib\n"
        "from experiments.framework import hygiene, cli\n"
        "from experiments.framework.experiment_config import Builders\n"
        "module = importlib.import_module('experiments.base_decoder_heads')\n"
        f"assert module.__file__.startswith({str(workspace)!r}), module.__file__\n"
        "base = importlib.import_module('experiments.base')\n"
        "assert hygiene.check_changes(module, base) == []\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "argv = ['dry_run', 'base_decoder_heads', 'local']\n"
        "status = cli.run(Builders.from_module(module), argv, 'base_decoder_heads', out, err)\n"
        "assert status == 0, err.getvalue()\n"
        "assert 'identical to base' in out.getvalue(), out.getvalue()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(workspace), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-c", check],
        cwd=workspace,  # `python -c` puts the working directory first on sys.path
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_new_variant_is_lint_clean(workspace: Path) -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed next to this interpreter")
    new_experiment.scaffold(workspace, "base_decoder_heads", HYPOTHESIS)
    for command in (["format", "--check"], ["check"]):
        result = subprocess.run(
            [ruff, *command, "experiments/base_decoder_heads.py"],
            cwd=workspace,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_long_hypothesis_keeps_the_variant_under_the_line_limit(workspace: Path) -> None:
    from experiments.framework import hygiene

    long = " ".join([HYPOTHESIS] * 8)
    new_experiment.scaffold(workspace, "base_decoder_heads", long)
    variant = workspace / "experiments" / "base_decoder_heads.py"
    assert hygiene.check_variant_source(variant) == []
    plan = workspace / "experiments" / "plans" / "base_decoder_heads.plan.md"
    assert long in plan.read_text()


@pytest.mark.parametrize(
    ("name", "hypothesis", "message"),
    [
        ("encoder_proj", HYPOTHESIS, "base_<component>_<change>"),
        ("base_Encoder_proj", HYPOTHESIS, "base_<component>_<change>"),
        ("base_decoder_heads", "try to improve", "what you test and why"),
        ("base_no_contrastive", HYPOTHESIS, "already exists"),
    ],
)
def test_bad_requests_are_refused_without_writing(
    workspace: Path, name: str, hypothesis: str, message: str
) -> None:
    build_before = (workspace / "experiments" / "BUILD").read_text()
    with pytest.raises(new_experiment.ScaffoldError, match=message):
        new_experiment.scaffold(workspace, name, hypothesis)
    assert (workspace / "experiments" / "BUILD").read_text() == build_before


def test_the_command_line_exits_2_on_refusal_and_0_on_success(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--workspace", str(workspace), "--name", "base_decoder_heads", "--hypothesis"]
    assert new_experiment.main([*argv, HYPOTHESIS]) == 0
    assert "launch_tests -- //experiments:base_decoder_heads" in capsys.readouterr().out
    assert new_experiment.main([*argv, HYPOTHESIS]) == 2
    assert "already exists" in capsys.readouterr().err


def _program(*argv: str) -> subprocess.CompletedProcess:
    """The binary as `bazel run` starts it: absl.app.run, flags from the command line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "tools.new_experiment.new_experiment", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_flagfile_drives_the_program(workspace: Path, tmp_path: Path) -> None:
    # CI keeps a request in a file: one flag a line, the value up to the end of the line.
    flagfile = tmp_path / "new_experiment.flags"
    flagfile.write_text(
        f"--workspace={workspace}\n--name=base_decoder_heads\n--hypothesis={HYPOTHESIS}\n"
    )
    result = _program(f"--flagfile={flagfile}")
    assert result.returncode == 0, result.stderr
    assert "created base_decoder_heads:" in result.stdout
    variant = workspace / "experiments" / "base_decoder_heads.py"
    assert "Hypothesis: Per-modality output heads" in variant.read_text()


def test_the_program_lists_its_flags_and_refuses_in_one_line(workspace: Path) -> None:
    helpfull = _program("--helpfull").stdout
    for flag in ("--name: base_<component>_<change>", "--hypothesis:", "--changes:", "--flagfile"):
        assert flag in helpfull, helpfull
    missing = _program("--workspace", str(workspace), "--name", "base_decoder_heads")
    assert missing.returncode == 2
    assert missing.stderr == (
        "new_experiment: --hypothesis is required: what you test, and why (see --help)\n"
    )
