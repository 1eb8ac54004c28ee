"""launcher/clusters.yaml as typed, validated settings.

One file names every cluster: its backend, registry, image flavor, runtime and the roots
mounted into jobs. Loading is strict: an unknown key or value is an error naming the key
and what is allowed, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import yaml

from launcher.image import base_layer, deps_layer

CLUSTERS_FILE = "launcher/clusters.yaml"
BACKENDS = ("local", "slurm")
RUNTIMES = ("auto", "docker", "bwrap")
SERVICES = ("registry", "slurm", "docker")
# Variables the launcher sets in every job (TERRA_LAB_IMAGE, TERRA_RUN_ROOT, ...): a cluster's
# `env` may not set or shadow them.
RESERVED_ENV_PREFIX = "TERRA_"


class ClusterConfigError(ValueError):
    """clusters.yaml is malformed; the message names the key."""


def cache_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "terra-lab"


def _expand(value: str, workspace: Path, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "workspace":
            return str(workspace)
        if name == "cache":
            return str(cache_root())
        if name == "services":
            return str(cache_root() / "services")
        if name.startswith("env:"):
            variable = name[len("env:") :]
            if variable not in os.environ:
                raise ClusterConfigError(f"{where}: ${{{name}}} but {variable} is not set")
            return os.environ[variable]
        raise ClusterConfigError(
            f"{where}: unknown variable ${{{name}}}; use workspace, cache, services or env:NAME"
        )

    return re.sub(r"\$\{([^}]+)\}", replace, value)


def _check_env_variable(variable: str, secrets: tuple[str, ...], where: str) -> None:
    """A cluster `env` name must be a plain variable the launcher does not set itself."""
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", variable):
        raise ClusterConfigError(f"{where}: {variable!r} is not a variable name")
    if variable.startswith(RESERVED_ENV_PREFIX):
        raise ClusterConfigError(
            f"{where}: {variable} is set by the launcher ({RESERVED_ENV_PREFIX}* names the job's "
            "image, commit, cluster and roots); choose another name"
        )
    if variable in secrets:
        raise ClusterConfigError(
            f"{where}: {variable} is also a secret; a secret's value must not be in this tracked "
            "file, so keep it only under secrets"
        )


def _env_mapping(document: Any, where: str) -> tuple[tuple[str, str], ...]:
    """`env:` as (name, value) pairs; values are scalars (strings, numbers), never lists,
    mappings, booleans (YAML's yes/no/on/off would silently become True/False) or null."""
    if document is None:
        return ()
    if not isinstance(document, dict):
        raise ClusterConfigError(
            f"{where} must be a mapping of variable names to values, got {type(document).__name__}"
        )
    pairs = []
    for variable, value in document.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ClusterConfigError(
                f"{where}.{variable} must be a string or a number, got {value!r}; quote it "
                '(e.g. "1" or "off")'
            )
        pairs.append((str(variable), str(value)))
    return tuple(pairs)


def _take(document: dict[str, Any], allowed: dict[str, Any], where: str) -> dict[str, Any]:
    """`document` restricted to `allowed` keys (with their defaults); unknown keys fail."""
    if not isinstance(document, dict):
        raise ClusterConfigError(f"{where} must be a mapping, got {type(document).__name__}")
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise ClusterConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return {key: document.get(key, default) for key, default in allowed.items()}


@dataclasses.dataclass(frozen=True)
class RegistryConfig:
    """Where images are pushed and pulled.

    Attributes:
        name: key in `registries`.
        url: base URL, http:// or https://.
        embedded: True for the launcher/services registry on loopback, started on demand.
    """

    name: str
    url: str
    embedded: bool = False

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/]+$", self.url):
            raise ClusterConfigError(
                f"registries.{self.name}.url must be http(s)://host[:port], got {self.url!r}"
            )

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    """The `image:` section: labels and base recipe shared by every cluster."""

    source: str
    repository: str
    suite: str = "bookworm"
    mirror: str | None = None

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z0-9]+([._/-][a-z0-9]+)*$", self.repository):
            raise ClusterConfigError(
                f"image.repository must be a lowercase registry path, got {self.repository!r}"
            )

    def base_recipe(self) -> base_layer.BaseRecipe:
        mirror = self.mirror or base_layer.configured_debian_mirror(self.suite)
        return base_layer.BaseRecipe(mirror=mirror, suite=self.suite)


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """One entry of `clusters:` (see clusters.yaml for the meaning of each key)."""

    name: str
    backend: str
    registry: RegistryConfig
    image_flavor: str
    runtime: str
    run_root: Path
    data_root: Path
    image_cache: Path
    job_cache: Path | None = None
    secrets: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    slurm_conf: Path | None = None
    partitions: tuple[str, ...] = ()
    gpus_per_node: int = 0
    priorities: tuple[tuple[str, tuple[str, ...]], ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        where = f"clusters.{self.name}"
        if self.backend not in BACKENDS:
            raise ClusterConfigError(
                f"{where}.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if self.runtime not in RUNTIMES:
            raise ClusterConfigError(
                f"{where}.runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}"
            )
        if self.image_flavor not in deps_layer.FLAVOR_LOCKS:
            raise ClusterConfigError(
                f"{where}.image_flavor must be one of {', '.join(deps_layer.FLAVOR_LOCKS)}, "
                f"got {self.image_flavor!r}"
            )
        for service in self.services:
            if service not in SERVICES:
                raise ClusterConfigError(
                    f"{where}.services may list {', '.join(SERVICES)}, got {service!r}"
                )
        if self.gpus_per_node < 0:
            raise ClusterConfigError(f"{where}.gpus_per_node must be >= 0")
        for secret in self.secrets:
            if not re.match(r"^[A-Z_][A-Z0-9_]*$", secret):
                raise ClusterConfigError(f"{where}.secrets: {secret!r} is not a variable name")
        for variable, _ in self.env:
            _check_env_variable(variable, self.secrets, f"{where}.env")

    def priority_args(self, priority: str | None) -> list[str]:
        """Scheduler arguments for `priority`; clusters without levels (local) take any."""
        table = dict(self.priorities)
        if not table:
            return []
        if priority is None:
            return list(table.get("normal", ()))
        if priority not in table:
            raise ClusterConfigError(
                f"launch.priority must be one of {', '.join(table) or '(none configured)'} "
                f"on cluster {self.name}, got {priority!r}"
            )
        return list(table[priority])


@dataclasses.dataclass(frozen=True)
class Settings:
    image: ImageSettings
    registries: dict[str, RegistryConfig]
    clusters: dict[str, ClusterConfig]

    def cluster(self, name: str) -> ClusterConfig:
        if name not in self.clusters:
            raise ClusterConfigError(
                f"unknown cluster {name!r}; {CLUSTERS_FILE} defines: {', '.join(self.clusters)}"
            )
        return self.clusters[name]


def parse(document: dict[str, Any], workspace: Path) -> Settings:
    """Settings from the parsed YAML document, with ${...} paths expanded."""
    top = _take(document, {"image": None, "registries": None, "clusters": None}, "clusters.yaml")
    image_doc = _take(
        top["image"] or {}, {"source": "", "repository": "terra-lab", "base": {}}, "image"
    )
    base_doc = _take(image_doc["base"] or {}, {"suite": "bookworm", "mirror": None}, "image.base")
    image = ImageSettings(
        source=image_doc["source"],
        repository=image_doc["repository"],
        suite=base_doc["suite"],
        mirror=base_doc["mirror"],
    )
    registries = {}
    for name, entry in (top["registries"] or {}).items():
        fields = _take(entry, {"url": None, "embedded": False}, f"registries.{name}")
        if not fields["url"]:
            raise ClusterConfigError(f"registries.{name}.url is required")
        registries[name] = RegistryConfig(name, fields["url"], bool(fields["embedded"]))
    clusters = {}
    defaults = {
        "backend": None,
        "registry": None,
        "image_flavor": "cpu",
        "runtime": "auto",
        "run_root": "${workspace}/runs",
        "data_root": "${workspace}/data",
        "image_cache": "${cache}/image-runtime",
        "job_cache": "${cache}/job-cache",
        "secrets": [],
        "services": [],
        "slurm_conf": None,
        "partitions": [],
        "gpus_per_node": 0,
        "priorities": {},
        "env": {},
    }
    for name, entry in (top["clusters"] or {}).items():
        where = f"clusters.{name}"
        fields = _take(entry, defaults, where)
        if fields["registry"] not in registries:
            raise ClusterConfigError(
                f"{where}.registry must name an entry of registries ({', '.join(registries)}), "
                f"got {fields['registry']!r}"
            )

        def path(key: str, fields: dict[str, Any] = fields, where: str = where) -> Path:
            return Path(_expand(str(fields[key]), workspace, f"{where}.{key}"))

        clusters[name] = ClusterConfig(
            name=name,
            backend=fields["backend"],
            registry=registries[fields["registry"]],
            image_flavor=fields["image_flavor"],
            runtime=fields["runtime"],
            run_root=path("run_root"),
            data_root=path("data_root"),
            image_cache=path("image_cache"),
            job_cache=path("job_cache") if fields["job_cache"] else None,
            secrets=tuple(fields["secrets"]),
            services=tuple(fields["services"]),
            slurm_conf=path("slurm_conf") if fields["slurm_conf"] else None,
            partitions=tuple(fields["partitions"]),
            gpus_per_node=int(fields["gpus_per_node"]),
            priorities=tuple(
                (level, tuple(str(arg) for arg in args))
                for level, args in (fields["priorities"] or {}).items()
            ),
            env=_env_mapping(fields["env"], f"{where}.env"),
        )
    return Settings(image=image, registries=registries, clusters=clusters)


def load(workspace: Path, path: Path | None = None) -> Settings:
    """Read `path` (default: the workspace's launcher/clusters.yaml)."""
    path = path or Path(workspace) / CLUSTERS_FILE
    try:
        document = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise ClusterConfigError(f"{path} is not valid YAML: {error}") from error
    return parse(document or {}, Path(workspace).resolve())
