"""`Configurable`: the one base of every config in terra-lab.

A config is a keyword-only dataclass that says how to make one thing and makes it with
`build()`. Keyword-only because configs are subclassed by variants (a per-modality
projection encoder adds fields to `EncoderConfig`): with positional fields a subclass
could not add a field without a default after the base's defaulted ones, and a call
like `EncoderConfig(768, 12)` would silently bind to whatever order the fields have.

    @dataclasses.dataclass(kw_only=True)
    class DropoutConfig(Configurable["torch.nn.Dropout"]):
        p: float = 0.1

        def build(self) -> torch.nn.Dropout:
            return torch.nn.Dropout(self.p)

This module imports nothing of terra-lab and no third-party package (its package,
models/config, is a leaf whose one dependency is pyyaml, for serialization.py), so the model
library, the experiments and the launcher can all build on it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Generic, TypeVar

Built = TypeVar("Built")


@dataclasses.dataclass(kw_only=True)
class Configurable(Generic[Built]):
    """Base of every `*Config`: a keyword-only dataclass with `build()`."""

    def build(self, *args: Any, **kwargs: Any) -> Built:
        """The thing this config describes; arguments are only what the config cannot hold."""
        raise NotImplementedError(f"{type(self).__qualname__} does not define build()")


def is_configurable_class(cls: Any) -> bool:
    """True for a Configurable subclass that is itself a keyword-only dataclass with build()."""
    if not (isinstance(cls, type) and issubclass(cls, Configurable)):
        return False
    if "__dataclass_fields__" not in vars(cls):
        return False  # a subclass that forgot @dataclass inherits the parent's fields only
    params = vars(cls).get("__dataclass_params__")
    fields = dataclasses.fields(cls)
    keyword_only = all(field.kw_only or not field.init for field in fields)
    return bool(params) and keyword_only and cls.build is not Configurable.build
