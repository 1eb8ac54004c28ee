"""Every name rule is a full match: no trailing newline, no path tricks, sane lengths."""

import pytest

from models.names import names

HOSTILE = [
    "",
    "run\n",
    "run\n#SBATCH --wrap=x",
    "a/b",
    "..",
    "../escape",
    ".hidden",
    "-flag",
    "_under",
    "tab\tname",
    "nul\x00name",
    "bell\x07",
    "del\x7f",
    "space name",
    "quote'name",
    "dollar$name",
    "semi;name",
    "é",
    "x" * 129,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_run_names_are_refused(value):
    assert names.run_name_problem(value) is not None
    with pytest.raises(names.InvalidNameError):
        names.check_run_name(value)


@pytest.mark.parametrize("value", ["nano", "base_s2_only_lr1e-4", "A.b-c_d", "9", "x" * 128])
def test_valid_run_names_pass(value):
    assert names.check_run_name(value) == value


def test_trailing_newline_project_is_refused():
    assert names.project_problem("2026_11_25_study") is None
    assert names.project_problem("2026_11_25_study\n") is not None


def test_project_needs_a_real_date():
    assert "not a real date" in names.project_problem("2026_02_30_study")


@pytest.mark.parametrize("value", ["Base", "base\n", "1base", "base-x", "", "a" * 101])
def test_bad_experiment_names(value):
    assert names.experiment_problem(value) is not None


def test_cluster_names():
    assert names.cluster_problem("slurm") is None
    assert names.cluster_problem("local\n") is not None
    assert names.cluster_problem("../x") is not None


def test_messages_show_control_characters_escaped_and_cut():
    message = names.run_name_problem("bad\nname" + "x" * 500)
    assert "\n" not in message
    assert "\\n" in message
    assert len(message) < 300


def test_control_characters_in_arguments():
    assert names.control_character_problem("override", "--a=b") is None
    assert "\\x0a" in names.control_character_problem("override", "--a=b\nc")
