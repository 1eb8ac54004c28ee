"""The reference implementation for the benchmarks, when this environment has it.

Under Bazel the benchmarks depend on @reference (olmoearth-pretrain 0.1.2, third_party/reference);
in a plain venv without it they still run and time ours alone, saying why.
"""

from __future__ import annotations

import types


def load_reference() -> tuple[types.ModuleType | None, str]:
    """models.convert.reference_batch, or None and the reason the reference is unavailable."""
    try:
        from models.convert import reference_batch
    except ImportError as error:
        return None, f"{type(error).__name__}: {error}"
    return reference_batch, ""
