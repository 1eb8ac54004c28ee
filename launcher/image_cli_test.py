"""push_image and build_image fail with one line naming the problem and the fix.

Each case runs the tool's module in a subprocess with one bad input and checks the exit code
(2: bad input, 1: a failed operation), that stderr is that one line, and that no traceback
shows unless TERRA_LAB_DEBUG=1 asks for it.
"""

import http.server
import os
import socket
import subprocess
import sys
import threading

import pytest

from launcher import build_image, testing

CLUSTERS_YAML = """\
image:
  source: https://example.com/terra-lab
  repository: terra-lab
  base:
    suite: bookworm
    mirror: http://deb.example.invalid/debian
registries:
  embedded:
    url: http://127.0.0.1:5000
    embedded: true
clusters:
  local:
    backend: local
    registry: embedded
"""


@pytest.fixture
def checkout(tmp_path):
    """A git checkout holding what the tools read: clusters.yaml and a hash-pinned lock."""
    wheel = testing.make_wheel(tmp_path / "wheels")
    return testing.make_repo(
        tmp_path / "checkout",
        {
            "launcher/clusters.yaml": CLUSTERS_YAML,
            "third_party/python/requirements.lock": testing.lock_for(wheel),
            "experiments/nano.py": "print('nano')\n",
        },
    )


def _run(tool, args, workspace, **env):
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TERRA_LAB_DEBUG", "TERRA_LAB_IMAGE_FLAVOR", "BUILD_WORKSPACE_DIRECTORY")
    }
    environment = dict(base, PYTHONPATH=os.pathsep.join(sys.path), **env)
    environment["BUILD_WORKSPACE_DIRECTORY"] = str(workspace)
    return subprocess.run(
        [sys.executable, "-m", f"launcher.{tool}", *args],
        env=environment,
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line_error(result, exit_code):
    """The single line `result` printed on stderr, after checking how it exited."""
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize("tool", ["push_image", "build_image"])
def test_an_unknown_flavor_is_bad_input(tool, checkout):
    line = _one_line_error(_run(tool, ["--flavor", "gpu"], checkout), 2)
    assert line == f"{tool}: unknown image flavor 'gpu' (--flavor); use one of cpu, cuda"
    from_env = _run(tool, [], checkout, TERRA_LAB_IMAGE_FLAVOR="rocm")
    line = _one_line_error(from_env, 2)
    assert line == (
        f"{tool}: unknown image flavor 'rocm' ($TERRA_LAB_IMAGE_FLAVOR); use one of cpu, cuda"
    )


@pytest.mark.parametrize("tool", ["push_image", "build_image"])
def test_an_unknown_argument_is_one_line_not_the_usage(tool, checkout):
    line = _one_line_error(_run(tool, ["--revison", "HEAD"], checkout), 2)
    assert line == f"{tool}: unknown flag --revison; did you mean --revision? (see --help)"


@pytest.mark.parametrize("tool", ["push_image", "build_image"])
def test_an_unknown_revision_is_bad_input(tool, checkout):
    line = _one_line_error(_run(tool, ["--revision", "no-such-branch"], checkout), 2)
    assert line.startswith(f"{tool}: unknown revision 'no-such-branch': no such commit in ")
    assert "git log --oneline" in line


@pytest.mark.parametrize("tool", ["push_image", "build_image"])
def test_a_folder_that_is_not_a_git_repository_is_bad_input(tool, tmp_path):
    line = _one_line_error(_run(tool, [], tmp_path), 2)
    assert line.startswith(f"{tool}: {tmp_path} is not a git repository; run this in a terra-lab")


@pytest.mark.parametrize("tool", ["push_image", "build_image"])
def test_no_git_names_the_package_to_install(tool, checkout, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    line = _one_line_error(_run(tool, [], checkout, PATH=str(empty)), 1)
    assert line == f"{tool}: git is not installed; install it: sudo apt-get install -y git"


def test_an_unknown_registry_name_is_bad_input(checkout):
    line = _one_line_error(_run("push_image", ["--registry", "ghcr"], checkout), 2)
    assert line == (
        "push_image: --registry 'ghcr' is neither a registry of launcher/clusters.yaml "
        "(embedded) nor an http(s):// URL; pass one of those"
    )


def test_an_experiment_missing_from_the_commit_is_bad_input(checkout):
    result = _run("push_image", ["--experiment", "nanoo"], checkout)
    line = _one_line_error(result, 2)
    assert line.startswith("push_image: experiments/nanoo.py is not in commit ")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_registry_that_does_not_answer_fails_before_any_build(checkout):
    url = f"http://127.0.0.1:{_free_port()}"
    line = _one_line_error(_run("push_image", ["--registry", url], checkout), 1)
    assert line.startswith(f"push_image: the registry at {url} does not answer (")
    assert "Connection refused" in line
    assert line.endswith("start it (`./tools/bazel run //tools/services -- start registry` "
                         "for the embedded one) or pass --registry")  # fmt: skip


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b'{"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}'
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="registry"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_registry_that_refuses_names_the_credentials_to_set(checkout):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        line = _one_line_error(_run("push_image", ["--registry", url], checkout), 1)
    finally:
        server.shutdown()
    assert line == (
        f"push_image: the registry at {url} refused us (GET {url}/v2/: HTTP 401: UNAUTHORIZED: "
        "authentication required); set TERRA_LAB_REGISTRY_USER and TERRA_LAB_REGISTRY_PASSWORD "
        "to an account that may push there"
    )


def test_terra_lab_debug_shows_the_traceback(checkout):
    result = _run("build_image", ["--revision", "no-such-branch"], checkout, TERRA_LAB_DEBUG="1")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "BadInput: unknown revision 'no-such-branch'" in result.stderr


def test_without_debootstrap_a_non_root_user_gets_the_apt_get_command(
    checkout, tmp_path, monkeypatch, capsys
):
    # In-process, so that the process can pretend not to be root; dpkg knows no debootstrap.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "dpkg-query").write_text("#!/bin/sh\necho 'no packages found' >&2\nexit 1\n")
    (fake_bin / "dpkg-query").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no base layer cached
    monkeypatch.setenv("BUILD_WORKSPACE_DIRECTORY", str(checkout))
    monkeypatch.delenv("TERRA_LAB_DEBUG", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert build_image.main([]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[")]
    assert errors == [
        "build_image: building the base layer needs debootstrap, which is not installed, and "
        "root: run `sudo apt-get update && sudo apt-get install -y debootstrap`, then "
        "`sudo -E ./tools/bazel run //launcher:build_image` once on this machine"
    ]
