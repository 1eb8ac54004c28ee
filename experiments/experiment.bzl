"""`experiment(name, ...)`: one pretraining experiment, its library and its config test.

    experiment(
        name = "base_encoder_per_mod_proj",
        deps = [":base_lib", "//models/encoder:per_modality_projection"],
    )

declares
    :<name>_lib           py_library of <name>.py (other experiments may derive from it)
    :<name>               py_binary, tagged "experiment":
                          `bazel run //experiments:<name> -- dry_run my_run local`
    :<name>_test          its config test (experiment_test.py with TERRA_EXPERIMENT=<name>):
                          the config builds and round-trips, dry_run exits 0 with a diff
                          inside CHANGES, one tiny forward/backward step trains on CPU, a
                          1-step run leaves a run folder whose config.yaml rebuilds it, the
                          variant differs from base only in CHANGES, and its file is small

No list of launch tests is kept here: at launch the gate (launcher/gate/gate.py) reads them
from the build graph: the tests of every package in `deps(//experiments:<name>)` other than
this one (whose other tests vouch for sibling experiments), plus :<name>_test and :lint.
A new test in any of those packages gates the next launch with no edit here. To see them,
or run them as a launch would:
    bazel run //launcher/gate:launch_tests -- [--list] //experiments:<name>
"""

load("//tools/build_rules:python.bzl", "py_binary", "py_library", "py_test")

def experiment(
        name,
        deps = [],
        test_size = "medium"):
    """An experiment binary with its library and config test (module docstring).

    Args:
      name: the experiment; its file is <name>.py and its run names must contain it.
      deps: what <name>.py imports (":script", ":base_lib", model libraries, ...).
      test_size: Bazel size of the config test.
    """
    lib = name + "_lib"
    py_library(
        name = lib,
        srcs = [name + ".py"],
        deps = deps + ["//experiments/framework"],
    )
    py_binary(
        name = name,
        srcs = [name + ".py"],
        main = name + ".py",
        # How //tools/affected_experiments tells experiments from other binaries here.
        tags = ["experiment"],
        deps = [":" + lib],
    )
    test_deps = [
        ":" + lib,
        "//experiments/framework",
        "@pypi//:torch",
    ]
    if name != "base":
        test_deps.append(":base_lib")
    py_test(
        name = name + "_test",
        srcs = ["experiment_test.py"],
        env = {"TERRA_EXPERIMENT": name},
        size = test_size,
        deps = test_deps,
    )
