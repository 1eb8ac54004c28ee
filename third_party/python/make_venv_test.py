"""The lock parser behind @pypi: every package pinned and hashed, dependency edges, errors;
the toolchain's interpreter, which pins a running process to the venv it started with."""

import json
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_venv  # noqa: E402

LOCK_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.lock")


def test_real_lock_pins_every_direct_requirement_with_a_hash():
    packages = make_venv.parse_lock(open(LOCK_PATH).read())
    for direct in ("torch", "einops", "numpy", "h5py", "wandb", "absl_py", "pytest", "pyyaml"):
        assert direct in packages, direct
    assert all(info["hashed"] for info in packages.values())
    assert packages["torch"]["version"].startswith("2.13.0")


def test_transitive_edges_come_from_via_comments():
    lock = """\
torch==2.13.0 \\
    --hash=sha256:aa
    # via -r requirements.in
sympy==1.14.0 \\
    --hash=sha256:bb
    # via torch
markupsafe==3.0 \\
    --hash=sha256:cc
    # via
    #   jinja2
    #   werkzeug
"""
    packages = make_venv.parse_lock(lock)
    assert packages["torch"]["required_by"] == []
    assert packages["sympy"]["required_by"] == ["torch"]
    assert packages["markupsafe"]["required_by"] == ["jinja2", "werkzeug"]


def test_names_are_normalized_to_bazel_targets():
    assert make_venv.normalize("PyYAML") == "pyyaml"
    assert make_venv.normalize("absl-py") == "absl_py"
    assert make_venv.normalize("typing.extensions") == "typing_extensions"


def test_unhashed_package_fails_naming_the_fix(tmp_path, capsys):
    lock = tmp_path / "requirements.lock"
    lock.write_text("einops==0.8.2\n    # via -r requirements.in\n")
    argv = ["make_venv", "--python", sys.executable, "--lock", str(lock)]
    argv += ["--cache-root", str(tmp_path / "cache"), "--repo", str(tmp_path / "repo")]
    old_argv, sys.argv = sys.argv, argv
    try:
        with pytest.raises(SystemExit):
            make_venv.main()
    finally:
        sys.argv = old_argv
    message = capsys.readouterr().err
    assert "einops without a hash" in message
    assert "requirements_update" in message


def test_python_other_than_311_is_refused_with_install_hint(tmp_path, capsys):
    fake = tmp_path / "python3.12"
    fake.write_text("#!/bin/sh\necho 3 12\n")
    fake.chmod(0o755)
    with pytest.raises(SystemExit):
        make_venv.check_python(str(fake))
    message = capsys.readouterr().err
    assert "Python 3.12" in message and "apt-get install python3.11" in message


def _tiny_wheel(directory):
    """A one-module wheel pip can install offline (no index, no network)."""
    import zipfile

    path = directory / "tinypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("tinypkg.py", "VALUE = 1\n")
        wheel.writestr(
            "tinypkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n"
        )
        wheel.writestr(
            "tinypkg-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr("tinypkg-1.0.dist-info/RECORD", "")
    return path


def _run_main(tmp_path, lock, pip_args, *flags):
    argv = ["make_venv", "--python", sys.executable, "--lock", str(lock)]
    argv += ["--cache-root", str(tmp_path / "cache"), "--repo", str(tmp_path / "repo")]
    argv += ["--pip-args", pip_args, *flags]
    (tmp_path / "repo").mkdir(exist_ok=True)
    old_argv, sys.argv = sys.argv, argv
    try:
        make_venv.main()
    finally:
        sys.argv = old_argv


def test_hash_mismatch_fails_naming_requirements_update(tmp_path, capsys):
    if sys.version_info[:2] != (3, 11):
        pytest.skip("make_venv only accepts Python 3.11")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _tiny_wheel(wheels)
    lock = tmp_path / "requirements.lock"
    lock.write_text("tinypkg==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(SystemExit):
        _run_main(tmp_path, lock, f"--no-index --find-links {wheels}")
    message = capsys.readouterr().err
    assert "does not match the hash" in message
    assert "requirements_update" in message
    assert not list((tmp_path / "cache").glob("venv-*/terra-lab-venv-complete.json"))


def test_matching_lock_builds_repository_with_one_target_per_package(tmp_path):
    if sys.version_info[:2] != (3, 11):
        pytest.skip("make_venv only accepts Python 3.11")
    import hashlib

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    digest = hashlib.sha256(_tiny_wheel(wheels).read_bytes()).hexdigest()
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"tinypkg==1.0 \\\n    --hash=sha256:{digest}\n    # via -r requirements.in\n")
    _run_main(tmp_path, lock, f"--no-index --find-links {wheels}")
    build = (tmp_path / "repo" / "BUILD.bazel").read_text()
    assert 'name = "tinypkg"' in build
    assert "python_toolchain" in build
    assert (tmp_path / "repo" / "meta" / "tinypkg.METADATA").read_text().startswith("Metadata")


def _fake_venv(path, name):
    """A venv without pip whose site-packages has a module telling which venv it is."""
    python = shutil.which("python3.11") or sys.executable
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True)
    (make_venv.site_packages(path) / "which_venv.py").write_text(f"NAME = {name!r}\n")
    return path


# Reports where it started, waits for a line on stdin, then imports and reports again.
_REPORT_AND_IMPORT_LATER = """
import json, sys
print(json.dumps({"prefix": sys.prefix, "executable": sys.executable}), flush=True)
sys.stdin.readline()
import which_venv
print(json.dumps({"name": which_venv.NAME, "file": which_venv.__file__}), flush=True)
"""


def _start_then_switch(interpreter, cache_root, switch_to):
    """Start `interpreter`, re-point `active` to `switch_to`, then let it import."""
    child = subprocess.Popen(
        [str(interpreter), "-c", _REPORT_AND_IMPORT_LATER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    started = json.loads(child.stdout.readline())
    make_venv.activate(cache_root, switch_to)  # what another clone's ./tools/bazel does
    out, _ = child.communicate("go\n", timeout=60)
    assert child.returncode == 0
    return started, json.loads(out)


def test_a_running_process_keeps_the_venv_it_started_with(tmp_path):
    if not shutil.which("python3.11") and sys.version_info[:2] != (3, 11):
        pytest.skip("needs Python 3.11 to make venvs")
    cache_root = tmp_path / "cache" / "terra-lab" / "python"
    cache_root.mkdir(parents=True)
    first = _fake_venv(cache_root / "venv-first", "first").resolve()
    second = _fake_venv(cache_root / "venv-second", "second").resolve()

    make_venv.activate(cache_root, first)
    interpreter = make_venv.write_active_python(cache_root)
    started, imported = _start_then_switch(interpreter, cache_root, switch_to=second)
    assert started == {"prefix": str(first), "executable": str(first / "bin" / "python")}
    assert imported["name"] == "first"
    assert imported["file"] == str(make_venv.site_packages(first) / "which_venv.py")

    # What the toolchain ran before: the unresolved link, whose imports follow the switch.
    make_venv.activate(cache_root, first)
    link_python = cache_root / make_venv.ACTIVE_LINK / "bin" / "python"
    started, imported = _start_then_switch(link_python, cache_root, switch_to=second)
    assert started["prefix"] == str(cache_root / make_venv.ACTIVE_LINK)
    assert imported["name"] == "second"


def test_the_active_python_says_what_to_do_without_an_active_venv(tmp_path):
    interpreter = make_venv.write_active_python(tmp_path)
    result = subprocess.run([str(interpreter), "-c", "pass"], capture_output=True, text=True)
    assert result.returncode == 127
    assert (
        result.stderr
        == f"terra-lab: {tmp_path}/active is missing; ./tools/bazel builds the Python environment\n"
    )
    assert make_venv.write_active_python(tmp_path).read_text() == interpreter.read_text()


def test_the_toolchain_runs_the_active_python(tmp_path):
    if sys.version_info[:2] != (3, 11):
        pytest.skip("make_venv only accepts Python 3.11")
    import hashlib

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    digest = hashlib.sha256(_tiny_wheel(wheels).read_bytes()).hexdigest()
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"tinypkg==1.0 \\\n    --hash=sha256:{digest}\n    # via -r requirements.in\n")
    _run_main(tmp_path, lock, f"--no-index --find-links {wheels}", "--activate")
    cache_root = tmp_path / "cache"
    build = (tmp_path / "repo" / "BUILD.bazel").read_text()
    assert f'interpreter_path = "{cache_root / make_venv.ACTIVE_PYTHON}",' in build
    result = subprocess.run(
        [str(cache_root / make_venv.ACTIVE_PYTHON), "-c", "import sys, tinypkg; print(sys.prefix)"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    (venv,) = [path for path in cache_root.glob("venv-*") if path.is_dir()]
    assert result.stdout.strip() == str(venv.resolve())
    # The site-packages module names the stable link, so a lock bump leaves it unchanged.
    site_module = (tmp_path / "repo" / "pypi_site_packages.py").read_text()
    assert repr(str(make_venv.site_packages(cache_root / make_venv.ACTIVE_LINK))) in site_module
