"""The error a subcommand raises when it cannot do its work (the CLI prints it and exits)."""

from __future__ import annotations


class CommandError(RuntimeError):
    """A subcommand failed; `exit_code` is 1 for a failed job, 2 for wrong input."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
