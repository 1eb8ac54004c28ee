"""Debian packages on demand: install what a service needs, without starting anything.

A fresh machine has none of docker.io, docker-registry, slurm-wlm or munge. As root we
install them with apt-get; as another user we stop with the exact command to run.

Debian's maintainer scripts start a package's daemons right after installing it (a
registry on 0.0.0.0:5000, dockerd on /var/run/docker.sock, munged with a generated key).
We want only our own daemons, on loopback, so the install runs with a policy-rc.d that
forbids starting services (exit 101, Debian policy §9.3.3) — unless the machine already has
a policy-rc.d, which we then leave alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from launcher.services import process

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
# Serializes our installs: two services starting at once would otherwise race on policy-rc.d
# (one removing it while the other's packages are still being configured).
INSTALL_LOCK = Path("/run/lock/terra-lab-packages.lock")
_DENY_ALL = (
    "#!/bin/sh\n# terra-lab launcher/services: no daemon starts during installs.\nexit 101\n"
)


class MissingPackages(RuntimeError):
    """Packages are missing and we are not root: the message is one line with the command."""

    def __init__(self, packages: list[str]) -> None:
        self.packages = list(packages)
        self.command = f"sudo apt-get update && sudo apt-get install -y {' '.join(packages)}"
        super().__init__(
            f"missing Debian packages: {' '.join(packages)}; install them as root: {self.command}"
        )


def missing(packages: list[str]) -> list[str]:
    """The packages in `packages` that dpkg does not list as installed."""
    result = []
    for package in packages:
        query = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        )
        # "install ok installed"; a removed package reads "deinstall ok config-files" or
        # "unknown ok not-installed", which also ends with "installed".
        if query.returncode != 0 or query.stdout.split()[-1:] != ["installed"]:
            result.append(package)
    return result


def ensure_installed(needs: dict[str, str]) -> None:
    """Install the Debian packages behind `needs` ({what it is for: package}) if missing."""
    wanted = sorted(set(needs.values()))
    absent = missing(wanted)
    if not absent:
        return
    if os.geteuid() != 0:
        raise MissingPackages(absent)
    with process.exclusive_lock(INSTALL_LOCK):
        absent = missing(wanted)  # another process may have installed them while we waited
        if absent:
            _install(absent)


def _install(absent: list[str]) -> None:
    print(f"[services] installing {' '.join(absent)} (first use on this machine)", file=sys.stderr)
    own_policy = not POLICY_RC_D.exists()
    if own_policy:
        POLICY_RC_D.write_text(_DENY_ALL)
        POLICY_RC_D.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        command = [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            "DPkg::Lock::Timeout=600",
            *absent,
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0 and "Unable to locate package" in result.stdout + result.stderr:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            result = subprocess.run(command, env=env, capture_output=True, text=True)
    finally:
        if own_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"apt-get install {' '.join(absent)} failed:\n{tail}")
