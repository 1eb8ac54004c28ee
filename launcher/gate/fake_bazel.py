"""A stand-in `bazel` for the gate's unit tests: it logs every call and answers `query`."""

from __future__ import annotations

from pathlib import Path

# What Bazel prints for `query --output=label`: unsorted, a test reachable twice, chatter.
QUERY_ANSWER = (
    "//models/nn:attention_test\n"
    "//experiments:nano_test\n"
    "Loading: 3 packages loaded\n"
    "//experiments:lint\n"
    "//models/nn:attention_test\n"
)
# The launch tests that answer stands for: sorted, each once, chatter dropped.
LAUNCH_TESTS = ["//experiments:lint", "//experiments:nano_test", "//models/nn:attention_test"]


def write(
    folder: Path,
    test_body: str = "exit 0",
    query_answer: str = QUERY_ANSWER,
    query_exit: int = 0,
    query_error: str = "",
    answers_by_label: dict[str, str] | None = None,
) -> tuple[Path, Path]:
    """`folder/bazel` and the log it appends each call's arguments to (see `calls`).

    `query` prints `query_error` on stderr and `query_answer` on stdout, then exits
    `query_exit`; with `answers_by_label` ({experiment label: answer}), a query about that
    experiment (its expression holds `deps(<label>)`) prints that answer instead. Any
    other command runs the shell code `test_body`.
    """
    log = folder / "bazel.log"
    fake = folder / "bazel"
    per_label = "".join(
        f'  case "$*" in *"deps({label})"*) cat <<\'EOF\'\n{answer}EOF\n    exit 0;; esac\n'
        for label, answer in (answers_by_label or {}).items()
    )
    fake.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" >> {log}; echo >> {log}\n"
        'if [ "$1" = query ]; then\n'
        f"{per_label}"
        f"  echo '{query_error}' >&2\n"
        f"  cat <<'EOF'\n{query_answer}EOF\n"
        f"  exit {query_exit}\n"
        "fi\n"
        f"{test_body}\n"
    )
    fake.chmod(0o755)
    return fake, log


def calls(log: Path) -> list[list[str]]:
    """Each logged call as its argument list, in order."""
    return [call.split("\n") for call in log.read_text().strip("\n").split("\n\n")]
