"""Offline stand-ins for the rule repositories Bazel 4 would otherwise download.

Debian's `bazel-bootstrap` (4.2.3) ships forwarding copies of rules_cc, rules_java and
platforms in `bazel-bootstrap-source`, and bazel_skylib in `bazel-skylib`. A plain
`local_repository` would hard-code their paths; this rule finds them and, when a package is
missing, fails with the apt command that fixes it.
"""

def _debian_bazel_repository_impl(rctx):
    for candidate in rctx.attr.candidates:
        source = rctx.path(candidate)
        if source.exists:
            for child in source.readdir():
                rctx.symlink(child, child.basename)
            return
    fail(("@%s: none of %s exists. Install it with `apt-get install -y %s` " +
          "(./tools/bazel installs it on Debian).") %
         (rctx.name, rctx.attr.candidates, rctx.attr.debian_package))

debian_bazel_repository = repository_rule(
    implementation = _debian_bazel_repository_impl,
    attrs = {
        "candidates": attr.string_list(mandatory = True),
        "debian_package": attr.string(mandatory = True),
    },
    doc = "Symlinks a rule repository shipped by a Debian package into a Bazel repository.",
)
