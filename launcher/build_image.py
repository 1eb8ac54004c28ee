"""Build the image of a commit into the local OCI layout: `bazel run //launcher:build_image`.

    ./tools/bazel run //launcher:build_image -- [--revision REV] [--flavor cpu|cuda]

Prints `<tag> <manifest digest>`; `//launcher:push_image` builds and pushes in one go.
A failure is one line on stderr naming the problem and the fix (exit 2: bad input, 1: a
failed operation); TERRA_LAB_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import sys

from launcher.image import build, deps_layer


def _main(argv: list[str] | None) -> int:
    parser = build.CommandLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revision", default="HEAD")
    parser.add_argument(
        "--flavor",
        default=None,
        help=f"{' or '.join(sorted(deps_layer.FLAVOR_LOCKS))} "
        f"(default: ${deps_layer.FLAVOR_ENV} or cpu)",
    )
    args = parser.parse_args(argv)
    flavor = build.command_flavor(args.flavor)
    workspace = build.command_workspace()
    commit = build.command_commit(workspace, args.revision)
    settings = build.command_settings(workspace)
    image = build.build_image(
        workspace,
        revision=commit,
        flavor=flavor,
        source_url=settings.image.source,
        base_recipe=settings.image.base_recipe(),
    )
    print(f"{image.tag} {image.manifest_digest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return build.run_command("build_image", lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
