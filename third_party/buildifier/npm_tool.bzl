"""npm_buildifier: buildifier from the npm registry, pinned by package-lock.json integrity.

rules_python/rules_go users get buildifier from `buildifier_prebuilt`; that downloads from
GitHub, which this workplace cannot reach. npm's @bazel/buildifier ships the same binaries.
"""

def _npm_buildifier_impl(rctx):
    rctx.symlink(rctx.attr.package_json, "package.json")
    rctx.symlink(rctx.attr.package_lock, "package-lock.json")
    npm = rctx.which("npm")
    if not npm:
        fail("@buildifier needs npm: `apt-get install -y npm` (./tools/bazel installs it on Debian).")
    rctx.report_progress("npm ci @bazel/buildifier")
    result = rctx.execute([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], timeout = 600)
    if result.return_code != 0:
        fail("npm ci for buildifier failed:\n" + result.stderr)
    arch = rctx.execute(["uname", "-m"]).stdout.strip()
    suffix = {"amd64": "linux_amd64", "x86_64": "linux_amd64", "aarch64": "linux_arm64"}.get(arch)
    if not suffix:
        fail("no buildifier binary for architecture " + arch)
    rctx.symlink("node_modules/@bazel/buildifier/buildifier-" + suffix, "buildifier")
    rctx.file("BUILD.bazel", 'exports_files(["buildifier"], visibility = ["//visibility:public"])\n')

npm_buildifier = repository_rule(
    implementation = _npm_buildifier_impl,
    attrs = {
        "package_json": attr.label(mandatory = True, allow_single_file = True),
        "package_lock": attr.label(mandatory = True, allow_single_file = True),
    },
)
