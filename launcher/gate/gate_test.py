"""The launch gate on throwaway repositories: names, dirty trees, unpushed commits, tests.

Bazel is a fake here (a script that logs its arguments); launch_tests_real_test.py asks a
real one.
"""

import re

import pytest

from launcher import testing
from launcher.gate import fake_bazel, gate

FILES = {".gitignore": "runs/\n", "experiments/nano.py": "print('nano')\n"}


@pytest.fixture
def pushed_repo(tmp_path):
    """A clone whose HEAD is on origin/main."""
    source = testing.make_repo(tmp_path / "source", FILES)
    return testing.clone_with_remote(source, tmp_path / "origin.git", tmp_path / "work")


def test_valid_names_pass():
    assert gate.name_problems("nano", "nano_lr3e-4", "2026_11_25_smoke_tests") == []


@pytest.mark.parametrize(
    ("experiment", "run_name", "project", "fragment"),
    [
        ("nano", "nano", "smoke", "must be YYYY_MM_DD_description"),
        ("nano", "nano", "2026_02_30_smoke", "2026_02_30, which is not a real date"),
        ("nano", "nano", "2026_11_25_Smoke", "must be YYYY_MM_DD_description"),
        ("nano", "my run", "2026_11_25_smoke", "run name 'my run' may use letters"),
        ("nano", "base_lr1", "2026_11_25_smoke", "must contain the experiment name 'nano'"),
        ("Nano!", "Nano!", "2026_11_25_smoke", "experiment name 'Nano!'"),
    ],
)
def test_invalid_names_are_refused_with_the_rule(experiment, run_name, project, fragment):
    problems = gate.name_problems(experiment, run_name, project)
    assert any(fragment in problem for problem in problems), problems


def test_a_clean_pushed_checkout_has_no_problems(pushed_repo):
    assert gate.tree_problems(pushed_repo) == []
    assert gate.push_problems(pushed_repo) == []


def test_modified_and_untracked_files_make_the_tree_dirty_but_ignored_ones_do_not(pushed_repo):
    (pushed_repo / "runs").mkdir()
    (pushed_repo / "runs" / "metrics.jsonl").write_text("{}\n")
    assert gate.tree_problems(pushed_repo) == []
    (pushed_repo / "scratch.py").write_text("x = 1\n")
    (problem,) = gate.tree_problems(pushed_repo)
    assert "dirty" in problem and "scratch.py" in problem
    (pushed_repo / "scratch.py").unlink()
    (pushed_repo / "experiments" / "nano.py").write_text("print('edited')\n")
    (problem,) = gate.tree_problems(pushed_repo)
    assert "experiments/nano.py" in problem


def test_a_commit_on_no_remote_branch_must_be_pushed_first(pushed_repo):
    (pushed_repo / "experiments" / "nano.py").write_text("print('new')\n")
    testing.commit_all(pushed_repo, "local only")
    (problem,) = gate.push_problems(pushed_repo)
    assert "on no remote branch" in problem and "git push" in problem
    testing.git(pushed_repo, "push", "-q", "origin", "main")
    assert gate.push_problems(pushed_repo) == []


def test_the_experiment_label_defaults_to_the_experiments_package():
    assert gate.experiment_label("nano") == "//experiments:nano"
    assert gate.experiment_label("nano", "//experiments/ablations:nano") == (
        "//experiments/ablations:nano"
    )
    assert gate.experiment_label("nano", "@//experiments:nano") == "//experiments:nano"


def test_the_query_takes_the_tests_of_every_package_the_experiment_depends_on():
    query = gate.launch_tests_query("//experiments:nano")
    # Packages of the workspace targets in the experiment's closure; no @external ones.
    assert 'siblings(filter("^//", deps(//experiments:nano)))' in query
    assert 'kind("_test rule$", $packages)' in query


def test_from_its_own_package_the_query_takes_only_its_config_test_and_the_lint():
    query = gate.launch_tests_query("//experiments/ablations:s2_only")
    assert "except //experiments/ablations:* in" in query
    assert query.endswith(
        "+ set(//experiments/ablations:s2_only_test //experiments/ablations:lint)"
    )
    assert gate.launch_tests_query("//:nano").endswith("+ set(//:nano_test //:lint)")


@pytest.mark.parametrize(
    ("tags", "excluded"),
    [
        ("[manual]", True),
        ("[exclusive, manual, services]", True),
        ("[reference]", True),
        ("[local, reference]", True),
        ("[services]", True),
        ("[exclusive, local, services]", True),
        ("[manualish]", False),
        ("[servicesish]", False),
        ("[no-reference, local]", False),
        ("[]", False),
    ],
)
def test_the_query_leaves_out_manual_reference_and_services_tests_by_whole_tag(tags, excluded):
    query = gate.launch_tests_query("//experiments:nano")
    regexes = re.findall(r'attr\(tags, "(.*?)", \$tests\)', query)
    assert len(regexes) == len(gate.EXCLUDED_TAGS)
    # Bazel's attr() uses Java regexes; these constructs mean the same in Python's re.
    assert any(re.search(regex, tags) for regex in regexes) == excluded


@pytest.mark.parametrize(
    "label",
    [
        "nano",
        "//experiments",
        "@pypi//:torch",
        "//experiments/...",
        "//experiments:nano + //x:y",
        "//experiments:nano)",
        "//experiments:*",
        "",
    ],
)
def test_anything_but_a_workspace_label_is_refused_before_bazel_sees_it(label):
    with pytest.raises(ValueError, match="give it as //package:name"):
        gate.launch_tests_query(label)


def test_query_output_becomes_sorted_unique_labels_without_bazels_chatter():
    assert gate.parse_query_labels(fake_bazel.QUERY_ANSWER) == fake_bazel.LAUNCH_TESTS
    assert gate.parse_query_labels("") == []


def test_the_computed_tests_are_exactly_what_bazel_test_runs(pushed_repo, tmp_path, capsys):
    bazel, log = fake_bazel.write(tmp_path)
    ran = gate.run_launch_tests(pushed_repo, "//experiments:nano", [str(bazel)])
    assert ran == fake_bazel.LAUNCH_TESTS
    query, test = fake_bazel.calls(log)
    assert query[0] == "query" and query[-1] == gate.launch_tests_query("//experiments:nano")
    assert "--output=label" in query
    assert test == ["test", *fake_bazel.LAUNCH_TESTS]
    summary = capsys.readouterr().err
    assert "the 3 launch tests of //experiments:nano, from 2 packages" in summary
    assert "(experiments, models/nn)" in summary
    assert "launch_tests -- --list //experiments:nano" in summary


def test_failing_tests_refuse_with_the_last_lines_of_output(pushed_repo, tmp_path):
    bazel, _ = fake_bazel.write(tmp_path, 'echo "FAIL: $3 (see test.log)"\nexit 3')
    with pytest.raises(gate.LaunchRefused) as refused:
        gate.check_tests_and_commit(pushed_repo, "nano", "//experiments:nano", [str(bazel)])
    message = str(refused.value)
    assert "nothing was pushed or submitted" in message
    assert "the launch tests of //experiments:nano failed (`bazel test` exit 3)" in message
    assert "FAIL: //experiments:nano_test (see test.log)" in message
    assert "launch_tests -- //experiments:nano" in message  # how to rerun them


def test_a_query_bazel_cannot_answer_refuses_with_bazels_error_and_runs_no_test(
    pushed_repo, tmp_path
):
    error = "ERROR: no such target //experiments:nano_test: target nano_test not declared"
    bazel, log = fake_bazel.write(tmp_path, query_answer="", query_exit=7, query_error=error)
    with pytest.raises(gate.LaunchRefused) as refused:
        gate.check_tests_and_commit(pushed_repo, "nano", "//experiments:nano", [str(bazel)])
    (reason,) = refused.value.reasons
    assert reason.startswith("cannot list the launch tests of //experiments:nano")
    assert "(exit 7)" in reason and error in reason
    assert [call[0] for call in fake_bazel.calls(log)] == ["query"]


def test_a_malformed_label_is_refused_without_running_bazel(pushed_repo, tmp_path):
    bazel, log = fake_bazel.write(tmp_path)
    with pytest.raises(gate.LaunchRefused, match="give it as //package:name"):
        gate.check_tests_and_commit(pushed_repo, "nano", "@pypi//:torch", [str(bazel)])
    assert not log.exists()


def test_passing_tests_return_the_commit_they_vouch_for(pushed_repo, tmp_path):
    bazel, log = fake_bazel.write(tmp_path)
    commit = gate.check_tests_and_commit(pushed_repo, "nano", "", [str(bazel)])
    assert commit == testing.git(pushed_repo, "rev-parse", "HEAD")
    assert fake_bazel.calls(log)[-1] == ["test", *fake_bazel.LAUNCH_TESTS]


def test_a_commit_made_while_the_tests_run_is_refused(pushed_repo, tmp_path):
    """The fake bazel commits (as a user in another terminal would) while 'testing'."""
    tested = testing.git(pushed_repo, "rev-parse", "HEAD")
    bazel, _ = fake_bazel.write(
        tmp_path,
        "echo later > late.txt && git add late.txt && "
        "git -c user.name=u -c user.email=u@u commit -qm late\n"
        "exit 0",
    )
    with pytest.raises(gate.LaunchRefused, match="HEAD moved from") as refused:
        gate.check_tests_and_commit(pushed_repo, "nano", "", [str(bazel)], commit=tested)
    assert tested[:12] in str(refused.value)


def test_a_commit_other_than_head_is_refused_before_the_tests(pushed_repo, tmp_path):
    first = testing.git(pushed_repo, "rev-parse", "HEAD")
    (pushed_repo / "x.txt").write_text("x\n")
    testing.commit_all(pushed_repo, "next")
    never = tmp_path / "never-run"
    bazel, _ = fake_bazel.write(tmp_path, f"touch {never}")
    with pytest.raises(gate.LaunchRefused, match="HEAD moved"):
        gate.check_tests_and_commit(pushed_repo, "nano", "", [str(bazel)], commit=first)
    assert not never.exists()


def test_resolve_commit_outside_a_checkout_says_what_to_do(tmp_path):
    with pytest.raises(gate.LaunchRefused, match="has no commit to launch"):
        gate.resolve_commit(tmp_path)


def test_without_git_the_gate_answers_instead_of_crashing(pushed_repo, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    problems = gate.tree_problems(pushed_repo)
    assert problems and "apt-get install git" in problems[0]
    with pytest.raises(gate.LaunchRefused, match="apt-get install git"):
        gate.resolve_commit(pushed_repo)


def test_a_detached_head_is_told_to_create_a_branch(pushed_repo):
    (pushed_repo / "y.txt").write_text("y\n")
    testing.commit_all(pushed_repo, "unpushed")
    testing.git(pushed_repo, "checkout", "-q", "--detach")
    (problem,) = gate.push_problems(pushed_repo)
    assert "HEAD is detached" in problem and "git switch -c" in problem


def test_a_group_runs_the_union_of_its_experiments_launch_tests_in_one_bazel_test(
    pushed_repo, tmp_path, capsys
):
    answers = {
        "//experiments:base": "//experiments:base_test\n//models/nn:attention_test\n",
        "//experiments:base_wide": (
            "//experiments:base_wide_test\n//models/nn:attention_test\n//models/encoder:vit_test\n"
        ),
    }
    bazel, log = fake_bazel.write(tmp_path, answers_by_label=answers)
    labels = ["//experiments:base", "//experiments:base_wide", "//experiments:base"]
    commit = gate.check_group_tests_and_commit(pushed_repo, labels, [str(bazel)])
    assert commit == testing.git(pushed_repo, "rev-parse", "HEAD")
    *queries, test = fake_bazel.calls(log)
    # One query per distinct experiment, then one test command over the union, each test once.
    assert [query[-1] for query in queries] == [
        gate.launch_tests_query("//experiments:base"),
        gate.launch_tests_query("//experiments:base_wide"),
    ]
    union = [
        "//experiments:base_test",
        "//experiments:base_wide_test",
        "//models/encoder:vit_test",
        "//models/nn:attention_test",
    ]
    assert test == ["test", *union]
    summary = capsys.readouterr().err
    assert "the 4 launch tests of 2 experiments (//experiments:base, //experiments:base_wide)" in (
        summary
    )
    assert "from 3 packages (experiments, models/encoder, models/nn)" in summary


def test_a_group_with_a_malformed_label_names_every_one_and_runs_no_bazel(pushed_repo, tmp_path):
    bazel, log = fake_bazel.write(tmp_path)
    with pytest.raises(gate.LaunchRefused) as refused:
        gate.check_group_tests_and_commit(
            pushed_repo, ["//experiments:nano", "nano", "@pypi//:torch"], [str(bazel)]
        )
    assert len(refused.value.reasons) == 2
    assert "'nano'" in refused.value.reasons[0] and "@pypi" in refused.value.reasons[1]
    assert not log.exists()


def test_a_failing_group_names_its_experiments_and_how_to_rerun_each(pushed_repo, tmp_path):
    bazel, _ = fake_bazel.write(tmp_path, "exit 3")
    with pytest.raises(gate.LaunchRefused) as refused:
        gate.check_group_tests_and_commit(
            pushed_repo, ["//experiments:nano", "//experiments:base"], [str(bazel)]
        )
    (reason,) = refused.value.reasons
    assert "the launch tests of 2 experiments (//experiments:nano, //experiments:base) failed" in (
        reason
    )
    assert "launch_tests -- LABEL for each: //experiments:nano, //experiments:base" in reason
