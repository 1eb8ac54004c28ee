"""Build the image of a commit into the local OCI layout: `bazel run //launcher:build_image`.

    ./tools/bazel run //launcher:build_image -- [--revision=REV] [--flavor=cpu|cuda]

Prints `<tag> <manifest digest>`; `//launcher:push_image` builds and pushes in one go.
A failure is one line on stderr naming the problem and the fix (exit 2: bad input, 1: a
failed operation); TERRA_LAB_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import types

from absl import flags

from launcher import inputs, publish
from launcher.cli import command
from launcher.image import deps_layer

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "revision", "HEAD", "The commit to build (sha, branch or tag).", flag_values=FLAGS
)
flags.DEFINE_string(
    "flavor",
    None,
    f"{' or '.join(sorted(deps_layer.FLAVOR_LOCKS))} (default: ${deps_layer.FLAVOR_ENV} or cpu).",
    flag_values=FLAGS,
)


def run(args: types.SimpleNamespace) -> int:
    flavor = inputs.flavor(args.flavor)
    workspace = inputs.checkout()
    commit = inputs.commit(workspace, args.revision)
    settings = inputs.settings(workspace)
    image = publish.build_commit(workspace, commit, flavor, settings)
    print(f"{image.tag} {image.manifest_digest}")
    return 0


COMMAND = command.Command(
    "build_image", FLAGS, run, bad_input=(inputs.BadInput,), failures=inputs.SAY_WHAT_TO_DO
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.run_app()
