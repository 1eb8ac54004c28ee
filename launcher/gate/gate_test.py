"""The launch gate on throwaway repositories: names, dirty trees, unpushed commits, tests."""

import pytest

from launcher import testing
from launcher.gate import gate

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


def test_launch_tests_target_follows_the_experiment_label():
    assert gate.launch_tests_target("nano") == "//experiments:nano_launch_tests"
    assert gate.launch_tests_target("nano", "//experiments:nano") == (
        "//experiments:nano_launch_tests"
    )


def test_failing_tests_refuse_with_the_last_lines_of_output(pushed_repo, tmp_path):
    fake_bazel = tmp_path / "bazel"
    fake_bazel.write_text('#!/bin/sh\necho "FAIL: $2 (see test.log)"\nexit 3\n')
    fake_bazel.chmod(0o755)
    with pytest.raises(gate.LaunchRefused) as refused:
        gate.check_tests_and_commit(pushed_repo, "nano", "//experiments:nano", [str(fake_bazel)])
    message = str(refused.value)
    assert "nothing was pushed or submitted" in message
    assert "exit 3" in message and "FAIL: //experiments:nano_launch_tests" in message


def test_passing_tests_return_the_commit_they_vouch_for(pushed_repo, tmp_path):
    fake_bazel = tmp_path / "bazel"
    fake_bazel.write_text("#!/bin/sh\nexit 0\n")
    fake_bazel.chmod(0o755)
    commit = gate.check_tests_and_commit(pushed_repo, "nano", "", [str(fake_bazel)])
    assert commit == testing.git(pushed_repo, "rev-parse", "HEAD")


def test_a_commit_made_while_the_tests_run_is_refused(pushed_repo, tmp_path):
    """The fake bazel commits (as a user in another terminal would) while 'testing'."""
    tested = testing.git(pushed_repo, "rev-parse", "HEAD")
    fake_bazel = tmp_path / "bazel"
    fake_bazel.write_text(
        "#!/bin/sh\n"
        "echo later > late.txt && git add late.txt && "
        "git -c user.name=u -c user.email=u@u commit -qm late\n"
        "exit 0\n"
    )
    fake_bazel.chmod(0o755)
    with pytest.raises(gate.LaunchRefused, match="HEAD moved from") as refused:
        gate.check_tests_and_commit(pushed_repo, "nano", "", [str(fake_bazel)], commit=tested)
    assert tested[:12] in str(refused.value)


def test_a_commit_other_than_head_is_refused_before_the_tests(pushed_repo, tmp_path):
    first = testing.git(pushed_repo, "rev-parse", "HEAD")
    (pushed_repo / "x.txt").write_text("x\n")
    testing.commit_all(pushed_repo, "next")
    never = tmp_path / "never-run"
    fake_bazel = tmp_path / "bazel"
    fake_bazel.write_text(f"#!/bin/sh\ntouch {never}\n")
    fake_bazel.chmod(0o755)
    with pytest.raises(gate.LaunchRefused, match="HEAD moved"):
        gate.check_tests_and_commit(pushed_repo, "nano", "", [str(fake_bazel)], commit=first)
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
