"""Flags and errors of a terra-lab binary: absl flags, and one line for every mistake.

A binary defines its flags on a `flags.FlagValues` of its own and hands it, with the function
that does the work, to a `Command`:

    FLAGS = flags.FlagValues()
    flags.DEFINE_string("runs", None, "run folder(s) or a W&B project", flag_values=FLAGS)
    flags.DEFINE_integer("window", None, "smoothing window", flag_values=FLAGS)

    def run(args: types.SimpleNamespace) -> int:   # args.runs, args.window, ...
        ...

    COMMAND = command.Command("compare", FLAGS, run, required=("runs",))
    main = COMMAND.main                              # main(argv) -> exit status

    if __name__ == "__main__":
        COMMAND.run_app()

`run_app()` is `absl.app.run`: --help/--helpfull print the docstring and the flags,
--flagfile=FILE reads flags from a file (one `--name=value` a line; for CI), absl logging is
set up (INFO and above to stderr, `--verbosity`), and the binary's flags accept `--name=value`
and `--name value`, booleans also `--noname`. `main(argv)` parses the same flags (flagfiles
too) without touching process-wide state: it is what tests and other tools call.

Why a FlagValues per binary rather than absl's global FLAGS: one process (a test, the
bad-input battery, a tool calling another) imports several binaries, and two of them
defining `--workspace` on FLAGS would raise DuplicateFlagError at import; a value parsed for
one call would also stay for the next. `main` parses a deep copy of the binary's flags, so
every call starts from the defaults. `run_app` adds the binary's flags to FLAGS (the same
flag objects) only in the process that runs it as a program.

The convention of every terra-lab command (README): a mistake is one line on stderr,
`<name>: <problem and fix>`, exit 2 for bad input (a flag or argument, `app.UsageError`, the
binary's `bad_input` exceptions) and 1 for a failed operation. TERRA_LAB_DEBUG=1 (any value
but '' or '0') lets the exception through, traceback and all.

A leaf package: absl and the standard library only, so launcher and tools binaries share it.
"""

from __future__ import annotations

import copy
import difflib
import os
import sys
import types
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app, flags

DEBUG_ENV = "TERRA_LAB_DEBUG"
HELP_HINT = "see --help"

# What a malformed value of a flag type should have looked like (absl's own reasons, e.g.
# "invalid literal for int() with base 10: 'x'", speak Python, not the command line).
_EXPECTED = {
    "int": "expected a whole number",
    "float": "expected a number",
    "bool": "expected true or false",
}


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(error: BaseException) -> str:
    """The first line of the message; after a trailing colon, its last line (the cause)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[-1]}"
    return lines[0]


def _flag_names(flag_values: flags.FlagValues) -> list[str]:
    """Each flag once, by its long name (iterating a FlagValues also yields short names)."""
    return [name for name in flag_values if flag_values[name].name == name]


def _bad_value(error: flags.Error, flag_values: flags.FlagValues) -> str | None:
    """`--window: invalid int value 'x': expected a whole number` for a value absl refused.

    absl words it `flag --<name>=<value>: <reason>`, the reason being the parser's error (the
    exception being handled when absl raised). Knowing the names and the reason, the value
    is what lies between them, whatever characters it holds.
    """
    cause = error.__context__
    if not isinstance(cause, (ValueError, TypeError)):
        return None
    text, reason = str(error), str(cause)
    for name in sorted(_flag_names(flag_values), key=len, reverse=True):
        prefix = f"flag --{name}="
        if text.startswith(prefix) and text.endswith(f": {reason}"):
            value = text[len(prefix) : len(text) - len(reason) - 2]
            flag = flag_values[name]
            kind = flag.flag_type()
            if kind not in _EXPECTED:
                return f"--{name}: invalid value {value!r}: {reason} ({HELP_HINT})"
            if _converts(flag, value):  # a bound, not the type: absl's reason says which
                return f"--{name}: invalid {kind} value {value!r}: {reason} ({HELP_HINT})"
            return f"--{name}: invalid {kind} value {value!r}: {_EXPECTED[kind]} ({HELP_HINT})"
    return None


def _converts(flag: flags.Flag, value: str) -> bool:
    """Whether `value` is of the flag's type (absl's numeric parsers convert before bounds)."""
    convert = getattr(flag.parser, "convert", None)
    if convert is None:
        return False
    try:
        convert(value)
    except (ValueError, TypeError):
        return False
    return True


def flag_error_message(error: Exception, flag_values: flags.FlagValues) -> str:
    """One line for a flag absl could not parse: what is wrong and where to look."""
    if isinstance(error, flags.UnrecognizedFlagError):
        close = difflib.get_close_matches(error.flagname, _flag_names(flag_values), n=1)
        guess = f"; did you mean --{close[0]}?" if close else ""
        return f"unknown flag --{error.flagname}{guess} ({HELP_HINT})"
    if isinstance(error, flags.Error) and (message := _bad_value(error, flag_values)):
        return message
    return f"{one_line(error).removeprefix('flag ')} ({HELP_HINT})"


class Command:
    """A binary: its flags, its positional arguments, and the function that does the work.

    Args:
        name: the program's name, which starts each error line.
        flag_values: the binary's own flags (a `flags.FlagValues()` defined at import).
        function: called with the parsed arguments as a SimpleNamespace (a flag `batch-size`
            as `args.batch_size`, positional arguments by their names); returns the exit
            status (None counts as 0). Raise `app.UsageError` for bad input.
        required: flags that must be given (their default is None).
        positional: names of the positional arguments, all required, in order (none: the
            binary takes flags only and refuses stray words).
        optional: names of positional arguments that may follow those, in order; one not
            given is None.
        bad_input: the binary's exceptions that mean bad input: exit 2, their message as is.
        failures: exceptions whose message already says what failed and what to do: exit 1,
            their message as is. Any other exception is exit 1 with its first line and a hint
            to rerun with TERRA_LAB_DEBUG=1.
    """

    def __init__(
        self,
        name: str,
        flag_values: flags.FlagValues,
        function: Callable[[types.SimpleNamespace], int | None],
        *,
        required: Sequence[str] = (),
        positional: Sequence[str] = (),
        optional: Sequence[str] = (),
        bad_input: tuple[type[BaseException], ...] = (),
        failures: tuple[type[BaseException], ...] = (),
    ) -> None:
        unknown = [flag for flag in required if flag not in flag_values]
        if unknown:
            raise ValueError(f"required flags {unknown} are not defined on {name}'s FlagValues")
        self.name = name
        self.flag_values = flag_values
        self.function = function
        self.required = tuple(required)
        self.positional = tuple(positional)
        self.optional = tuple(optional)
        self.bad_input = bad_input
        self.failures = failures

    def usage(self) -> str:
        words = [word.upper() for word in self.positional]
        words += [f"[{word.upper()}]" for word in self.optional]
        return " ".join([self.name, *words, "[flags]"])

    def parse(self, argv: Sequence[str]) -> types.SimpleNamespace:
        """The arguments of `argv` (without the program name); bad ones raise app.UsageError.

        Parses a copy of the binary's flags: nothing stays set for the next call.
        """
        flag_values = copy.deepcopy(self.flag_values)
        positional = _parse_flags(flag_values, [self.name, *argv])[1:]
        return self._namespace(flag_values, positional)

    def main(self, argv: Sequence[str] | None = None) -> int:
        """The exit status of the binary run with `argv` (None: sys.argv[1:]), in-process."""
        arguments = sys.argv[1:] if argv is None else list(argv)
        return self._call(lambda: self.function(self.parse(arguments)))

    def run_app(self, argv: Sequence[str] | None = None) -> NoReturn:
        """Runs the binary as the program, through absl.app.run (for `__main__`)."""
        program = (argv or sys.argv)[0]
        flags.FLAGS.append_flag_values(self.flag_values)
        for name in _flag_names(self.flag_values):
            # --help lists the flags of the main module: these are the binary's.
            flags.FLAGS.register_flag_by_module(program, self.flag_values[name])
        app.run(self._app_main, argv=argv, flags_parser=self._app_parse_flags)

    def _app_parse_flags(self, argv: list[str]) -> list[str]:
        try:
            return _parse_flags(flags.FLAGS, argv)
        except app.UsageError as error:
            if debug_enabled():
                raise
            print(f"{self.name}: {error}", file=sys.stderr)
            sys.exit(2)

    def _app_main(self, argv: list[str]) -> int:
        return self._call(lambda: self.function(self._namespace(flags.FLAGS, argv[1:])))

    def _namespace(
        self, flag_values: flags.FlagValues, positional: list[str]
    ) -> types.SimpleNamespace:
        missing = [flag for flag in self.required if flag_values[flag].value is None]
        if missing:
            flag = flag_values[missing[0]]
            raise app.UsageError(f"--{flag.name} is required: {flag.help} ({HELP_HINT})")
        if len(positional) > len(self.positional) + len(self.optional):
            extra = positional[len(self.positional) + len(self.optional)]
            raise app.UsageError(
                f"unexpected argument {extra!r}: the usage is {self.usage()} ({HELP_HINT})"
            )
        if len(positional) < len(self.positional):
            absent = self.positional[len(positional)].upper()
            raise app.UsageError(f"missing {absent}: the usage is {self.usage()} ({HELP_HINT})")
        values = {
            name.replace("-", "_"): flag_values[name].value
            for name in _flag_names(self.flag_values)
        }
        names = self.positional + self.optional
        values.update({name: None for name in self.optional})
        values.update(zip(names[: len(positional)], positional, strict=True))
        return types.SimpleNamespace(**values)

    def _call(self, body: Callable[[], int | None]) -> int:
        """`body()`'s exit status; an exception becomes one line on stderr (see the module)."""
        try:
            status = body()
        except Exception as error:
            if debug_enabled():
                raise
            if isinstance(error, (app.UsageError, *self.bad_input)):
                print(f"{self.name}: {one_line(error)}", file=sys.stderr)
                return 2
            if isinstance(error, self.failures):
                print(f"{self.name}: {one_line(error)}", file=sys.stderr)
                return 1
            print(f"{self.name}: {one_line(error)} ({DEBUG_ENV}=1 shows where)", file=sys.stderr)
            return 1
        return 0 if status is None else int(status)


def _parse_flags(flag_values: flags.FlagValues, argv: list[str]) -> list[str]:
    """`flag_values(argv)` (program name first); a flag it cannot take raises app.UsageError."""
    try:
        return flag_values(argv)
    except (flags.Error, ValueError) as error:
        # ValueError: absl's `--noflag=value` ("does not take an argument").
        raise app.UsageError(flag_error_message(error, flag_values)) from error
