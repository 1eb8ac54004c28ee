"""Strict, typed command-line overrides: `--dotted.path=value` into a config tree.

Strict: a key that names no field is an error that lists the closest valid keys
(difflib), and a value that does not parse as the field's type is an error that shows a
valid example. Setting a field rebuilds the dataclasses on its path with
`dataclasses.replace`, so each config's own `__post_init__` validation runs on the new
value and its error reaches the user too.

Aliases give stable, documented names to fields whose real location is an
implementation detail: `--trainer.max_steps=20` sets `trainer.max_duration` to 20 steps,
and `--trainer.callbacks.wandb.project=X` sets the run's project (which is also the
W&B project and the run folder's parent). Prefix aliases (keys ending in '.') rewrite a
whole subtree.

Some sections are refused outright: the model is changed by a variant file, never by a
flag, so that every model that trains has a config test and a hygiene check behind it.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import itertools
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

import yaml

from models.config import serialization


class OverrideError(ValueError):
    """A command-line override is malformed, unknown, refused or of the wrong type."""


@dataclasses.dataclass(frozen=True)
class Override:
    """One `--key=value` argument as typed."""

    key: str
    value: str

    @property
    def text(self) -> str:
        return f"--{self.key}={self.value}"


@dataclasses.dataclass(frozen=True)
class AppliedOverride:
    """An override after resolution: the real path it set and the values around it."""

    override: Override
    path: str
    old: Any
    new: Any

    def describe(self) -> str:
        via = "" if self.path == self.override.key else f" (sets {self.path})"
        return f"{self.override.text}{via}: {self.old!r} -> {self.new!r}"


@dataclasses.dataclass(frozen=True)
class Alias:
    """A user-facing key that sets another path.

    Attributes:
        target: the real dotted path (for a prefix alias, the prefix it rewrites to).
        convert: builds the new value from (current value, raw text); None parses the
            raw text as the target field's type.
        help: one line shown in listings.
    """

    target: str
    convert: Callable[[Any, str], Any] | None = None
    help: str = ""


def parse_overrides(args: Sequence[str]) -> list[Override]:
    """`--a.b=c` arguments -> Overrides; `--flag` alone means `--flag=true`."""
    overrides: list[Override] = []
    seen: dict[str, str] = {}
    for arg in args:
        if not arg.startswith("--") or arg == "--":
            raise OverrideError(
                f"unexpected argument {arg!r}: overrides look like --section.field=value, "
                "e.g. --trainer.max_steps=20 or --launch.num_gpus=8"
            )
        key, sep, value = arg[2:].partition("=")
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise OverrideError(
                f"malformed override {arg!r}: the key must be a dotted path such as "
                "--trainer.max_steps=20"
            )
        if not sep:
            value = "true"
        if key in seen:
            raise OverrideError(
                f"--{key} is given twice ({seen[key]!r} and {arg!r}); keep one of them"
            )
        seen[key] = arg
        overrides.append(Override(key, value))
    return overrides


# -- walking a config tree -------------------------------------------------------------


def _children(node: Any) -> dict[str, Any] | None:
    """Named children of a tree node, or None for a leaf."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return {f.name: getattr(node, f.name) for f in dataclasses.fields(node) if f.init}
    if isinstance(node, dict) and node and all(isinstance(k, str) for k in node):
        return dict(node)
    return None


def leaf_keys(config: Any, prefix: str = "") -> list[str]:
    """Every settable dotted path of `config`, in field order."""
    children = _children(config)
    if children is None:
        return [prefix] if prefix else []
    keys: list[str] = []
    for name, child in children.items():
        keys.extend(leaf_keys(child, f"{prefix}.{name}" if prefix else name))
    return keys


def get_path(config: Any, path: str) -> Any:
    node = config
    for part in path.split("."):
        children = _children(node)
        if children is None or part not in children:
            raise KeyError(path)
        node = children[part]
    return node


def _field_hint(parent: Any, name: str) -> Any:
    if dataclasses.is_dataclass(parent):
        return serialization.field_hints(type(parent)).get(name, Any)
    return Any


def _set_many(
    node: Any, assignments: dict[tuple[str, ...], tuple[Override, Any]], where: tuple[str, ...]
) -> Any:
    """A copy of `node` with each assigned leaf replaced; validation runs once per config."""
    updates: dict[str, Any] = {}
    heads = {parts[len(where)] for parts in assignments}
    for head in heads:
        path = (*where, head)
        if path in assignments:
            updates[head] = assignments[path][1]
        else:
            below = {p: v for p, v in assignments.items() if p[: len(path)] == path}
            children = _children(node)
            assert children is not None
            updates[head] = _set_many(children[head], below, path)
    if isinstance(node, dict):
        return {**node, **updates}
    try:
        return dataclasses.replace(node, **updates)
    except (ValueError, TypeError) as error:
        given = [o.text for p, (o, _) in assignments.items() if p[: len(where)] == where]
        raise OverrideError(f"{' '.join(given)}: the new value is rejected: {error}") from error


# -- values ----------------------------------------------------------------------------

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NULL = {"null", "none", "~"}


def describe_type(hint: Any) -> str:
    """Readable name of a type hint ('an integer', 'a list of strings', ...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        names = [describe_type(a) for a in args if a is not type(None)]
        text = " or ".join(names)
        return text + (" or null" if type(None) in args else "")
    if origin in (tuple, list, set, frozenset):
        item = args[0] if args else Any
        return f"a list of {describe_type(item).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"a {hint.__name__} mapping"
    return "a value"


def _example(current: Any) -> str:
    if current is None:
        return "null"
    if isinstance(current, bool):
        return "true" if current else "false"
    if isinstance(current, enum.Enum):
        return str(current.value)
    if isinstance(current, (list, tuple)):
        return "[" + ",".join(_example(item) for item in current) + "]"
    if dataclasses.is_dataclass(current):
        return (
            "'"
            + yaml.safe_dump(
                {
                    k: v
                    for k, v in serialization.to_dict(current).items()
                    if k != serialization.CLASS_KEY
                },
                default_flow_style=True,
            ).strip()
            + "'"
        )
    return str(current)


def parse_value(raw: str, hint: Any, current: Any) -> Any:
    """`raw` converted to the field's type; ValueError when it does not fit.

    Two steps: `read_text` turns the typed text into plain data the way a user means it
    (`1e3` for an integer, `a,b` for a list, `yes` for a flag), then
    `serialization.coerce` turns that data into the field's type, the same function that
    rebuilds config.yaml, so an override and a saved config agree on every value.
    """
    if hint is Any or hint is None:
        hint = type(current) if current is not None else Any
    return serialization.coerce(read_text(raw, hint, current), hint)


def read_text(raw: str, hint: Any, current: Any = None) -> Any:
    """Plain data (what YAML would hold) for the command-line text `raw` of a `hint` field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is None:
        return yaml.safe_load(raw)
    if origin is typing.Union or origin is types.UnionType:
        if raw.strip().lower() in _NULL and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        # Try the type of the current value first: `float | None` at 0.1 reads "1" as 1.0,
        # `int | str` at "a" keeps "3" a string.
        options.sort(key=lambda a: 0 if isinstance(a, type) and isinstance(current, a) else 1)
        for option in options:
            try:
                value = read_text(raw, option, current)
                serialization.coerce(value, option)
            except (ValueError, TypeError, yaml.YAMLError):
                continue
            return value
        return raw  # fits no option: coerce names the problem
    if origin is typing.Literal:
        return next((option for option in args if str(option) == raw), raw)
    if origin in (tuple, list, set, frozenset) or hint in (tuple, list, set, frozenset):
        items = _parse_list(raw)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            # A fixed-length tuple such as tuple[int, int]: coerce checks the count.
            hints = list(args) + [Any] * (len(items) - len(args))
            return [read_text(item, h) for item, h in zip(items, hints, strict=False)]
        item_hint = args[0] if args else Any
        current_items = list(current) if isinstance(current, (list, tuple)) else []
        sample = current_items[0] if current_items else None
        if item_hint is Any and sample is not None:
            item_hint = type(sample)
        return [read_text(item, item_hint, sample) for item in items]
    if hint is bool:
        lowered = raw.strip().lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else raw
    if hint is int:
        text = raw.strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)  # "1e3" is an integer, "2.5" is not (coerce refuses it)
        except ValueError:
            return raw
        return int(number) if number.is_integer() else number
    if hint is float:
        try:
            return float(raw.strip())  # YAML would keep "2e-4" a string
        except ValueError:
            return raw
    if hint is str or (isinstance(hint, type) and issubclass(hint, PurePath)):
        text = raw
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        return text
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        for member in hint:
            if raw in (str(member.value), member.name):
                return member.value
        return raw
    loaded = yaml.safe_load(raw)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        # A partial mapping changes only the fields it names, on the current config
        # (whose `_class_` keeps a variant's subclass).
        if (
            isinstance(loaded, dict)
            and serialization.CLASS_KEY not in loaded
            and isinstance(current, hint)
        ):
            return {**serialization.to_dict(current), **loaded}
    return loaded


def _parse_list(raw: str) -> list[str]:
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        if not inner:
            return []
        return [item.strip().strip("'\"") for item in inner.split(",")]
    if not text:
        return []
    return [item.strip() for item in text.split(",")]


# -- applying --------------------------------------------------------------------------


def _resolve_alias(key: str, aliases: Mapping[str, Alias]) -> tuple[str, Alias | None]:
    if key in aliases and not key.endswith("."):
        return aliases[key].target, aliases[key]
    for prefix, alias in aliases.items():
        if prefix.endswith(".") and key.startswith(prefix):
            return alias.target + key[len(prefix) :], None
    return key, None


def closest_keys(key: str, valid: Sequence[str], n: int = 3) -> list[str]:
    """The valid keys most like `key` (full path first, then the last segment)."""
    valid = list(dict.fromkeys(valid))
    matches = difflib.get_close_matches(key, valid, n=n, cutoff=0.6)
    if matches:
        return matches
    head, _, last = key.rpartition(".")
    siblings = [k for k in valid if k.rpartition(".")[0] == head] or list(valid)
    by_last = difflib.get_close_matches(last, [k.rpartition(".")[2] for k in siblings], n=n)
    found = [k for k in siblings if k.rpartition(".")[2] in by_last]
    return found[:n] or difflib.get_close_matches(key, valid, n=n, cutoff=0.3)


def apply_overrides(
    config: Any,
    overrides: Sequence[Override],
    aliases: Mapping[str, Alias] | None = None,
    refused: Mapping[str, str] | None = None,
) -> tuple[Any, list[AppliedOverride]]:
    """`config` with every override applied, and what each one changed.

    Args:
        config: the resolved config tree (dataclasses).
        overrides: from `parse_overrides`.
        aliases: user-facing keys (see `Alias`).
        refused: path prefix -> why it cannot be overridden (shown in the error).

    Raises:
        OverrideError: unknown key (with the closest valid ones), refused key, or a value
            that does not parse or does not validate.
    """
    aliases = dict(aliases or {})
    refused = dict(refused or {})
    pending: list[tuple[Override, str, Any, Any]] = []
    for override in overrides:
        path, alias = _resolve_alias(override.key, aliases)
        for prefix, reason in refused.items():
            if path == prefix or path.startswith(prefix + "."):
                raise OverrideError(f"{override.text} is not allowed: {reason}")
        valid = leaf_keys(config)
        try:
            current = get_path(config, path)
        except KeyError:
            current = None
            path_ok = False
        else:
            path_ok = True
        is_section = _children(current) is not None and alias is None
        # A whole section may be given as a mapping ('{unit: epochs, value: 3}') or null.
        as_mapping = override.value.strip().startswith("{") or (
            override.value.strip().lower() in _NULL
        )
        if not path_ok or (is_section and not as_mapping):
            if path_ok:
                inner = [k for k in valid if k.startswith(path + ".")][:4]
                raise OverrideError(
                    f"{override.text}: {path} is a section, not a field; set one of its "
                    f"fields, e.g. " + ", ".join(f"--{k}=..." for k in inner)
                )
            user_keys = [k for k in aliases if not k.endswith(".")] + valid
            suggestions = closest_keys(override.key, user_keys)
            hint = ", ".join(f"--{k}={_example(_lookup(config, k, aliases))}" for k in suggestions)
            raise OverrideError(
                f"unknown override --{override.key}: no such config field. "
                + (f"Did you mean: {hint}? " if hint else "")
                + "`dry_run` prints every key of the resolved config."
            )
        parent_path, _, name = path.rpartition(".")
        parent = get_path(config, parent_path) if parent_path else config
        hint_type = _field_hint(parent, name)
        try:
            if alias is not None and alias.convert is not None:
                new = alias.convert(current, override.value)
            else:
                new = parse_value(override.value, hint_type, current)
        except (ValueError, TypeError, yaml.YAMLError):  # ConfigFormatError is a ValueError
            expected = describe_type(hint_type if hint_type is not Any else type(current))
            if alias is not None and alias.convert is not None:
                expected = alias.help or expected
            raise OverrideError(
                f"{override.text}: wrong type for {override.key}, which expects {expected}. "
                f"Type for example: --{override.key}={_example(_alias_example(current, alias))}"
            ) from None
        pending.append((override, path, current, new))
    for (first, a, *_), (second, b, *_) in itertools.combinations(pending, 2):
        if a == b or a.startswith(b + ".") or b.startswith(a + "."):
            raise OverrideError(f"{first.text} and {second.text} set the same field; keep one")
    # All values are set at once, one dataclasses.replace per changed config, so fields
    # checked together (global batch and microbatch) may change together.
    config = _set_many(config, {tuple(p.split(".")): (o, n) for o, p, _, n in pending}, ())
    applied = [AppliedOverride(o, p, old, get_path(config, p)) for o, p, old, _ in pending]
    return config, applied


def _alias_example(current: Any, alias: Alias | None) -> Any:
    if alias is not None and alias.convert is not None:
        # e.g. trainer.max_steps: the current Duration's value is the natural example.
        return getattr(current, "value", current)
    return current


def _lookup(config: Any, key: str, aliases: Mapping[str, Alias]) -> Any:
    path, alias = _resolve_alias(key, aliases)
    try:
        return _alias_example(get_path(config, path), alias)
    except KeyError:
        return None
