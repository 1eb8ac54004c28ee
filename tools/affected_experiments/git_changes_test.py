"""git_changes on real git: diff parsing, merge bases, uncommitted files, base-revision packages."""

import os

import pytest

from tools.affected_experiments import git_changes
from tools.affected_experiments.git_changes import FileChange, GitError


class Repo:
    """A bare-bones git repository in a temporary directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.environ.setdefault("HOME", path)
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str) -> str:
        identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
        return git_changes.git(self.path, *identity, "-c", "commit.gpgsign=false", *args)

    def write(self, relative: str, text: str = "x\n") -> None:
        path = os.path.join(self.path, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)

    def commit(self, message: str = "change") -> str:
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        return self.git("rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path) -> Repo:
    repo = Repo(str(tmp_path))
    repo.write("pkg/BUILD", "")
    repo.write("pkg/a.py", "a = 1\n" * 20)
    repo.write("docs/readme.md")
    repo.commit("initial")
    return repo


def test_parse_name_status_reads_both_paths_of_a_rename_and_odd_characters() -> None:
    output = "M\0pkg/a b.py\0R097\0old\tname.py\0new.py\0D\0gone.py\0A\0ünï.py\0"
    assert git_changes.parse_name_status(output) == [
        FileChange("M", "pkg/a b.py"),
        FileChange("R", "new.py", old_path="old\tname.py"),
        FileChange("D", "gone.py"),
        FileChange("A", "ünï.py"),
    ]


def test_file_change_rejects_an_unknown_status_and_a_rename_without_its_old_path() -> None:
    with pytest.raises(ValueError, match="status"):
        FileChange("X", "a.py")
    with pytest.raises(ValueError, match="old_path"):
        FileChange("R", "a.py")


def test_committed_changes_detect_a_rename_and_a_deletion(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD").strip()
    repo.git("mv", "pkg/a.py", "pkg/b.py")
    repo.git("rm", "--quiet", "docs/readme.md")
    head = repo.commit()
    assert git_changes.committed_changes(repo.path, base, head) == [
        FileChange("D", "docs/readme.md"),
        FileChange("R", "pkg/b.py", old_path="pkg/a.py"),
    ]


def test_the_merge_base_leaves_out_commits_the_base_branch_made_after_branching(
    repo: Repo,
) -> None:
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("pkg/feature.py")
    feature = repo.commit()
    repo.git("checkout", "--quiet", "main")
    repo.write("pkg/main_only.py")
    main = repo.commit()
    merge_base = git_changes.merge_base(repo.path, main, feature)
    changed = git_changes.committed_changes(repo.path, merge_base, feature)
    assert changed == [FileChange("A", "pkg/feature.py")]


def test_unrelated_histories_have_no_merge_base_and_say_so(repo: Repo) -> None:
    repo.git("checkout", "--quiet", "--orphan", "other")
    repo.write("other.txt")
    other = repo.commit()
    with pytest.raises(GitError, match="no merge base"):
        git_changes.merge_base(repo.path, "main", other)


def test_resolve_commit_names_the_revision_it_cannot_find(repo: Repo) -> None:
    with pytest.raises(GitError, match="'nope'"):
        git_changes.resolve_commit(repo.path, "nope")


def test_working_tree_changes_add_untracked_files_but_not_ignored_ones(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD").strip()
    repo.write(".gitignore", "*.log\n")
    repo.commit("ignore logs")
    repo.write("pkg/a.py", "edited\n")
    repo.write("pkg/new.py")
    repo.write("pkg/debug.log")
    assert git_changes.working_tree_changes(repo.path, base) == [
        FileChange("A", ".gitignore"),
        FileChange("M", "pkg/a.py"),
        FileChange("A", "pkg/new.py"),
    ]


def test_uncommitted_paths_list_staged_unstaged_renamed_and_untracked_files(repo: Repo) -> None:
    assert git_changes.uncommitted_paths(repo.path) == []
    repo.write("pkg/a.py", "edited\n")
    repo.write("pkg/new.py")
    repo.git("mv", "docs/readme.md", "docs/README.md")
    assert git_changes.uncommitted_paths(repo.path) == [
        "docs/README.md",
        "pkg/a.py",
        "pkg/new.py",
    ]


def test_package_dirs_at_read_the_revision_not_the_working_tree(repo: Repo) -> None:
    first = repo.git("rev-parse", "HEAD").strip()
    repo.write("BUILD.bazel", "")
    repo.write("deep/er/BUILD", "")
    repo.commit()
    repo.write("uncommitted/BUILD", "")
    assert git_changes.package_dirs_at(repo.path, first) == {"pkg"}
    assert git_changes.package_dirs_at(repo.path, "HEAD") == {"", "pkg", "deep/er"}


def test_a_temporary_worktree_holds_the_commit_and_is_removed_afterwards(repo: Repo) -> None:
    first = repo.git("rev-parse", "HEAD").strip()
    repo.write("pkg/later.py")
    repo.commit()
    with git_changes.temporary_worktree(repo.path, first) as tree:
        assert os.path.isfile(os.path.join(tree, "pkg", "a.py"))
        assert not os.path.exists(os.path.join(tree, "pkg", "later.py"))
    assert not os.path.exists(tree)
    assert len(repo.git("worktree", "list").splitlines()) == 1
