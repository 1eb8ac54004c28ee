"""Build the image of HEAD and push it: `./tools/bazel run //launcher:push_image`.

    ./tools/bazel run //launcher:push_image -- [--registry=NAME_OR_URL] [--experiment=NAME]
        [--flavor=cpu|cuda] [--revision=REV] [--repository=PATH]

The default registry is `embedded` from launcher/clusters.yaml: docker-registry on
127.0.0.1:5000 with its data in the user's cache, started on demand. `--registry` takes a
name from clusters.yaml or any http(s):// URL. Only blobs the registry lacks are uploaded
(HEAD first); transient failures are retried with backoff; the manifest is pushed by
digest, read back, and only then tagged with the commit sha. The last line printed is the
immutable reference `host/repository@sha256:...`.

The image holds the commit's tracked files only (never uncommitted edits), so the working
tree may be dirty here; `launch` is what insists on a clean, pushed commit. `--experiment`
checks that experiments/<name>.py is in the commit and prints how to run it.

A failure is one line on stderr naming the problem and the fix (exit 2: bad input, 1: a
failed operation); TERRA_LAB_DEBUG=1 shows the traceback instead. The registry is asked
before the build, so a registry that is down or refuses costs no build.
"""

from __future__ import annotations

import re
import subprocess
import sys
import types

from absl import flags

from launcher import clusters, inputs, publish
from launcher.cli import command
from launcher.image import deps_layer
from launcher.image.app_layer import git
from launcher.registry import client as registry_client

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "registry", "embedded", "A registry of launcher/clusters.yaml, or an http(s):// URL.",
    flag_values=FLAGS,
)  # fmt: skip
flags.DEFINE_string(
    "repository", None, "Repository path in the registry (default: image.repository).",
    flag_values=FLAGS,
)  # fmt: skip
flags.DEFINE_string(
    "experiment", None, "Check experiments/NAME.py is in the commit; print how to run it.",
    flag_values=FLAGS,
)  # fmt: skip
flags.DEFINE_string(
    "flavor", None,
    f"{' or '.join(sorted(deps_layer.FLAVOR_LOCKS))} (default: ${deps_layer.FLAVOR_ENV} or cpu).",
    flag_values=FLAGS,
)  # fmt: skip
flags.DEFINE_string(
    "revision", "HEAD", "The commit to push (sha, branch or tag).", flag_values=FLAGS
)


def registry_problem(url: str, error: registry_client.RegistryError, doing: str) -> inputs.Failed:
    """One line for a registry that does not answer or refuses `doing`, with the fix."""
    message = command.one_line(error)
    status = re.search(r"HTTP (\d{3})", message)
    if "still failing after" in message:  # the client's retries ran out: down or overloaded
        return inputs.Failed(
            f"the registry at {url} does not answer ({message}); start it (`./tools/bazel run "
            "//tools/services -- start registry` for the embedded one) or pass --registry"
        )
    if status and status.group(1) in ("401", "403"):
        return inputs.Failed(
            f"the registry at {url} refused {doing} ({message}); set TERRA_LAB_REGISTRY_USER "
            "and TERRA_LAB_REGISTRY_PASSWORD to an account that may push there"
        )
    return inputs.Failed(
        f"the registry at {url} refused {doing} ({message}); check --registry and --repository"
    )


def run(args: types.SimpleNamespace) -> int:
    flavor = inputs.flavor(args.flavor)
    workspace = inputs.checkout()
    settings = inputs.settings(workspace)
    if args.registry in settings.registries:
        registry = settings.registries[args.registry]
    elif args.registry.startswith(("http://", "https://")):
        registry = clusters.RegistryConfig("command-line", args.registry)
    else:
        raise inputs.BadInput(
            f"--registry {args.registry!r} is neither a registry of {clusters.CLUSTERS_FILE} "
            f"({', '.join(settings.registries)}) nor an http(s):// URL; pass one of those"
        )
    commit = inputs.commit(workspace, args.revision)
    if args.experiment:
        listed = subprocess.run(
            ["git", "-C", str(workspace), "cat-file", "-e",
             f"{commit}:experiments/{args.experiment}.py"],
            capture_output=True,
        )  # fmt: skip
        if listed.returncode != 0:
            raise inputs.BadInput(
                f"experiments/{args.experiment}.py is not in commit {commit[:12]}; check the "
                "name (ls experiments/) or commit the file"
            )
    if git(workspace, "status", "--porcelain", "--untracked-files=no").strip():
        print(
            "[push] note: uncommitted changes are not in the image (it holds commit "
            f"{commit[:12]})",
            file=sys.stderr,
        )
    try:
        _, result = publish.publish_image(
            workspace, commit, flavor, settings, registry, repository=args.repository
        )
    except publish.RegistryUnavailable as error:
        raise registry_problem(registry.url, error.cause, "us") from error
    except registry_client.RegistryError as error:
        raise registry_problem(registry.url, error, "the push") from error
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


COMMAND = command.Command(
    "push_image", FLAGS, run, bad_input=(inputs.BadInput,), failures=inputs.SAY_WHAT_TO_DO
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.run_app()
