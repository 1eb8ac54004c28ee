"""Which Debian packages count as installed, and what a non-root user is told to run."""

import os

import pytest

from launcher.services import packages


@pytest.fixture
def fake_dpkg(tmp_path, monkeypatch):
    """dpkg-query answering with the status set for a package; others are unknown to it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "dpkg-query"
    script.write_text(
        "#!/bin/sh\n"
        'package="$3"\n'
        f'status_file="{tmp_path}/status-$package"\n'
        '[ -f "$status_file" ] || { echo "no packages found matching $package" >&2; exit 1; }\n'
        'printf %s "$(cat "$status_file")"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def set_status(package: str, status: str) -> None:
        (tmp_path / f"status-{package}").write_text(status)

    return set_status


def test_only_the_installed_status_counts_as_installed(fake_dpkg):
    fake_dpkg("debootstrap", "install ok installed")
    # What dpkg says about a package that was removed or only known from a package list:
    # both end in "installed", and the first once made a fresh machine skip the install.
    fake_dpkg("bubblewrap", "unknown ok not-installed")
    fake_dpkg("munge", "deinstall ok config-files")
    fake_dpkg("docker.io", "install ok half-installed")
    wanted = ["bubblewrap", "debootstrap", "docker.io", "munge", "never-heard-of"]
    assert packages.missing(wanted) == ["bubblewrap", "docker.io", "munge", "never-heard-of"]


def test_a_non_root_user_gets_one_line_with_the_command(fake_dpkg, monkeypatch):
    fake_dpkg("debootstrap", "unknown ok not-installed")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(packages.MissingPackages) as raised:
        packages.ensure_installed({"debootstrap": "debootstrap"})
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        "missing Debian packages: debootstrap; install them as root: "
        "sudo apt-get update && sudo apt-get install -y debootstrap"
    )
    assert raised.value.packages == ["debootstrap"]


def test_nothing_is_done_when_everything_is_installed(fake_dpkg, monkeypatch):
    fake_dpkg("debootstrap", "install ok installed")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # would raise if it tried to install
    packages.ensure_installed({"debootstrap": "debootstrap"})
