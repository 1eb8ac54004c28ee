"""One table cell per step of tools/bench/gpu_check.sh, read from what the step wrote.

    python -m tools.bench.gpu_check_summary training RUN_ROOT RUN_NAME
    python -m tools.bench.gpu_check_summary pytest LOG

`training`: the run's metrics.jsonl (under RUN_ROOT/<W&B project>/RUN_NAME): steps logged, the
first and last loss, the median step time and tokens/s after step 1 (step 1 pays for CUDA's
lazy initialisation, the allocator's first growth and the loader's start). `pytest`: pytest's
closing counts line ("12 passed, 3 skipped in 40.1s").
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path


def training(run_root: Path, run_name: str) -> str:
    found = sorted(Path(run_root).glob(f"*/{run_name}/metrics.jsonl"))
    if not found:
        return f"no metrics.jsonl of {run_name} under {run_root}"
    rows = [json.loads(line) for line in found[0].read_text().splitlines() if line.strip()]
    if not rows:
        return f"{found[0]} is empty: no step finished"
    steady = rows[1:] or rows
    seconds = statistics.median(row["step_time_s"] for row in steady)
    tokens = statistics.median(row["tokens_per_s"] for row in steady)
    return (
        f"{len(rows)} steps, loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}, "
        f"{seconds:.2f} s/step and {tokens:.0f} tokens/s (medians after step 1)"
    )


_COUNTS = re.compile(r"\b\d+ (passed|failed|skipped|errors?|deselected|xfailed|xpassed)\b")


def pytest_outcome(log: str) -> str:
    for line in reversed(log.splitlines()):
        if _COUNTS.search(line):
            return line.strip("= ").strip()
    return "no pytest summary line in the log"


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "training":
        print(training(Path(argv[1]), argv[2]))
        return 0
    if len(argv) == 2 and argv[0] == "pytest":
        print(pytest_outcome(Path(argv[1]).read_text(errors="replace")))
        return 0
    print("usage: gpu_check_summary training RUN_ROOT RUN_NAME | pytest LOG", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
