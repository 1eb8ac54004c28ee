"""tools/bazel on a machine that lacks the build's Debian packages and is not root."""

import os
import shutil
import subprocess

import pytest

SCRIPT = os.path.abspath("tools/bazel")


@pytest.fixture
def bare_path(tmp_path):
    """A PATH with coreutils and dpkg-query only: no bazel-4, python3.11, npm or git."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dpkg-query", "grep", "sha256sum", "cut", "cat", "readlink", "dirname", "bash"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed (not a Debian machine)")
        (bin_dir / tool).symlink_to(found)
    fake_id = bin_dir / "id"
    fake_id.write_text("#!/bin/sh\necho 1000\n")  # any non-root user
    fake_id.chmod(0o755)
    return str(bin_dir)


def test_non_root_user_is_told_which_packages_to_install(bare_path, tmp_path):
    if not os.path.exists("/etc/debian_version"):
        pytest.skip("tools/bazel installs packages on Debian only")
    result = subprocess.run(
        ["bash", SCRIPT, "version"],
        env={"PATH": bare_path, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "missing Debian packages: bazel-bootstrap" in result.stderr
    for package in ("python3.11", "python3.11-venv", "npm", "git"):
        assert package in result.stderr
    assert "apt-get install -y" in result.stderr
