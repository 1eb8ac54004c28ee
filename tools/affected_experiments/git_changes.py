"""The files a change touches, read from git: the input that `bazel query` maps to targets.

A pull request is compared from the merge base of its base branch and its head
(`git diff <base>...<head>`), so commits that landed on the base branch after the branch point
do not count as the pull request's changes. Renames are detected (`-M`) so that both the old
path (gone at head) and the new one can be mapped.
"""

import contextlib
import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

BUILD_FILE_NAMES = ("BUILD", "BUILD.bazel")


class GitError(RuntimeError):
    """A git command failed; the message carries git's own explanation."""


@dataclasses.dataclass(frozen=True)
class FileChange:
    """One entry of `git diff --name-status`.

    Attributes:
        status: git's status letter: A added, M modified, D deleted, R renamed, C copied,
            T type changed (file <-> symlink).
        path: the path at head; for D, the path that was deleted.
        old_path: for R and C, the path at base; None otherwise.
    """

    status: str
    path: str
    old_path: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("A", "M", "D", "R", "C", "T"):
            raise ValueError(f"FileChange.status is {self.status!r}; allowed: A, M, D, R, C, T")
        if (self.old_path is None) == (self.status in ("R", "C")):
            raise ValueError(f"FileChange.old_path must be set exactly for R and C, not {self}")


def git(repo: str, *args: str) -> str:
    """Runs `git -C repo args...` and returns its stdout."""
    result = subprocess.run(
        ["git", "-C", repo, *args], capture_output=True, text=True, encoding="utf-8"
    )
    if result.returncode != 0:
        raise GitError(f"`git {' '.join(args)}` failed in {repo}: {result.stderr.strip()}")
    return result.stdout


def resolve_commit(repo: str, rev: str) -> str:
    """The full commit hash `rev` names (a branch, tag, HEAD~2, a short hash...)."""
    try:
        return git(repo, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}").strip()
    except GitError as error:
        raise GitError(f"{rev!r} does not name a commit in {repo}") from error


def merge_base(repo: str, base: str, head: str) -> str:
    """The commit `git diff base...head` compares from."""
    try:
        return git(repo, "merge-base", base, head).strip()
    except GitError as error:
        # A shallow CI clone that lacks the branch point lands here too.
        raise GitError(
            f"{base} and {head} have no merge base (a shallow clone needs more history: "
            f"`git fetch --deepen` or `--unshallow`)"
        ) from error


def parse_name_status(output: str) -> list[FileChange]:
    """Parses `git diff --name-status -z` output.

    With -z each field ends in NUL: `M\\0path\\0`, and renames and copies carry a similarity
    score and two paths: `R097\\0old\\0new\\0`. Paths come through unquoted.
    """
    fields = output.split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    changes = []
    i = 0
    while i < len(fields):
        status = fields[i][:1]
        if status in ("R", "C"):
            changes.append(FileChange(status, path=fields[i + 2], old_path=fields[i + 1]))
            i += 3
        else:
            changes.append(FileChange(status, path=fields[i + 1]))
            i += 2
    return changes


def committed_changes(repo: str, base_commit: str, head_commit: str) -> list[FileChange]:
    """Files changed from `base_commit` to `head_commit`, renames detected."""
    return parse_name_status(
        git(repo, "diff", "--name-status", "-M", "-z", "--no-ext-diff", base_commit, head_commit)
    )


def working_tree_changes(repo: str, base_commit: str) -> list[FileChange]:
    """Files changed from `base_commit` to the working tree, untracked files as added.

    Ignored files (.gitignore: bazel-* links, caches) are left out, as git leaves them out.
    """
    changes = parse_name_status(
        git(repo, "diff", "--name-status", "-M", "-z", "--no-ext-diff", base_commit)
    )
    untracked = git(repo, "ls-files", "--others", "--exclude-standard", "-z").split("\0")
    return changes + [FileChange("A", path) for path in untracked if path]


def uncommitted_paths(repo: str) -> list[str]:
    """Tracked files edited since HEAD (staged or not) and untracked, not ignored, files."""
    entries = git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all").split("\0")
    paths = []
    skip_next = False
    for entry in entries:
        if skip_next:  # the origin path of a staged rename
            skip_next = False
            continue
        if not entry:
            continue
        paths.append(entry[3:])
        skip_next = entry[0] in ("R", "C")
    return sorted(paths)


def package_dirs_at(repo: str, commit: str) -> set[str]:
    """Directories (relative, "" for the root) that hold a BUILD file at `commit`."""
    names = git(repo, "ls-tree", "-r", "--name-only", "-z", commit).split("\0")
    return {os.path.dirname(name) for name in names if os.path.basename(name) in BUILD_FILE_NAMES}


@contextlib.contextmanager
def temporary_worktree(repo: str, commit: str) -> Iterator[str]:
    """A detached checkout of `commit` in a temporary directory, removed afterwards."""
    parent = tempfile.mkdtemp(prefix="affected_experiments_")
    path = os.path.join(parent, "worktree")
    git(repo, "worktree", "add", "--detach", "--quiet", path, commit)
    try:
        yield path
    finally:
        with contextlib.suppress(GitError):
            git(repo, "worktree", "remove", "--force", path)
        shutil.rmtree(parent, ignore_errors=True)
        with contextlib.suppress(GitError):
            git(repo, "worktree", "prune")
