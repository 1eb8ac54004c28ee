"""Python rules of terra-lab: thin macros over Bazel's native Python rules.

They keep the rules_python surface (`py_library`, `py_binary`, `py_test` with the same
attributes), so moving to rules_python means changing the load() line. What they add:

- `__init__.py` handling: Bazel creates no `__init__.py` (.bazelrc), so each package's own
  file travels with its targets, through an `init_py` target chained to its parents'.
- `py_test` runs pytest on its `srcs` (tools/build_rules/pytest_main.py) and writes Bazel's
  JUnit XML, with the repository's conftest.py.
- `lint_test` checks the package's Python, BUILD and .bzl files with ruff and buildifier.
"""

_PYTEST_MAIN = "//tools/build_rules:pytest_main.py"
_LINT_MAIN = "//tools/lint:lint_main.py"

def _unique(labels):
    result = []
    for label in labels:
        if label not in result:
            result.append(label)
    return result

def _package_init_deps():
    """[":init_py"] when this package has an __init__.py, declaring the target once."""
    if not native.glob(["__init__.py"]):
        return []
    if native.existing_rule("init_py") == None:
        parent = native.package_name().rpartition("/")[0]
        native.py_library(
            name = "init_py",
            srcs = ["__init__.py"],
            deps = ["//%s:init_py" % parent] if parent else [],
            visibility = ["//visibility:public"],
        )
    return [":init_py"]

def py_package(name = "init_py"):
    """Declares `:init_py` for a package that has an __init__.py but no other Python target."""
    if name != "init_py":
        fail("py_package's target is always named init_py; the other macros depend on it by name")
    _package_init_deps()

def py_library(name, deps = [], **kwargs):
    native.py_library(
        name = name,
        deps = deps + _package_init_deps(),
        srcs_version = "PY3",
        **kwargs
    )

def py_binary(name, deps = [], **kwargs):
    native.py_binary(
        name = name,
        deps = deps + _package_init_deps(),
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )

def py_test(name, srcs, deps = [], args = [], **kwargs):
    """A pytest file (or several) as one Bazel test target."""
    native.py_test(
        name = name,
        srcs = srcs + [_PYTEST_MAIN],
        main = _PYTEST_MAIN,
        deps = _unique(deps + _package_init_deps() + ["//:conftest", "@pypi//:pytest"]),
        args = ["%s/%s" % (native.package_name(), src) for src in srcs] + args,
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )

def lint_test(name = "lint", extra_files = []):
    """ruff (format + check) and buildifier over this package's sources."""
    files = native.glob(
        ["*.py", "BUILD", "BUILD.bazel", "*.bzl", "WORKSPACE"],
        allow_empty = True,
    ) + extra_files
    native.py_test(
        name = name,
        srcs = [_LINT_MAIN],
        main = _LINT_MAIN,
        data = files + ["//:pyproject.toml", "@pypi//:bin/ruff", "@buildifier//:buildifier"],
        args = ["%s/%s" % (native.package_name(), f) if native.package_name() else f for f in files],
        python_version = "PY3",
        srcs_version = "PY3",
        size = "small",
        tags = ["lint"],
        # //tools/lint's import checks read every package's sources through its :lint target.
        visibility = ["//visibility:public"],
    )
