"""parallel_pytest: one pytest per package, totals summed, a failing package fails the run."""

from __future__ import annotations

from collections import Counter

from tools.bench import parallel_pytest


def _package(root, name: str, body: str) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / f"{name}_test.py").write_text(body)


def test_totals_over_packages_and_a_failing_package_fails_the_run(tmp_path, capsys) -> None:
    _package(tmp_path, "good", "def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    _package(
        tmp_path,
        "mixed",
        "import pytest\n\ndef test_c():\n    assert 1 == 2\n\n"
        "@pytest.mark.skip(reason='no GPU')\ndef test_d():\n    pass\n",
    )
    (tmp_path / "empty").mkdir()  # no *_test.py: not a package to run
    status = parallel_pytest.main(["--jobs", "2", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out[-2] == f"failed packages: {tmp_path / 'mixed'}"
    assert out[-1].startswith("2 passed, 1 failed, 1 skipped in ")
    assert out[-1].endswith("(2 packages, 2 at a time)")


def test_all_passing_packages_exit_0(tmp_path, capsys) -> None:
    _package(tmp_path, "one", "def test_a():\n    pass\n")
    assert parallel_pytest.main(["--jobs", "1", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("1 passed in ")


def test_closing_counts_are_parsed_with_errors_folded_together() -> None:
    output = "..F\n==== 1 failed, 2 passed, 3 errors in 1.2s ====\n"
    assert parallel_pytest.counts(output) == Counter(failed=1, passed=2, error=3)
    assert parallel_pytest.counts("collected 0 items\n") == Counter()
    line = parallel_pytest.total_line(Counter(), 3.0, 4, 2)
    assert line == "no tests ran in 3s (4 packages, 2 at a time)"
