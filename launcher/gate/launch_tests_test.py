"""`bazel run //launcher/gate:launch_tests`: the gate's list, printed and run (fake Bazel)."""

import pytest

from launcher.gate import fake_bazel, gate, launch_tests


@pytest.fixture
def use_bazel(monkeypatch):
    """Makes the binary run `bazel` (a fake) in place of the workspace's tools/bazel."""

    def use(bazel):
        monkeypatch.setattr(gate, "default_bazel", lambda workspace: [str(bazel)])

    return use


def test_list_prints_the_gates_tests_and_runs_none(tmp_path, capsys, use_bazel):
    bazel, log = fake_bazel.write(tmp_path)
    use_bazel(bazel)
    assert launch_tests.main(["--list", f"--workspace={tmp_path}", "nano"]) == 0
    assert capsys.readouterr().out.split() == fake_bazel.LAUNCH_TESTS
    (query,) = fake_bazel.calls(log)
    assert query[-1] == gate.launch_tests_query("//experiments:nano")


def test_without_list_it_runs_exactly_the_printed_tests(tmp_path, capsys, use_bazel):
    bazel, log = fake_bazel.write(tmp_path)
    use_bazel(bazel)
    experiment = "//experiments/ablations:s2_only"
    assert launch_tests.main([f"--workspace={tmp_path}", experiment]) == 0
    query, test = fake_bazel.calls(log)
    assert query[-1] == gate.launch_tests_query(experiment)
    assert test == ["test", *fake_bazel.LAUNCH_TESTS]
    assert capsys.readouterr().out.split() == fake_bazel.LAUNCH_TESTS


def test_a_failing_test_exits_1(tmp_path, use_bazel):
    bazel, _ = fake_bazel.write(tmp_path, "exit 3")
    use_bazel(bazel)
    assert launch_tests.main([f"--workspace={tmp_path}", "nano"]) == 1


def test_the_workspace_defaults_to_where_bazel_run_was_called(tmp_path, monkeypatch, use_bazel):
    bazel, log = fake_bazel.write(tmp_path, "pwd > ran_in.txt")
    use_bazel(bazel)
    monkeypatch.setenv("BUILD_WORKSPACE_DIRECTORY", str(tmp_path))
    assert launch_tests.main(["nano"]) == 0
    assert (tmp_path / "ran_in.txt").read_text().strip() == str(tmp_path)


@pytest.mark.parametrize(
    ("experiment", "fragment"),
    [("Nano!", "give it as //package:name"), ("nope", "no such target //experiments:nope")],
)
def test_an_experiment_bazel_cannot_list_exits_2_with_one_line(
    tmp_path, capsys, use_bazel, experiment, fragment
):
    error = "ERROR: no such target //experiments:nope: target nope not declared"
    bazel, _ = fake_bazel.write(tmp_path, query_answer="", query_exit=7, query_error=error)
    use_bazel(bazel)
    assert launch_tests.main([f"--workspace={tmp_path}", experiment]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("launch_tests: ") and fragment in line
