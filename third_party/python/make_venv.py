"""Turn requirements.lock into a virtual environment and a Bazel repository.

Run by the `pip_lock_repository` rule (pip_lock.bzl) with the system Python 3.11. It

1. creates (once per lock content) a venv under the user's cache directory, so every clone
   on a machine shares it and test actions see the same interpreter path (that is what lets
   Bazel's disk cache serve test results to a fresh clone);
2. installs the lock with `--require-hashes --no-deps`: every package, transitive ones
   included, must be in the lock with a matching hash;
3. writes the repository: one `py_library` per locked package whose data is that package's
   METADATA file, so bumping one package re-runs exactly the tests that depend on it, and a
   `py_runtime` toolchain on the venv's interpreter.

rules_python equivalent: `pip.parse` + `python.toolchain` (see third_party/README.md).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REQUIRED_PYTHON = (3, 11)
COMPLETE_MARKER = "terra-lab-venv-complete.json"
ACTIVE_LINK = "active"
# The toolchain's interpreter: a script running the active venv's python by its real path.
ACTIVE_PYTHON = "active-python"
FIX_LOCK = "run `./tools/bazel run //third_party/python:requirements_update` to regenerate the lock"


def fail(message: str) -> None:
    print(f"\nterra-lab python setup: {message}\n", file=sys.stderr)
    sys.exit(1)


def normalize(name: str) -> str:
    """PEP 503 name, then a Bazel-friendly target name (`PyYAML` -> `pyyaml`)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def parse_lock(text: str) -> dict[str, dict]:
    """{target: {"name", "version", "required_by": [targets]}} from a pip-compile lock."""
    packages: dict[str, dict] = {}
    current = None
    in_via_block = False
    for raw_line in text.splitlines():
        line = raw_line.strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", raw_line)
        if match:
            current = normalize(match.group(1))
            packages[current] = {
                "name": match.group(1),
                "version": match.group(2),
                "required_by": [],
                "hashed": "--hash=sha256:" in raw_line,
            }
            in_via_block = False
            continue
        if current is not None and line.startswith("--hash=sha256:"):
            packages[current]["hashed"] = True
            continue
        if current is None or not line.startswith("#"):
            in_via_block = False
            continue
        comment = line.lstrip("#").strip()
        if comment.startswith("via "):
            parent = comment[len("via ") :].strip()
            packages[current]["required_by"].append(parent)
        elif comment == "via":
            in_via_block = True
        elif in_via_block and comment:
            packages[current]["required_by"].append(comment)
    for info in packages.values():
        parents = []
        for parent in info["required_by"]:
            parent = parent.split()[0]
            if parent.startswith("-r") or parent.endswith(".in"):
                continue  # a direct requirement
            parents.append(normalize(parent))
        info["required_by"] = parents
    return packages


def check_python(python: str) -> None:
    version = tuple(
        int(part)
        for part in subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    )
    if version != REQUIRED_PYTHON:
        fail(
            f"{python} is Python {'.'.join(map(str, version))}; terra-lab needs Python 3.11 (the "
            "interpreter of Debian bookworm, which the container image uses too). Install it with "
            "`apt-get install python3.11 python3.11-venv`, or point TERRA_LAB_PYTHON at a 3.11."
        )


def build_venv(python: str, lock: Path, venv: Path, pip_args: list[str]) -> None:
    if venv.exists():
        shutil.rmtree(venv)  # an interrupted earlier attempt: no marker was written
    print(f"terra-lab: creating the Python environment in {venv}", file=sys.stderr)
    result = subprocess.run([python, "-m", "venv", str(venv)], capture_output=True, text=True)
    if result.returncode != 0:
        fail(
            f"`{python} -m venv` failed:\n{result.stderr.strip()}\n"
            "Install the venv module: `apt-get install python3.11-venv`."
        )
    command = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--require-hashes",
        "--no-deps",
        "-r",
        str(lock),
        *pip_args,
    ]
    print(f"terra-lab: installing {lock.name} (first time only)", file=sys.stderr)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        shutil.rmtree(venv, ignore_errors=True)
        if "DO NOT MATCH THE HASHES" in output:
            fail(
                "a downloaded package does not match the hash in requirements.lock:\n"
                + _tail(output)
                + f"\nIf the lock is out of date, {FIX_LOCK}."
            )
        fail(f"pip could not install the lock:\n{_tail(output)}\nIf the lock is stale, {FIX_LOCK}.")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{REQUIRED_PYTHON[0]}.{REQUIRED_PYTHON[1]}" / "site-packages"


def find_metadata(site: Path, info: dict) -> Path:
    wanted = normalize(info["name"])
    for dist_info in site.glob("*.dist-info"):
        name, _, version = dist_info.name[: -len(".dist-info")].rpartition("-")
        if normalize(name) == wanted and version == info["version"]:
            return dist_info / "METADATA"
    fail(f"{info['name']}=={info['version']} is in the lock but not installed; {FIX_LOCK}.")
    raise AssertionError  # unreachable


def write_repository(
    repo: Path,
    repo_name: str,
    venv: Path,
    environment: Path,
    interpreter: Path,
    packages: dict[str, dict],
) -> None:
    """The Bazel repository of `venv`.

    `environment` is the path the repository names the venv by (the stable `<cache>/active`
    for the toolchain's venv, else the venv itself) and `interpreter` the py_runtime's
    interpreter.
    """
    site = site_packages(venv)
    # A second environment (the reference implementation) is not the interpreter's own venv;
    # tests that need it call `<repo>_site_packages.activate()` to append its site-packages.
    site_module = f"{repo_name}_site_packages"
    (repo / f"{site_module}.py").write_text(
        f'"""site-packages of @{repo_name} (generated by make_venv.py)."""\n\n'
        "import sys\n\n"
        f"SITE_PACKAGES = {str(site_packages(environment))!r}\n\n\n"
        "def activate() -> None:\n"
        "    if SITE_PACKAGES not in sys.path:\n"
        "        sys.path.append(SITE_PACKAGES)\n"
    )
    deps: dict[str, list[str]] = {target: [] for target in packages}
    for target, info in packages.items():
        for parent in info["required_by"]:
            if parent in deps:
                deps[parent].append(target)
    (repo / "meta").mkdir(exist_ok=True)
    lines = [
        "# Generated by //third_party/python:make_venv.py from requirements.lock. Do not edit.",
        'load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")',
        "",
        'package(default_visibility = ["//visibility:public"])',
        "",
        "py_runtime(",
        '    name = "python3",',
        f'    interpreter_path = "{interpreter}",',
        '    python_version = "PY3",',
        '    stub_shebang = "#!/usr/bin/env python3",',
        ")",
        "",
        'py_runtime_pair(name = "runtime_pair", py3_runtime = ":python3")',
        "",
        "toolchain(",
        '    name = "python_toolchain",',
        '    toolchain = ":runtime_pair",',
        '    toolchain_type = "@bazel_tools//tools/python:toolchain_type",',
        ")",
        "",
        'exports_files(["bin/ruff", "bin/python"])',
        "",
        "py_library(",
        '    name = "site_packages",',
        f'    srcs = ["{site_module}.py"],',
        '    imports = ["."],',
        ")",
        "",
    ]
    for target in sorted(packages):
        info = packages[target]
        metadata = find_metadata(site, info)
        (repo / "meta" / f"{target}.METADATA").write_bytes(metadata.read_bytes())
        dep_list = ", ".join(f'":{dep}"' for dep in sorted(set(deps[target])))
        lines += [
            "py_library(",
            f'    name = "{target}",',
            f'    data = ["meta/{target}.METADATA"],',
            f'    deps = [{dep_list}{", " if dep_list else ""}":site_packages"],',
            f'    tags = ["pypi_name={info["name"]}", "pypi_version={info["version"]}"],',
            ")",
            "",
        ]
    (repo / "BUILD.bazel").write_text("\n".join(lines))
    (repo / "bin").mkdir(exist_ok=True)
    for tool in ("ruff", "python"):
        link = repo / "bin" / tool
        if link.is_symlink() or link.exists():
            link.unlink()
        if (venv / "bin" / tool).exists():
            link.symlink_to(venv / "bin" / tool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--python", required=True)
    parser.add_argument("--lock", required=True, type=Path)
    parser.add_argument("--cache-root", required=True, type=Path)
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--repo-name", default="pypi")
    parser.add_argument(
        "--activate",
        action="store_true",
        help="make this venv the machine's active one (the toolchain's interpreter)",
    )
    parser.add_argument("--pip-args", default="")
    args = parser.parse_args()

    check_python(args.python)
    lock_text = args.lock.read_text()
    packages = parse_lock(lock_text)
    if not packages:
        fail(f"{args.lock} pins no packages; {FIX_LOCK}.")
    unhashed = [info["name"] for info in packages.values() if not info["hashed"]]
    if unhashed:
        fail(f"{args.lock} pins {', '.join(unhashed)} without a hash; {FIX_LOCK}.")

    digest = hashlib.sha256(lock_text.encode() + args.pip_args.encode()).hexdigest()[:16]
    args.cache_root.mkdir(parents=True, exist_ok=True)
    venv = args.cache_root / f"venv-{digest}"
    with open(args.cache_root / f"venv-{digest}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # another clone may be building the same venv
        if not (venv / COMPLETE_MARKER).exists():
            build_venv(args.python, args.lock, venv, args.pip_args.split())
            (venv / COMPLETE_MARKER).write_text(
                json.dumps({"lock_sha256_prefix": digest, "packages": len(packages)})
            )
    environment, interpreter = venv, venv / "bin" / "python"
    if args.activate:
        activate(args.cache_root, venv)
        environment = args.cache_root / ACTIVE_LINK
        interpreter = write_active_python(args.cache_root)
    write_repository(args.repo, args.repo_name, venv, environment, interpreter, packages)


def activate(cache_root: Path, venv: Path) -> None:
    """Points `<cache>/active` at `venv` (atomically: a new link renamed over the old one).

    The toolchain runs `<cache>/active-python` (write_active_python), a path that does not
    change with the lock. Bazel keys test actions on the interpreter path, so a lock-specific
    path would re-run every test after any bump; with a stable one, only the tests whose @pypi
    targets (their METADATA files) changed re-run. tools/bazel re-points the link to the
    checkout's own lock before every command, and pytest_main.py refuses to run against a venv
    that does not match the test's METADATA (say, after another clone switched it).
    """
    temporary = cache_root / f".{ACTIVE_LINK}.{os.getpid()}"
    if temporary.is_symlink():
        temporary.unlink()
    temporary.symlink_to(venv.name)
    os.replace(temporary, cache_root / ACTIVE_LINK)


def write_active_python(cache_root: Path) -> Path:
    """`<cache>/active-python`: runs the active venv's python by the venv's real path.

    Python takes sys.prefix, and with it site-packages, from the path it was started by. Run
    as `<cache>/active/bin/python`, a process would keep importing through `active`, and when
    another clone's tools/bazel re-points the link (every command does), a training run that
    is already going would take its later imports from the other clone's venv. Resolving the
    link once, when the process starts, pins each process to one venv for its whole life;
    sys.executable is the resolved path too, so subprocesses started with it stay there.
    Every clone writes the same bytes here, so rewriting it is harmless.
    """
    active = cache_root / ACTIVE_LINK
    script = cache_root / ACTIVE_PYTHON
    missing = f"terra-lab: {active} is missing; ./tools/bazel builds the Python environment"
    text = (
        "#!/bin/sh\n"
        "# Generated by third_party/python/make_venv.py (write_active_python): the Python\n"
        "# toolchain's interpreter. Runs the venv that `active` points at now, by its real path,\n"
        "# so re-pointing the link later does not switch a running process's imports.\n"
        f"venv=$(cd -P -- {shlex.quote(str(active))} 2>/dev/null && pwd -P) || {{\n"
        f"  echo {shlex.quote(missing)} >&2\n"
        "  exit 127\n"
        "}\n"
        'exec "$venv/bin/python" "$@"\n'
    )
    if not script.exists() or script.read_text() != text:
        temporary = cache_root / f".{ACTIVE_PYTHON}.{os.getpid()}"
        temporary.write_text(text)
        temporary.chmod(0o755)
        os.replace(temporary, script)
    return script


if __name__ == "__main__":
    main()
