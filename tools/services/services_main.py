"""`./tools/bazel run //tools/services -- start|stop|status|env [registry|docker|slurm|all]`.

The developer's commands over launcher/services (the library a launch uses to start what a
cluster needs). `env` prints export lines for DOCKER_HOST, SLURM_CONF and the registry URL.
`status` exits 3 when a named service is not running and healthy.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

from launcher.services import services

ACTIONS = ("start", "stop", "status", "env")

_STATE_DIR = flags.DEFINE_string(
    "state_dir", None, "Folder of the services' state (default: ~/.cache/terra-lab/services)."
)
_REGISTRY_ADDRESS = flags.DEFINE_string(
    "registry_address", services.DEFAULT_REGISTRY_ADDRESS, "Loopback host:port of the registry."
)


def _services(names: list[str], state_root: Path, registry_address: str) -> list:
    table = {
        "registry": lambda: services.registry(state_root, registry_address),
        "docker": lambda: services.docker(state_root),
        "slurm": lambda: services.slurm(state_root),
    }
    return [table[name]() for name in names]


def run(action: str, service: str, state_root: Path, registry_address: str) -> int:
    """Do `action` on `service` ("all" or one of SERVICE_NAMES); the exit status."""
    names = list(services.SERVICE_NAMES) if service == "all" else [service]
    if action == "env":
        reg, dock, slur = _services(list(services.SERVICE_NAMES), state_root, registry_address)
        print(f"export TERRA_LAB_REGISTRY={reg.url}")
        print(f"export DOCKER_HOST={dock.docker_host}")
        print(f"export SLURM_CONF={slur.conf}")
        return 0
    status = 0
    for name, daemon in zip(names, _services(names, state_root, registry_address), strict=True):
        if action == "start":
            started = not daemon.running()
            where = daemon.start()
            print(f"{name}: {'started' if started else 'already running'} ({where})")
        elif action == "stop":
            print(f"{name}: {'stopped' if daemon.stop() else 'was not running'}")
        else:
            up = daemon.running() and daemon.healthy()
            print(f"{name}: {'running' if up else 'stopped'} (state in {daemon.state_dir})")
            status |= 0 if up else 3
    return status


def _run(positional: list[str]) -> int:
    choices = [*services.SERVICE_NAMES, "all"]
    if not positional or positional[0] not in ACTIONS:
        raise app.UsageError(f"the first argument must be one of {', '.join(ACTIONS)}")
    if len(positional) > 2:
        raise app.UsageError(f"name at most one service after {positional[0]}: {positional[1:]}")
    if len(positional) == 2 and positional[1] not in choices:
        raise app.UsageError(
            f"unknown service {positional[1]!r}; name one of {', '.join(choices)} (default: all)"
        )
    service = positional[1] if len(positional) == 2 else "all"
    state_root = Path(_STATE_DIR.value or services.default_state_root()).absolute()
    return run(positional[0], service, state_root, _REGISTRY_ADDRESS.value)


def main(argv: list[str] | None = None) -> int:
    """The exit status for `argv` (the arguments after the program name; None: sys.argv)."""
    try:
        positional = flags.FLAGS(sys.argv if argv is None else ["services", *argv])[1:]
        return _run(positional)
    except (flags.Error, app.UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as error:
        print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
