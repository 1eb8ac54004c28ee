"""Build the image of HEAD and push it: `./tools/bazel run //launcher:push_image`.

    ./tools/bazel run //launcher:push_image -- [--registry NAME_OR_URL] [--experiment NAME]
        [--flavor cpu|cuda] [--revision REV] [--repository PATH]

The default registry is `embedded` from launcher/clusters.yaml: docker-registry on
127.0.0.1:5000 with its data in the user's cache, started on demand. `--registry` takes a
name from clusters.yaml or any http(s):// URL. Only blobs the registry lacks are uploaded
(HEAD first); transient failures are retried with backoff; the manifest is pushed by
digest, read back, and only then tagged with the commit sha. The last line printed is the
immutable reference `host/repository@sha256:...`.

The image holds the commit's tracked files only (never uncommitted edits), so the working
tree may be dirty here; `launch` is what insists on a clean, pushed commit. `--experiment`
checks that experiments/<name>.py is in the commit and prints how to run it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from launcher import clusters
from launcher.image import build, deps_layer
from launcher.image.app_layer import git
from launcher.registry import client as registry_client
from tools.services import services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registry", default="embedded", help="clusters.yaml name or URL")
    parser.add_argument("--repository", default=None, help="default: image.repository")
    parser.add_argument("--experiment", default=None)
    parser.add_argument(
        "--flavor",
        default=os.environ.get(deps_layer.FLAVOR_ENV, "cpu"),
        choices=sorted(deps_layer.FLAVOR_LOCKS),
        help=f"dependency flavor (default: ${deps_layer.FLAVOR_ENV} or cpu)",
    )
    parser.add_argument("--revision", default="HEAD")
    args = parser.parse_args(argv)

    workspace = clusters.workspace_root()
    settings = clusters.load(workspace)
    if args.registry in settings.registries:
        registry = settings.registries[args.registry]
    elif args.registry.startswith(("http://", "https://")):
        registry = clusters.RegistryConfig("command-line", args.registry)
    else:
        print(
            f"push_image: --registry {args.registry!r} is neither a registry of clusters.yaml "
            f"({', '.join(settings.registries)}) nor an http(s):// URL",
            file=sys.stderr,
        )
        return 2
    commit = git(workspace, "rev-parse", "--verify", f"{args.revision}^{{commit}}").strip()
    if args.experiment:
        listed = subprocess.run(
            [
                "git",
                "-C",
                str(workspace),
                "cat-file",
                "-e",
                f"{commit}:experiments/{args.experiment}.py",
            ],
            capture_output=True,
        )
        if listed.returncode != 0:
            print(
                f"push_image: experiments/{args.experiment}.py is not in commit {commit[:12]}",
                file=sys.stderr,
            )
            return 2
    if git(workspace, "status", "--porcelain", "--untracked-files=no").strip():
        print(
            "[push] note: uncommitted changes are not in the image (it holds commit "
            f"{commit[:12]})",
            file=sys.stderr,
        )
    if registry.embedded:
        services.Registry(services.default_state_root() / "registry", registry.host).start()

    image = build.build_image(
        workspace,
        revision=commit,
        flavor=args.flavor,
        source_url=settings.image.source,
        base_recipe=settings.image.base_recipe(),
    )
    client = registry_client.RegistryClient(
        registry.url, args.repository or settings.image.repository
    )
    result = registry_client.push_image(client, image, image.tag)
    print(
        f"[push] done in {result.seconds:.1f} s: {result.bytes_uploaded:,} bytes uploaded "
        f"({result.blobs_uploaded} blobs), {result.blobs_skipped} blobs already present; "
        f"tag {result.tag}",
        file=sys.stderr,
    )
    if args.experiment:
        print(
            f"[push] run it: docker run --rm {result.reference} {args.experiment} "
            f"{args.experiment}_try local",
            file=sys.stderr,
        )
    print(result.reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
