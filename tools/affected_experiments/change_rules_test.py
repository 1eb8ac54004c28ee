"""change_rules: which rule each changed path falls under, and the query seeds it yields."""

import pytest

from tools.affected_experiments.change_rules import (
    EVERYTHING_PATTERNS,
    PackageLookup,
    Plan,
    Rule,
    path_matches,
    plan_change,
)
from tools.affected_experiments.git_changes import FileChange


@pytest.mark.parametrize(
    "path",
    [
        "WORKSPACE",
        ".bazelrc",
        "third_party/python/requirements.lock",
        "third_party/reference/requirements.lock",
        "third_party/python/pip_lock.bzl",
        "third_party/python/make_venv.py",
        "tools/bazel",
        "third_party/bazel/debian_repos.bzl",
        "third_party/bazel/remote_coverage_tools/BUILD",
    ],
)
def test_build_wide_files_affect_everything(path: str) -> None:
    assert any(path_matches(pattern, path) for pattern in EVERYTHING_PATTERNS)


@pytest.mark.parametrize(
    "path",
    [
        "third_party/python/requirements.in",
        "third_party/python/make_venv_test.py",
        "third_party/python/sub/x.bzl",
        "tools/bazel_helper.py",
        "docs/WORKSPACE",
        "models/.bazelrc.md",
    ],
)
def test_near_misses_of_build_wide_files_do_not_affect_everything(path: str) -> None:
    assert not any(path_matches(pattern, path) for pattern in EVERYTHING_PATTERNS)


def test_a_single_star_stays_in_one_segment_and_a_double_star_spans_any_number() -> None:
    assert path_matches("a/*.bzl", "a/x.bzl")
    assert not path_matches("a/*.bzl", "a/b/x.bzl")
    assert path_matches("a/**", "a/b/c/d")
    assert path_matches("a/**/x", "a/x")
    assert not path_matches("a/**", "ab/c")


PACKAGES = {"", "models/nn", "experiments", "third_party/bazel/remote_coverage_tools"}


def lookup(packages: set[str] = PACKAGES) -> PackageLookup:
    return PackageLookup.from_dirs(packages, ignored=["third_party/bazel/remote_coverage_tools"])


def test_a_file_belongs_to_its_nearest_package_unless_bazelignore_removes_it() -> None:
    packages = lookup()
    assert packages.package_of("models/nn/sub/attention.py") == "models/nn"
    assert packages.package_of("models/README.md") == ""
    assert packages.package_of("third_party/bazel/remote_coverage_tools/BUILD") is None
    assert lookup({"models/nn"}).package_of("docs/notes.md") is None


BUILD_FILES_AT_HEAD = frozenset({"BUILD", "models/nn/BUILD", "experiments/BUILD"})


def plan(
    changes: list[FileChange],
    *,
    base: set[str] = PACKAGES,
    at_head: frozenset[str] = BUILD_FILES_AT_HEAD,
) -> Plan:
    return plan_change(changes, lookup(), lookup(base), at_head.__contains__)


def test_source_files_become_labels_grouped_by_package() -> None:
    result = plan(
        [FileChange("M", "models/nn/sub/attention.py"), FileChange("A", "experiments/b.py")]
    )
    assert result.source_labels == {
        "models/nn": ["//models/nn:sub/attention.py"],
        "experiments": ["//experiments:b.py"],
    }
    assert result.build_paths == [] and result.everything_because == []
    assert [effect.rule for effect in result.effects] == [Rule.SOURCE, Rule.SOURCE]


def test_a_root_package_file_gets_a_root_label() -> None:
    assert plan([FileChange("M", "conftest.py")]).source_labels == {"": ["//:conftest.py"]}


def test_build_files_and_bzl_files_seed_rbuildfiles_and_a_bzl_is_also_a_file() -> None:
    result = plan([FileChange("M", "models/nn/BUILD"), FileChange("M", "experiments/exp.bzl")])
    assert result.build_paths == ["models/nn/BUILD", "experiments/exp.bzl"]
    assert result.source_labels == {"experiments": ["//experiments:exp.bzl"]}
    assert [effect.rule for effect in result.effects] == [Rule.BUILD_FILE, Rule.BZL]


def test_a_deleted_file_seeds_the_package_that_owned_it_at_base() -> None:
    # At base models/nn/sub was a package of its own; at head that BUILD file is gone too.
    result = plan(
        [FileChange("D", "models/nn/sub/old.py"), FileChange("D", "models/nn/x.py")],
        base=PACKAGES | {"models/nn/sub"},
    )
    assert [effect.rule for effect in result.effects] == [Rule.PACKAGE_GONE, Rule.DELETED]
    assert result.build_paths == ["models/nn/BUILD"]
    assert result.source_labels == {}


def test_a_deleted_build_file_maps_to_the_build_file_that_replaced_it() -> None:
    result = plan(
        [FileChange("D", "experiments/BUILD")], at_head=frozenset({"experiments/BUILD.bazel"})
    )
    assert [effect.rule for effect in result.effects] == [Rule.DELETED]
    assert result.build_paths == ["experiments/BUILD.bazel"]


def test_a_rename_maps_the_old_path_as_deleted_and_the_new_path_as_added() -> None:
    result = plan([FileChange("R", "experiments/moved.py", old_path="models/nn/moved.py")])
    assert [(effect.path, effect.rule) for effect in result.effects] == [
        ("models/nn/moved.py", Rule.DELETED),
        ("experiments/moved.py", Rule.SOURCE),
    ]
    assert result.build_paths == ["models/nn/BUILD"]
    assert result.source_labels == {"experiments": ["//experiments:moved.py"]}


def test_docs_outside_packages_and_unlabellable_names_affect_nothing() -> None:
    no_root_package = lookup({"models/nn"})
    result = plan_change(
        [FileChange("M", "docs/notes.md"), FileChange("A", 'models/nn/quote".py')],
        no_root_package,
        no_root_package,
        BUILD_FILES_AT_HEAD.__contains__,
    )
    assert [effect.rule for effect in result.effects] == [Rule.OUTSIDE_BUILD] * 2
    assert result.affects_nothing


def test_a_lock_change_affects_everything_and_seeds_nothing_else() -> None:
    result = plan([FileChange("M", "third_party/python/requirements.lock")])
    assert result.everything_because == ["third_party/python/requirements.lock"]
    assert result.effects[0].rule == Rule.EVERYTHING
    assert not result.source_labels and not result.build_paths
