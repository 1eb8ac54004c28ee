"""bazel_query: the query text a change becomes and the parsing of Bazel's answer (no Bazel)."""

import re

import pytest

from tools.affected_experiments import bazel_query
from tools.affected_experiments.change_rules import Plan


def test_all_changed_files_go_through_one_anchored_filter_over_their_packages() -> None:
    plan = Plan(
        source_labels={
            "models/nn": ["//models/nn:attention.py", "//models/nn:mlp.py"],
            "": ["//:conftest.py"],
        }
    )
    expression = bazel_query.seeds_expression(plan)
    assert expression.count("filter(") == 1
    [(regex, packages)] = re.findall(r'filter\("(.*)", (.*)\)', expression)
    assert packages == "//:* + //models/nn:*"
    # The regex is used by Java; these constructs behave the same in Python's re.
    for label in ("//models/nn:attention.py", "//models/nn:mlp.py", "//:conftest.py"):
        assert re.search(regex, label)
    for label in ("//models/nn:attention_py", "//models/nn:attention.py.bak", "//x//:conftest.py"):
        assert not re.search(regex, label)


def test_build_and_bzl_paths_go_through_one_rbuildfiles_expanded_to_their_packages() -> None:
    plan = Plan(build_paths=["models/nn/BUILD", "tools/build_rules/python.bzl"])
    assert bazel_query.seeds_expression(plan) == (
        'siblings(rbuildfiles("models/nn/BUILD", "tools/build_rules/python.bzl"))'
    )


def test_a_plan_that_affects_nothing_has_no_seeds() -> None:
    with pytest.raises(ValueError, match="affects something"):
        bazel_query.seeds_expression(Plan())


def test_the_workspace_marker_is_asked_for_only_when_a_bzl_changed() -> None:
    build_only = bazel_query.affected_expression(Plan(build_paths=["a/BUILD"]), ["//e:x"])
    with_bzl = bazel_query.affected_expression(Plan(build_paths=["a/defs.bzl"]), ["//e:x"])
    assert "//external" not in build_only
    assert 'rbuildfiles("a/defs.bzl"))' in with_bzl.splitlines()[-1]
    assert "//external" in with_bzl.splitlines()[-1]


def test_experiments_are_intersected_with_the_affected_set_only_when_there_are_some() -> None:
    plan = Plan(source_labels={"a": ["//a:a.py"]})
    assert "set(//e:x //e:y)" in bazel_query.affected_expression(plan, ["//e:x", "//e:y"])
    assert "set(" not in bazel_query.affected_expression(plan, [])
    assert "set(//e:x)" in bazel_query.everything_expression(["//e:x"])


@pytest.mark.parametrize(
    ("tags", "tagged"),
    [
        ("[experiment]", True),
        ("[manual, experiment]", True),
        ("[experiment, gpu]", True),
        ("[experimental]", False),
        ("[no-experiment]", False),
        ("[]", False),
    ],
)
def test_the_tag_regex_matches_whole_list_elements_only(tags: str, tagged: bool) -> None:
    expression = bazel_query.tagged_experiments_expression("experiments")
    [regex] = re.findall(r'attr\(tags, "(.*)", kind', expression)
    assert bool(re.search(regex, tags)) == tagged


def test_label_kind_output_parses_into_kind_and_label_pairs() -> None:
    output = "py_test rule //a:a_test\nsource file //external:WORKSPACE\n\ngenerated file //b:c\n"
    assert bazel_query.parse_label_kind(output) == [
        ("py_test rule", "//a:a_test"),
        ("source file", "//external:WORKSPACE"),
        ("generated file", "//b:c"),
    ]
