"""What each changed file affects, before Bazel is asked: the rules of tools/affected_experiments.

Every changed path gets one `Effect`:

- a file that configures the whole build (WORKSPACE, .bazelrc, the pip locks, the Python
  toolchain, tools/bazel, third_party/bazel/**) affects everything: `EVERYTHING_PATTERNS`;
- a BUILD file affects its package's targets and their dependents, and a .bzl file the
  packages that load it, directly or through other .bzl files (`rbuildfiles`);
- any other file inside a package affects the targets that contain it and their dependents;
  one that no target lists (a README next to the code) affects nothing;
- a deleted file (or the old side of a rename) affects the package that owned it at the base
  revision, whole, when that package still exists: its BUILD file still describes the targets
  that lost the file. When the package is gone, its former dependents had to edit their own
  BUILD files to drop it, and those edits are changes of their own;
- files outside every package (docs/, the top-level README when there is no top-level BUILD)
  and under .bazelignore affect nothing.

The result is a `Plan`: the file labels and BUILD/.bzl paths that seed one `bazel query`.
"""

import dataclasses
import enum
import fnmatch
import os
from collections.abc import Callable, Iterable

from tools.affected_experiments.git_changes import BUILD_FILE_NAMES, FileChange

# Files Bazel reads outside any package, or that repository rules read (so `bazel query`
# cannot map them to targets): a change to one can change any target, so it affects all.
EVERYTHING_PATTERNS = (
    "WORKSPACE",
    "WORKSPACE.bazel",
    ".bazelrc",
    ".bazelversion",
    # Adding a path here removes its packages from //...; removing one adds them.
    ".bazelignore",
    # The pip locks (@pypi, @reference) and the code that turns them into the venv toolchain.
    "third_party/python/requirements.lock",
    "third_party/*/requirements.lock",
    "third_party/python/*.bzl",
    "third_party/python/make_venv.py",
    # Bazel itself and the rule repositories that stand in for the downloaded ones.
    "tools/bazel",
    "third_party/bazel/**",
    # buildifier's npm lock, read by a repository rule; every package's lint test uses it.
    "third_party/buildifier/package.json",
    "third_party/buildifier/package-lock.json",
)

# Characters Bazel 4 cannot have in a label (or that our query strings cannot quote).
_UNLABELLABLE = frozenset('"\\\n\r\t')


class Rule(enum.Enum):
    """Why a changed path affects what it affects; the value is the sentence reports print."""

    EVERYTHING = "affects everything"
    SOURCE = "targets that contain it, and their dependents"
    BUILD_FILE = "its package's targets, and their dependents"
    BZL = "packages that load it, their targets, and their dependents"
    DELETED = "the package that owned it at base, and its dependents"
    PACKAGE_GONE = "nothing: its package is deleted too"
    OUTSIDE_BUILD = "nothing: not in any Bazel package"


@dataclasses.dataclass(frozen=True)
class Effect:
    """What one path of a change affects.

    Attributes:
        status: the git status letter of the change (R for both sides of a rename).
        path: the path this effect is about (the old path for the old side of a rename).
        rule: which rule applies.
        label: SOURCE: the file's label at head (`//pkg:name`); None otherwise.
        build_path: BUILD_FILE, BZL, DELETED: the path handed to `rbuildfiles`; else None.
    """

    status: str
    path: str
    rule: Rule
    label: str | None = None
    build_path: str | None = None


@dataclasses.dataclass
class Plan:
    """The query seeds of a whole change.

    Attributes:
        effects: one per changed path, in diff order (a rename has two).
        everything_because: paths that matched `EVERYTHING_PATTERNS`.
        source_labels: labels of changed files at head, grouped by package ("" = root).
        build_paths: BUILD and .bzl paths at head whose loading packages are affected.
    """

    effects: list[Effect] = dataclasses.field(default_factory=list)
    everything_because: list[str] = dataclasses.field(default_factory=list)
    source_labels: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    build_paths: list[str] = dataclasses.field(default_factory=list)

    @property
    def affects_nothing(self) -> bool:
        return not (self.everything_because or self.source_labels or self.build_paths)


def path_matches(pattern: str, path: str) -> bool:
    """Glob match by path segment: `*` stays inside one segment, `**` spans any number."""
    return _match_segments(pattern.split("/"), path.split("/"))


def _match_segments(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match_segments(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return (
        bool(parts)
        and fnmatch.fnmatchcase(parts[0], pattern[0])
        and _match_segments(pattern[1:], parts[1:])
    )


def read_bazelignore(workspace: str) -> list[str]:
    """The directories .bazelignore removes from the build, without trailing slashes."""
    try:
        with open(os.path.join(workspace, ".bazelignore"), encoding="utf-8") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return []
    return [line.strip().rstrip("/") for line in lines if line.strip() and line[0] != "#"]


class PackageLookup:
    """Finds the Bazel package that owns a path: the nearest directory with a BUILD file.

    Args:
        is_package: whether a directory (relative, "" for the root) holds a BUILD file.
        ignored: directories excluded by .bazelignore; nothing under them is in a package.
    """

    def __init__(self, is_package: Callable[[str], bool], ignored: Iterable[str] = ()) -> None:
        self._is_package = is_package
        self._ignored = tuple(ignored)

    @classmethod
    def on_disk(cls, workspace: str) -> "PackageLookup":
        """Packages as Bazel sees them in a checked-out workspace."""

        def is_package(directory: str) -> bool:
            return any(
                os.path.isfile(os.path.join(workspace, directory, name))
                for name in BUILD_FILE_NAMES
            )

        return cls(is_package, read_bazelignore(workspace))

    @classmethod
    def from_dirs(cls, package_dirs: set[str], ignored: Iterable[str] = ()) -> "PackageLookup":
        """Packages of a revision that is not checked out (see git_changes.package_dirs_at)."""
        return cls(package_dirs.__contains__, ignored)

    def is_ignored(self, path: str) -> bool:
        return any(path == d or path.startswith(d + "/") for d in self._ignored)

    def package_of(self, path: str) -> str | None:
        """The package owning the file `path`, or None when it is outside every package."""
        if self.is_ignored(path):
            return None
        directory = os.path.dirname(path)
        while True:
            if self._is_package(directory):
                return directory
            if not directory:
                return None
            directory = os.path.dirname(directory)

    def build_file_of(self, package: str, exists: Callable[[str], bool]) -> str | None:
        """The path of `package`'s BUILD file, if the package exists."""
        for name in BUILD_FILE_NAMES:
            path = os.path.join(package, name) if package else name
            if exists(path):
                return path
        return None


def file_label(package: str, path: str) -> str:
    """The label of the source file `path` in `package`: `//models/nn:attention.py`."""
    name = path[len(package) + 1 :] if package else path
    return f"//{package}:{name}"


def plan_change(
    changes: list[FileChange],
    head: PackageLookup,
    base: PackageLookup,
    exists_at_head: Callable[[str], bool],
) -> Plan:
    """Applies the rules of this module to every changed path.

    Args:
        changes: the diff from the merge base to head.
        head: packages at head (the tree Bazel will query).
        base: packages at the merge base, for deleted paths.
        exists_at_head: whether a path exists in the tree Bazel will query.
    """
    plan = Plan()
    for change in changes:
        if change.status == "R":
            # The old path is gone at head: map it like a deletion.
            _plan_path(
                plan,
                "R",
                change.old_path,
                deleted=True,
                head=head,
                base=base,
                exists_at_head=exists_at_head,
            )
        _plan_path(
            plan,
            change.status,
            change.path,
            deleted=change.status == "D",
            head=head,
            base=base,
            exists_at_head=exists_at_head,
        )
    return plan


def _plan_path(
    plan: Plan,
    status: str,
    path: str,
    *,
    deleted: bool,
    head: PackageLookup,
    base: PackageLookup,
    exists_at_head: Callable[[str], bool],
) -> None:
    def add(rule: Rule, label: str | None = None, build_path: str | None = None) -> None:
        plan.effects.append(Effect(status, path, rule, label=label, build_path=build_path))
        if label is not None:
            plan.source_labels.setdefault(label[2:].partition(":")[0], []).append(label)
        if build_path is not None and build_path not in plan.build_paths:
            plan.build_paths.append(build_path)

    if any(path_matches(pattern, path) for pattern in EVERYTHING_PATTERNS):
        plan.everything_because.append(path)
        add(Rule.EVERYTHING)
        return
    if set(path) & _UNLABELLABLE:
        add(Rule.OUTSIDE_BUILD)
        return
    if deleted:
        owner = base.package_of(path)
        if owner is None:
            add(Rule.OUTSIDE_BUILD)
            return
        build_file = head.build_file_of(owner, exists_at_head)
        if build_file is None:
            add(Rule.PACKAGE_GONE)
        else:
            add(Rule.DELETED, build_path=build_file)
        return
    package = head.package_of(path)
    if package is None:
        add(Rule.OUTSIDE_BUILD)
        return
    name = os.path.basename(path)
    if name in BUILD_FILE_NAMES and os.path.dirname(path) == package:
        add(Rule.BUILD_FILE, build_path=path)
    elif name.endswith(".bzl"):
        # A .bzl can also be a file target (exports_files, bzl_library): seed both ways.
        add(Rule.BZL, label=file_label(package, path), build_path=path)
    else:
        add(Rule.SOURCE, label=file_label(package, path))
