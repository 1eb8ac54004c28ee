"""pip_lock_repository: a Bazel repository made from a hash-pinned pip lock.

rules_python equivalent: `pip_parse(name = "pypi", requirements_lock = ...)` for the package
targets plus `python_register_toolchains` for the interpreter. Ours runs offline and uses
Debian's python3.11 (the interpreter of the container image) instead of a downloaded one.

Targets of the generated repository:
    @pypi//:<package>          one py_library per locked package (`@pypi//:torch`, `@pypi//:pyyaml`)
    @pypi//:python_toolchain   the Python toolchain on the venv's interpreter
    @pypi//:bin/ruff, @pypi//:bin/python   executables of the venv
    @pypi//:site_packages      `pypi_site_packages.activate()` appends the venv's site-packages
                               to sys.path (how tests reach a second environment, @reference)
"""

def _find_python(rctx):
    override = rctx.os.environ.get("TERRA_LAB_PYTHON")
    if override:
        return override
    for candidate in ["/usr/bin/python3.11"]:
        if rctx.path(candidate).exists:
            return candidate
    found = rctx.which("python3.11")
    if found:
        return str(found)
    fail("terra-lab needs Python 3.11 and found none. Install it with " +
         "`apt-get install python3.11 python3.11-venv` (./tools/bazel does this on Debian), " +
         "or set TERRA_LAB_PYTHON to a Python 3.11 interpreter.")

def _cache_root(rctx):
    xdg = rctx.os.environ.get("XDG_CACHE_HOME")
    home = rctx.os.environ.get("HOME", "/tmp")
    return (xdg if xdg else home + "/.cache") + "/terra-lab/python"

def _pip_lock_repository_impl(rctx):
    python = _find_python(rctx)
    script = rctx.path(rctx.attr._make_venv)
    lock = rctx.path(rctx.attr.lock)
    rctx.report_progress("creating the Python environment from " + rctx.attr.lock.name)
    result = rctx.execute(
        [
            python,
            script,
            "--python",
            python,
            "--lock",
            lock,
            "--cache-root",
            _cache_root(rctx),
            "--repo",
            rctx.path("."),
            "--repo-name",
            rctx.name,
            "--pip-args",
            rctx.os.environ.get("TERRA_LAB_PIP_ARGS", ""),
        ] + (["--activate"] if rctx.attr.toolchain else []),
        timeout = 3600,
        quiet = False,
    )
    if result.return_code != 0:
        fail("could not set up @%s from %s (see the message above)" % (rctx.name, rctx.attr.lock))

pip_lock_repository = repository_rule(
    implementation = _pip_lock_repository_impl,
    attrs = {
        "lock": attr.label(mandatory = True, allow_single_file = True),
        "toolchain": attr.bool(
            default = False,
            doc = "This venv is the interpreter of the Python toolchain (one repository only).",
        ),
        "_make_venv": attr.label(default = "//third_party/python:make_venv.py", allow_single_file = True),
    },
    environ = ["TERRA_LAB_PYTHON", "TERRA_LAB_PIP_ARGS", "HOME", "XDG_CACHE_HOME"],
    doc = "A venv built from a hash-pinned lock, one py_library per package, and a toolchain.",
)
