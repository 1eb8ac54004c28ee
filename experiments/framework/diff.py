"""Field-by-field differences between two config trees (dry_run's diff, the hygiene test).

Both trees are flattened through `serialization.to_dict` into `dotted.path -> value`, so a
subclassed config shows up as a changed `..._class_` entry next to its changed fields,
and lists compare as whole values (a different modality list is one entry).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.config import serialization

ABSENT = "<absent>"


@dataclasses.dataclass(frozen=True)
class FieldChange:
    """One leaf that differs: `path` in dotted form, the value in each tree."""

    path: str
    base: Any
    other: Any

    @property
    def section(self) -> str:
        """The top-level section (model, dataset, data_loader, train_module, ...)."""
        return self.path.split(".", 1)[0]

    def describe(self, base_name: str = "base", other_name: str = "variant") -> str:
        return f"{self.path}: {base_name} {_show(self.base)} -> {other_name} {_show(self.other)}"


def _show(value: Any) -> str:
    return value if value == ABSENT else repr(value)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`dotted.path -> leaf` for plain data (dicts recurse; lists and scalars are leaves)."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def diff_configs(base: Any, other: Any, ignore: tuple[str, ...] = ()) -> list[FieldChange]:
    """Every leaf where `other` differs from `base`, in `other`'s field order.

    Mappings are compared key by key (a changed class shows as a `_class_` entry beside the
    fields that differ); where one side is a mapping and the other is not (a loss config
    replaced by None) the whole value is one change.

    Args:
        base: the reference config tree.
        other: the config tree compared with it.
        ignore: dotted paths (or path prefixes) left out, e.g. run identity fields.
    """
    changes: list[FieldChange] = []
    _diff(serialization.to_dict(base), serialization.to_dict(other), "", ignore, changes)
    return changes


def _diff(old: Any, new: Any, path: str, ignore: tuple[str, ...], out: list[FieldChange]) -> None:
    if any(path == skip or path.startswith(skip + ".") for skip in ignore if path):
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*new, *(k for k in old if k not in new)]:
            _diff(
                old.get(key, ABSENT),
                new.get(key, ABSENT),
                f"{path}.{key}" if path else str(key),
                ignore,
                out,
            )
        return
    if old != new or type(old) is not type(new):
        out.append(FieldChange(path, _summary(old), _summary(new)))


def _summary(value: Any) -> Any:
    """A mapping with a class reads as `ClassName(field=value, ...)` in a diff line."""
    if isinstance(value, dict) and serialization.CLASS_KEY in value:
        name = str(value[serialization.CLASS_KEY]).rpartition(".")[2]
        fields = ", ".join(f"{k}={v!r}" for k, v in value.items() if k != serialization.CLASS_KEY)
        return _Shown(f"{name}({fields})")
    return value


class _Shown(str):
    """A pre-formatted value (repr without quotes)."""

    def __repr__(self) -> str:
        return str(self)


def format_diff(changes: list[FieldChange], base_name: str = "base") -> str:
    """Readable lines: a header with the sections touched, then one line per field."""
    if not changes:
        return f"identical to {base_name} (no field differs)"
    sections = sorted({change.section for change in changes})
    lines = [f"{len(changes)} field(s) differ from {base_name}; sections: {', '.join(sections)}"]
    for change in changes:
        lines.append(f"  {change.path}: {_show(change.base)} -> {_show(change.other)}")
    return "\n".join(lines)
