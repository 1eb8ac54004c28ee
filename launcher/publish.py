"""publish_image(): start the registry if it is ours, check it answers, build, push.

The one sequence behind `//launcher:push_image` and `launch`. The registry is asked before
the build, so a registry that is down or refuses costs no build (minutes on a cold cache).
"""

from __future__ import annotations

from pathlib import Path

from launcher import clusters
from launcher.image import build
from launcher.registry import client as registry_client
from launcher.services import services

# A registry that does not answer is reported after these tries (about 1.5 s).
PROBE_RETRY = registry_client.RetryPolicy(attempts=3, initial_backoff_s=0.5)


class RegistryUnavailable(RuntimeError):
    """The registry did not answer or refused the probe; nothing was built or pushed."""

    def __init__(self, url: str, cause: registry_client.RegistryError) -> None:
        super().__init__(str(cause))
        self.url = url
        self.cause = cause


def build_commit(
    workspace: Path, commit: str, flavor: str, settings: clusters.Settings
) -> build.BuiltImage:
    """The image of `commit` as clusters.yaml's `image:` section describes it (cached layers)."""
    return build.build_image(
        workspace,
        revision=commit,
        flavor=flavor,
        source_url=settings.image.source,
        base_recipe=settings.image.base_recipe(),
    )


def publish_image(
    workspace: Path,
    commit: str,
    flavor: str,
    settings: clusters.Settings,
    registry: clusters.RegistryConfig,
    repository: str | None = None,
) -> tuple[build.BuiltImage, registry_client.PushResult]:
    """Build the image of `commit` and push it to `registry`; the image and what the push did.

    Raises:
        RegistryUnavailable: the registry did not answer the probe (nothing built).
        registry_client.RegistryError: the push failed (nothing tagged: the manifest is
            pushed by digest and verified before the tag).
        RuntimeError, OSError: the build failed.
    """
    repository = repository or settings.image.repository
    if registry.embedded:  # ours, on loopback: started on demand (idempotent)
        services.registry(address=registry.host).start()
    try:
        registry_client.RegistryClient(
            registry.url, repository, retry=PROBE_RETRY, log=lambda _: None
        ).ping()
    except registry_client.RegistryError as error:
        raise RegistryUnavailable(registry.url, error) from error
    image = build_commit(workspace, commit, flavor, settings)
    client = registry_client.RegistryClient(registry.url, repository)
    return image, registry_client.push_image(client, image, image.tag)
