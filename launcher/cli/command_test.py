"""Command: absl flags parsed per call, positional arguments checked, every mistake one line
with its exit status, and, run as a program, absl's --helpfull, --flagfile and logging."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from absl import app, flags

from launcher.cli import command


class Refused(ValueError):
    """Stands for a binary's own bad-input exception."""


class Broken(RuntimeError):
    """Stands for a failure whose message already says what to do."""


def _greet(args) -> int:
    if args.who == "refused":
        raise Refused("nobody may greet 'refused'; pick another --who")
    if args.who == "broken":
        raise Broken("the greeter is broken; repair it")
    if args.who == "bug":
        raise KeyError("a bug")
    if args.who == "usage":
        raise app.UsageError("--who=usage is not a name")
    print(" ".join([args.greeting, args.who] * args.times))
    return 0


def _greeter(positional: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> command.Command:
    flag_values = flags.FlagValues()
    flags.DEFINE_string("greeting", "hello", "what to say", flag_values=flag_values)
    flags.DEFINE_integer("times", 1, "how often", flag_values=flag_values, lower_bound=1)
    flags.DEFINE_string("who", None, "whom to greet", flag_values=flag_values)
    flags.DEFINE_boolean("dry-run", False, "say nothing", flag_values=flag_values)
    flags.DEFINE_enum("tone", "calm", ["calm", "loud"], "how", flag_values=flag_values)
    return command.Command(
        "greet",
        flag_values,
        _greet,
        required=("who",),
        positional=positional,
        optional=optional,
        bad_input=(Refused,),
        failures=(Broken,),
    )


def _run(cmd: command.Command, *argv: str, capsys) -> tuple[int, str, str]:
    status = cmd.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_both_value_spellings_and_hyphenated_names_parse() -> None:
    args = _greeter().parse(["--who=ann", "--times", "2", "--dry-run", "--tone", "loud"])
    assert (args.who, args.times, args.dry_run, args.tone) == ("ann", 2, True, "loud")
    assert args.greeting == "hello"
    assert _greeter().parse(["--who=ann", "--nodry-run"]).dry_run is False


def test_each_call_starts_from_the_defaults(capsys) -> None:
    greeter = _greeter()
    assert _run(greeter, "--who=ann", "--times=2", "--greeting=hi", capsys=capsys)[1] == (
        "hi ann hi ann\n"
    )
    assert _run(greeter, "--who=bob", capsys=capsys)[1] == "hello bob\n"


def test_two_binaries_with_the_same_flag_names_live_in_one_process() -> None:
    first, second = _greeter(), _greeter()  # on the global FLAGS: DuplicateFlagError
    assert first.parse(["--who=a"]).who == "a" and second.parse(["--who=b"]).who == "b"


def test_a_flagfile_supplies_flags(tmp_path: Path, capsys) -> None:
    flagfile = tmp_path / "greet.flags"
    flagfile.write_text("# CI's greeting\n--who=ci\n--times=2\n")
    status, out, _ = _run(_greeter(), f"--flagfile={flagfile}", "--greeting=hey", capsys=capsys)
    assert (status, out) == (0, "hey ci hey ci\n")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--who=a", "--tims=2"], "greet: unknown flag --tims; did you mean --times? (see --help)"),
        (
            ["--who=a", "--times=x"],
            "greet: --times: invalid int value 'x': expected a whole number (see --help)",
        ),
        (
            ["--who=a", "--times", "1: 2"],
            "greet: --times: invalid int value '1: 2': expected a whole number (see --help)",
        ),
        (
            ["--who=a", "--times=0"],
            "greet: --times: invalid int value '0': 0 is not a positive integer (see --help)",
        ),
        (
            ["--who=a", "--dry-run=maybe"],
            "greet: --dry-run: invalid bool value 'maybe': expected true or false (see --help)",
        ),
        (
            ["--who=a", "--tone=shrill"],
            "greet: --tone: invalid value 'shrill': value should be one of <calm|loud> "
            "(see --help)",
        ),
        ([], "greet: --who is required: whom to greet (see --help)"),
        (["--who"], "greet: Missing value for flag --who (see --help)"),
        (
            ["--who=a", "--nodry-run=1"],
            "greet: --nodry-run=1 does not take an argument (see --help)",
        ),
        (
            ["--who=a", "stray"],
            "greet: unexpected argument 'stray': the usage is greet [flags] (see --help)",
        ),
        (["--who=refused"], "greet: nobody may greet 'refused'; pick another --who"),
        (["--who=usage"], "greet: --who=usage is not a name"),
    ],
    ids=[
        "unknown",
        "not-an-int",
        "value-with-colon",
        "below-the-bound",
        "not-a-bool",
        "not-a-choice",
        "required",
        "no-value",
        "negated-with-value",
        "stray-word",
        "bad-input-exception",
        "usage-error",
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, line, capsys) -> None:
    status, out, err = _run(_greeter(), *argv, capsys=capsys)
    assert (status, out) == (2, "")
    assert err.splitlines() == [line]


def test_positional_arguments_are_named_counted_and_checked(capsys) -> None:
    greeter = _greeter(positional=("action", "target"))
    args = greeter.parse(["start", "--who=a", "all"])
    assert (args.action, args.target, args.who) == ("start", "all", "a")
    status, _, err = _run(greeter, "start", "--who=a", capsys=capsys)
    assert status == 2
    assert err == "greet: missing TARGET: the usage is greet ACTION TARGET [flags] (see --help)\n"


def test_optional_positional_arguments_may_be_left_out_but_not_exceeded(capsys) -> None:
    greeter = _greeter(positional=("action",), optional=("target",))
    assert greeter.parse(["start", "--who=a"]).target is None
    assert greeter.parse(["start", "docker", "--who=a"]).target == "docker"
    status, _, err = _run(greeter, "start", "docker", "slurm", "--who=a", capsys=capsys)
    assert status == 2
    assert err == (
        "greet: unexpected argument 'slurm': the usage is greet ACTION [TARGET] [flags] "
        "(see --help)\n"
    )


def test_failures_are_exit_1_and_unknown_errors_point_at_debug(capsys, monkeypatch) -> None:
    monkeypatch.delenv("TERRA_LAB_DEBUG", raising=False)
    assert _run(_greeter(), "--who=broken", capsys=capsys)[::2] == (
        1,
        "greet: the greeter is broken; repair it\n",
    )
    assert _run(_greeter(), "--who=bug", capsys=capsys)[::2] == (
        1,
        "greet: 'a bug' (TERRA_LAB_DEBUG=1 shows where)\n",
    )


def test_debug_lets_the_exception_through(monkeypatch) -> None:
    monkeypatch.setenv("TERRA_LAB_DEBUG", "1")
    with pytest.raises(KeyError):
        _greeter().main(["--who=bug"])
    with pytest.raises(app.UsageError, match="unknown flag --tims"):
        _greeter().main(["--who=a", "--tims=1"])
    monkeypatch.setenv("TERRA_LAB_DEBUG", "0")
    assert _greeter().main(["--who=bug"]) == 1


def test_a_required_flag_must_exist() -> None:
    with pytest.raises(ValueError, match=r"\['whom'\] are not defined"):
        command.Command("greet", flags.FlagValues(), _greet, required=("whom",))


PROGRAM = '''\
"""greet: says hello (the test program of launcher/cli/command_test.py)."""
from absl import flags, logging

from launcher.cli import command

FLAGS = flags.FlagValues()
flags.DEFINE_string("who", None, "whom to greet", flag_values=FLAGS)
flags.DEFINE_integer("times", 1, "how often", flag_values=FLAGS)


def run(args):
    logging.info("greeting %s", args.who)
    print(" ".join(["hello", args.who] * args.times))


if __name__ == "__main__":
    command.Command("greet", FLAGS, run, required=("who",)).run_app()
'''


def _program(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    script = tmp_path / "greet.py"
    script.write_text(PROGRAM)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TERRA_LAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, str(script), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_the_program_prints_its_flags_with_helpfull(tmp_path: Path) -> None:
    result = _program(tmp_path, "--helpfull")
    assert "greet: says hello" in result.stdout
    for flag in ("--who: whom to greet", "--times: how often", "--flagfile", "--verbosity"):
        assert flag in result.stdout, result.stdout
    short = _program(tmp_path, "--help").stdout
    assert "--who: whom to greet" in short and "--verbosity" not in short


def test_the_program_reads_a_flagfile_and_logs_through_absl(tmp_path: Path) -> None:
    flagfile = tmp_path / "ci.flags"
    flagfile.write_text("--who=ci\n--times=2\n")
    result = _program(tmp_path, f"--flagfile={flagfile}")
    assert (result.returncode, result.stdout) == (0, "hello ci hello ci\n"), result.stderr
    [log] = result.stderr.splitlines()
    assert log.startswith("I") and log.endswith("] greeting ci")  # absl's INFO format


def test_the_program_refuses_a_bad_flag_in_one_line(tmp_path: Path) -> None:
    result = _program(tmp_path, "--who", "a", "--times", "many")
    assert result.returncode == 2
    expected = "greet: --times: invalid int value 'many': expected a whole number (see --help)"
    assert result.stderr.splitlines() == [expected]
    missing = _program(tmp_path)
    assert (missing.returncode, missing.stderr) == (
        2,
        "greet: --who is required: whom to greet (see --help)\n",
    )
