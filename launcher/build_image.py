"""Build the image of a commit into the local OCI layout: `bazel run //launcher:build_image`.

    ./tools/bazel run //launcher:build_image -- [--revision REV] [--flavor cpu|cuda]

Prints `<tag> <manifest digest>`; `//launcher:push_image` builds and pushes in one go.
"""

from __future__ import annotations

import argparse
import os
import sys

from launcher import clusters
from launcher.image import build, deps_layer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revision", default="HEAD")
    parser.add_argument(
        "--flavor",
        default=os.environ.get(deps_layer.FLAVOR_ENV, "cpu"),
        choices=sorted(deps_layer.FLAVOR_LOCKS),
    )
    args = parser.parse_args(argv)
    workspace = clusters.workspace_root()
    settings = clusters.load(workspace)
    image = build.build_image(
        workspace,
        revision=args.revision,
        flavor=args.flavor,
        source_url=settings.image.source,
        base_recipe=settings.image.base_recipe(),
    )
    print(f"{image.tag} {image.manifest_digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
