"""Config trees <-> plain data (YAML / JSON) with class names, so a run rebuilds exactly.

The one serialisation and type-coercion engine of terra-lab: experiment configs, the
trainer's config.yaml, W&B's config and command-line overrides all go through it, so a
value means the same thing wherever it is written or typed.

A config tree is nested dataclasses (any component's `XConfig`, including a variant's
subclass), tuples, lists, dicts, enums and scalars. `to_dict` writes every dataclass as a
mapping with a `_class_` entry ("package.module.QualName") followed by its init fields;
`from_dict` imports that class and rebuilds it field by field, using the field's type
hints to restore what YAML and JSON cannot hold (tuples, enums, int dict keys, Paths,
torch dtypes). A subclassed config therefore comes back as the subclass, which is what
makes `config.yaml` of a per-modality-projection run rebuild the per-modality model.

Only classes of this repository's packages are imported from a file (`TRUSTED_PACKAGES`):
a config file is data and must not be able to import arbitrary modules. A class that
moved keeps its old `_class_` name working through `CLASS_ALIASES`, so run folders
written before the move still load, and a class that retired a field maps its old files
onto today's fields with its `upgrade_retired_fields` classmethod.

This module imports no torch (dtypes are handled only when torch is already loaded, which
it is whenever a config holds one) and nothing of experiments/launcher/tools: models/config
is a leaf package the launcher can use too.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import os
import sys
import types
import typing
from pathlib import Path, PurePath
from typing import Any

import yaml

CLASS_KEY = "_class_"
TRUSTED_PACKAGES = ("models", "experiments", "launcher", "tools")

# Old `_class_` value -> where that class lives now. An entry stays as long as run folders
# written before the move may be read (they are never rewritten); the test loads each old
# name and checks it reaches a class that still exists.
CLASS_ALIASES: dict[str, str] = {
    "experiments.framework.data.MaskedDataLoaderConfig": (
        "models.data.masked_loader.MaskedDataLoaderConfig"
    ),
    # One launch settings type, the launcher's (the experiments' copy had the same fields).
    "experiments.framework.experiment_config.LaunchConfig": "launcher.settings.LaunchSettings",
    # Settings only, so no longer named a config (experiment_config.py says why).
    "experiments.framework.experiment_config.VisualizeConfig": (
        "experiments.framework.experiment_config.VisualizeSettings"
    ),
}

RETIRED_FIELDS_HOOK = "upgrade_retired_fields"
"""A config class's optional classmethod `(data: dict) -> dict`: its plain data as an older
version wrote it -> the same setting in today's fields; `from_dict` calls it first."""


class ConfigFormatError(ValueError):
    """A config file does not describe a config tree this code can rebuild."""


def class_path(cls: type) -> str:
    """'package.module.QualName' of a class, the value of `_class_`."""
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(path: str) -> type:
    """The class named by a `_class_` value (first-party packages only; old names aliased)."""
    path = CLASS_ALIASES.get(path, path)
    parts = path.split(".")
    if parts[0] not in TRUSTED_PACKAGES:
        raise ConfigFormatError(
            f"{CLASS_KEY}: {path!r} is outside this repository's packages {TRUSTED_PACKAGES}; "
            "config files may only name first-party config classes"
        )
    # A nested class ("module.Outer.Inner") has a dotted qualname: try the longest module.
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and (module_name + ".").startswith(error.name + "."):
                continue  # this prefix is not a module; a shorter one may be
            raise
        for name in parts[split:]:
            obj = getattr(obj, name, None)
        if isinstance(obj, type):
            return obj
    raise ConfigFormatError(f"{CLASS_KEY}: cannot find class {path!r}")


# -- to plain data ---------------------------------------------------------------------


def to_dict(obj: Any) -> Any:
    """Plain data (dict/list/str/int/float/bool/None) for a config tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {CLASS_KEY: class_path(type(obj))}
        for field in dataclasses.fields(obj):
            if field.init:
                out[field.name] = to_dict(getattr(obj, field.name))
        return out
    if isinstance(obj, enum.Enum):
        return to_dict(obj.value)
    if isinstance(obj, dict):
        return {_key_to_data(key): to_dict(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(item) for item in obj]
    if isinstance(obj, (set, frozenset)):
        return [to_dict(item) for item in sorted(obj, key=repr)]
    if isinstance(obj, PurePath):
        return str(obj)
    if _is_torch_value(obj):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ConfigFormatError(
        f"cannot serialise {type(obj).__name__} value {obj!r}: config trees hold dataclasses, "
        "containers, enums and scalars only"
    )


def _key_to_data(key: Any) -> Any:
    if isinstance(key, enum.Enum):
        return key.value
    if isinstance(key, (str, int, float, bool)) or key is None:
        return key
    raise ConfigFormatError(f"dict key {key!r} is not a scalar")


def _is_torch_value(obj: Any) -> bool:
    """A torch dtype or device (written as 'torch.float32', 'cuda:0'); no torch, no such value."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, (torch.dtype, torch.device))


# -- from plain data -------------------------------------------------------------------


def from_dict(data: Any, expected: Any = Any) -> Any:
    """Rebuild a config tree written by `to_dict`.

    Args:
        data: plain data as loaded from YAML or JSON.
        expected: the type the result should have (a class or a typing hint); mappings
            without `_class_` are built as this class when it is a dataclass.
    """
    return coerce(data, expected, "")


def field_hints(cls: type) -> dict[str, Any]:
    """Type hints of a dataclass's fields; a hint that cannot be resolved becomes Any."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a TYPE_CHECKING-only name in one annotation: resolve field by field
        pass
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        namespace = vars(sys.modules.get(klass.__module__, types.ModuleType("x")))
        for name, annotation in getattr(klass, "__annotations__", {}).items():
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, dict(namespace))  # noqa: S307 (own source)
                except Exception:
                    annotation = Any
            hints[name] = annotation
    return hints


def _build_dataclass(cls: type, data: dict[str, Any], where: str) -> Any:
    # A class that retired a field says how its old files map onto today's fields
    # (e.g. ExperimentConfig's top-level seed, now trainer.seed), so old run folders load.
    upgrade = getattr(cls, RETIRED_FIELDS_HOOK, None)
    if upgrade is not None:
        data = upgrade(data)
    hints = field_hints(cls)
    init_fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(data) - set(init_fields) - {CLASS_KEY})
    if unknown:
        raise ConfigFormatError(
            f"{where or 'config'}: {class_path(cls)} has no field(s) {unknown}; "
            f"its fields are {sorted(init_fields)}"
        )
    kwargs = {
        name: coerce(value, hints.get(name, Any), f"{where}.{name}" if where else name)
        for name, value in data.items()
        if name != CLASS_KEY
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigFormatError(f"{where or 'config'}: {class_path(cls)}: {error}") from error


def coerce(value: Any, hint: Any, where: str = "") -> Any:
    """`value` (plain data from YAML, JSON or a parsed override) as the type `hint` names.

    Mappings with `_class_` become that class; tuples, sets, enums, int keys, Paths and
    torch dtypes/devices are restored from lists and strings; a value that cannot be the
    hinted type raises ConfigFormatError naming `where` (the dotted path of the value).
    """
    if isinstance(value, dict) and CLASS_KEY in value:
        return _build_dataclass(import_class(value[CLASS_KEY]), value, where)
    if hint is Any or hint is None:
        if isinstance(value, list):
            return [coerce(item, Any, where) for item in value]
        if isinstance(value, dict):
            return {key: coerce(item, Any, f"{where}.{key}") for key, item in value.items()}
        return value
    if isinstance(hint, str):  # an unresolved forward reference
        return coerce(value, Any, where)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _coerce_union(value, args, where)
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigFormatError(f"{where}: {value!r} is not one of {list(args)}")
    if origin is typing.ClassVar:
        return coerce(value, args[0] if args else Any, where)
    if origin in (tuple, list, set, frozenset) or hint in (tuple, list, set, frozenset):
        return _coerce_sequence(value, origin or hint, args, where)
    if origin in (dict, typing.Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise ConfigFormatError(f"{where}: expected a mapping, got {value!r}")
        key_hint, value_hint = args if len(args) == 2 else (Any, Any)
        return {
            _coerce_key(key, key_hint, where): coerce(item, value_hint, f"{where}.{key}")
            for key, item in value.items()
        }
    if isinstance(hint, type):
        return _coerce_to_class(value, hint, where)
    return value


def _coerce_key(key: Any, hint: Any, where: str) -> Any:
    # JSON object keys are always strings: turn "3" back into 3 for a dict[int, ...].
    if isinstance(key, str) and hint in (int, float):
        try:
            return hint(key)
        except ValueError:
            raise ConfigFormatError(f"{where}: key {key!r} is not {hint.__name__}") from None
    return coerce(key, hint, where)


def _coerce_union(value: Any, args: tuple[Any, ...], where: str) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise ConfigFormatError(f"{where}: None is not allowed here")
    candidates = [arg for arg in args if arg is not type(None)]
    # Exact scalar matches first, so `int | str` keeps "3" a string and 3 an int.
    for arg in candidates:
        if isinstance(arg, type) and type(value) is arg:
            return value
    errors = []
    for arg in candidates:
        try:
            return coerce(value, arg, where)
        except (ConfigFormatError, TypeError, ValueError) as error:
            errors.append(str(error))
    raise ConfigFormatError(f"{where}: {value!r} fits none of {candidates}: {errors}")


def _coerce_sequence(value: Any, container: Any, args: tuple[Any, ...], where: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise ConfigFormatError(f"{where}: expected a list, got {value!r}")
    if container is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ConfigFormatError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(coerce(item, arg, where) for item, arg in zip(value, args, strict=True))
    item_hint = args[0] if args else Any
    items = [coerce(item, item_hint, where) for item in value]
    return container(items)


def _coerce_to_class(value: Any, cls: type, where: str) -> Any:
    if dataclasses.is_dataclass(cls):
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return _build_dataclass(cls, value, where)
        raise ConfigFormatError(f"{where}: expected a {cls.__name__} mapping, got {value!r}")
    if issubclass(cls, enum.Enum):
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            if isinstance(value, str) and value in cls.__members__:
                return cls[value]
            raise ConfigFormatError(
                f"{where}: {value!r} is not one of {[m.value for m in cls]}"
            ) from None
    if cls is bool:
        if isinstance(value, bool):
            return value
        raise ConfigFormatError(f"{where}: expected true or false, got {value!r}")
    if cls is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if cls is int and isinstance(value, bool):
        raise ConfigFormatError(f"{where}: expected an integer, got {value!r}")
    if issubclass(cls, PurePath):
        return cls(value)
    torch = sys.modules.get("torch")  # loaded: the class being coerced to is torch's
    if torch is not None and cls is torch.dtype:
        if isinstance(value, torch.dtype):
            return value
        dtype = getattr(torch, str(value).removeprefix("torch."), None)
        if not isinstance(dtype, torch.dtype):
            raise ConfigFormatError(f"{where}: {value!r} is not a torch dtype")
        return dtype
    if torch is not None and cls is torch.device:
        try:
            return torch.device(value)
        except (RuntimeError, TypeError):
            raise ConfigFormatError(f"{where}: {value!r} is not a torch device") from None
    if cls in (int, float, str) and not isinstance(value, cls):
        raise ConfigFormatError(f"{where}: expected {cls.__name__}, got {value!r}")
    return value


# -- files -----------------------------------------------------------------------------


def to_yaml(obj: Any) -> str:
    return _yaml_text(to_dict(obj))


def _yaml_text(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)


def from_yaml(text: str, expected: Any = Any) -> Any:
    return from_dict(yaml.safe_load(text), expected)


def to_json(obj: Any) -> str:
    return json.dumps(to_dict(obj), indent=2)


def from_json(text: str, expected: Any = Any) -> Any:
    return from_dict(json.loads(text), expected)


def save(obj: Any, path: str | Path) -> Path:
    """Write `obj` as YAML (.yaml/.yml) or JSON (.json), chosen by the file suffix."""
    return save_data(to_dict(obj), path)


def save_data(data: Any, path: str | Path) -> Path:
    """Write `to_dict`'s plain data to `path` (format by suffix), atomically: a temporary
    file of this process, flushed to disk, then renamed, so a crash or a second writer never
    leaves a torn file."""
    path = Path(path)
    text = json.dumps(data, indent=2) if path.suffix == ".json" else _yaml_text(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def load(path: str | Path, expected: Any = Any) -> Any:
    """Read a file written by `save` (or the trainer's config.yaml)."""
    path = Path(path)
    text = path.read_text()
    return from_json(text, expected) if path.suffix == ".json" else from_yaml(text, expected)
