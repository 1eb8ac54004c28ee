"""`./tools/bazel run //tools/services -- start|stop|status|env [registry|docker|slurm|all]`.

The developer's commands over launcher/services (the library a launch uses to start what a
cluster needs). `env` prints export lines for DOCKER_HOST, SLURM_CONF and the registry URL.
`status` exits 3 when a named service is not running and healthy. Flags: --state_dir (default
~/.cache/terra-lab/services), --registry_address (default 127.0.0.1:5000), --nodes (the dev
Slurm cluster's node count: `start slurm --nodes=2` runs two slurmd on this host; without it
the cluster keeps the shape it has, one node on a fresh state directory).
"""

from __future__ import annotations

import types
from pathlib import Path

from absl import app, flags

from launcher.cli import command
from launcher.services import services

ACTIONS = ("start", "stop", "status", "env")

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "state_dir", None, "Folder of the services' state (default: ~/.cache/terra-lab/services).",
    flag_values=FLAGS,
)  # fmt: skip
flags.DEFINE_string(
    "registry_address", services.DEFAULT_REGISTRY_ADDRESS, "Loopback host:port of the registry.",
    flag_values=FLAGS,
)  # fmt: skip
flags.DEFINE_integer(
    "nodes", None,
    f"start slurm: nodes of the dev cluster (1 to {services.MAX_DEV_NODES}, one slurmd each on "
    "this host). Default: the shape it has (1 on a fresh one); a different number rewrites "
    "slurm.conf and restarts its daemons.",
    flag_values=FLAGS,
)  # fmt: skip


def _services(
    names: list[str], state_root: Path, registry_address: str, nodes: int | None = None
) -> list:
    table = {
        "registry": lambda: services.registry(state_root, registry_address),
        "docker": lambda: services.docker(state_root),
        "slurm": lambda: services.slurm(state_root, nodes),
    }
    return [table[name]() for name in names]


def run(args: types.SimpleNamespace) -> int:
    """Do `args.action` on `args.service` (one of SERVICE_NAMES, or all); the exit status."""
    choices = [*services.SERVICE_NAMES, "all"]
    if args.action not in ACTIONS:
        raise app.UsageError(f"unknown action {args.action!r}; use one of {', '.join(ACTIONS)}")
    service = args.service or "all"
    if service not in choices:
        raise app.UsageError(
            f"unknown service {service!r}; name one of {', '.join(choices)} (default: all)"
        )
    nodes = args.nodes
    if nodes is not None:
        if args.action != "start" or service not in ("slurm", "all"):
            raise app.UsageError("--nodes reshapes the dev Slurm cluster: use it with start slurm")
        try:
            services.slurm_node_names(nodes)
        except ValueError as error:
            raise app.UsageError(str(error)) from None
    state_root = Path(args.state_dir or services.default_state_root()).absolute()
    if args.action == "env":
        every = _services(list(services.SERVICE_NAMES), state_root, args.registry_address)
        registry, docker, slurm = every
        print(f"export TERRA_LAB_REGISTRY={registry.url}")
        print(f"export DOCKER_HOST={docker.docker_host}")
        print(f"export SLURM_CONF={slurm.conf}")
        return 0
    names = list(services.SERVICE_NAMES) if service == "all" else [service]
    status = 0
    for name, daemon in zip(
        names, _services(names, state_root, args.registry_address, nodes), strict=True
    ):
        if args.action == "start":
            where, started = daemon.start_reporting()
            print(f"{name}: {'started' if started else 'already running'} ({where})")
        elif args.action == "stop":
            print(f"{name}: {'stopped' if daemon.stop() else 'was not running'}")
        else:
            up = daemon.running() and daemon.healthy()
            print(f"{name}: {'running' if up else 'stopped'} (state in {daemon.state_dir})")
            status |= 0 if up else 3
    return status


COMMAND = command.Command("services", FLAGS, run, positional=("action",), optional=("service",))
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.run_app()
