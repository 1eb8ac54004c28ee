"""pytest over many packages at once: one pytest process per package folder, N at a time.

    python -m tools.bench.parallel_pytest --jobs 8 models/

gpu_check.sh's model-test step: the models/ suite is about 12 minutes of single-process work
on 2 cores (its Bazel test times add up to 750 s), more than the kit's 10-minute budget; there
is no pytest-xdist in the lock. Each process keeps the 2 torch threads conftest.py gives it,
so --jobs is about half the cores. Every package's output goes to stdout in turn (whole, not
interleaved), then one line of totals: "N passed, M failed, K skipped in S s (P packages,
J at a time)". Exit status 1 when any package failed or errored (a package with no tests,
pytest's 5, is fine), else 0.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

_COUNT = re.compile(r"\b(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)\b")
NO_TESTS_COLLECTED = 5


def packages(roots: list[Path]) -> list[Path]:
    """The folders under `roots` that hold a *_test.py file, sorted."""
    return sorted({test.parent for root in roots for test in Path(root).rglob("*_test.py")})


def counts(output: str) -> Counter[str]:
    """pytest's closing counts ("3 passed, 1 skipped in 2.0s") as a Counter; errors under
    'error'."""
    for line in reversed(output.splitlines()):
        found = _COUNT.findall(line)
        if found:
            total: Counter[str] = Counter()
            for number, kind in found:
                total["error" if kind.startswith("error") else kind] += int(number)
            return total
    return Counter()


def total_line(total: Counter[str], seconds: float, num_packages: int, jobs: int) -> str:
    kinds = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "deselected")
    parts = [f"{total[kind]} {kind}" for kind in kinds if total[kind]] or ["no tests ran"]
    return f"{', '.join(parts)} in {seconds:.0f}s ({num_packages} packages, {jobs} at a time)"


def _run_one(package: Path, pytest_args: list[str]) -> tuple[Path, int, str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args]
    result = subprocess.run(
        [*command, str(package)], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    return package, result.returncode, result.stdout + result.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parallel_pytest", description=__doc__.split("\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders to search for *_test.py")
    parser.add_argument("--jobs", type=int, default=2, help="pytest processes at once (>= 1)")
    parser.add_argument("--pytest-arg", action="append", default=[], help="passed to pytest")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    found = packages(args.roots)
    if not found:
        parser.error(f"no *_test.py under {', '.join(map(str, args.roots))}")
    started = time.perf_counter()
    total: Counter[str] = Counter()
    failed = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = [pool.submit(_run_one, package, args.pytest_arg) for package in found]
        for run in concurrent.futures.as_completed(runs):
            package, returncode, output = run.result()
            print(f"=== {package} (exit {returncode}) ===\n{output}", flush=True)
            total += counts(output)
            if returncode not in (0, NO_TESTS_COLLECTED):
                failed.append(str(package))
    if failed:
        print(f"failed packages: {', '.join(sorted(failed))}")
    print(total_line(total, time.perf_counter() - started, len(found), args.jobs))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
