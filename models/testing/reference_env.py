"""Access to the reference implementation (olmoearth-pretrain 0.1.2) from parity tests.

Under Bazel the reference lives in its own environment, @reference (third_party/reference),
which tests tagged "reference" depend on; `import_reference()` appends its site-packages to
sys.path. Where it is absent (a plain venv without the reference), the test is skipped.
"""

from __future__ import annotations

import importlib
import types

import pytest


def activate() -> bool:
    """Puts @reference's site-packages on sys.path when this target depends on it."""
    try:
        reference_site_packages = importlib.import_module("reference_site_packages")
    except ImportError:
        return False
    reference_site_packages.activate()
    return True


def import_reference(module: str = "olmoearth_pretrain") -> types.ModuleType:
    """Imports a module of the reference, or skips the calling test."""
    activate()
    return pytest.importorskip(module)
