"""`experiment(name, ...)`: one pretraining experiment, its tests and its launch gate.

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
    :<name>_launch_tests  test_suite the launcher runs before a launch
                          (`bazel test //experiments:<name>_launch_tests`): the test above,
                          this package's lint, the framework's tests and the tests of every
                          model package the experiment builds on
"""

load("//experiments:model_tests.bzl", "CORE_MODEL_PACKAGES", "MODEL_PACKAGE_TESTS")
load("//tools/build_rules:python.bzl", "py_binary", "py_library", "py_test")

FRAMEWORK_TESTS = [
    "//experiments/framework:cli_test",
    "//experiments/framework:clusters_test",
    "//experiments/framework:data_test",
    "//experiments/framework:diff_test",
    "//experiments/framework:experiment_config_test",
    "//experiments/framework:hygiene_test",
    "//experiments/framework:inspection_test",
    "//experiments/framework:launching_test",
    "//experiments/framework:lint",
    "//experiments/framework:naming_test",
    "//experiments/framework:overrides_test",
    "//experiments/framework:training_test",
]

def experiment(
        name,
        deps = [],
        model_packages = CORE_MODEL_PACKAGES,
        extra_tests = [],
        test_size = "medium"):
    """An experiment binary with its config test and launch test suite (module docstring).

    Args:
      name: the experiment; its file is <name>.py and its run names must contain it.
      deps: what <name>.py imports (":script", ":base_lib", model libraries, ...).
      model_packages: model packages whose tests gate a launch (default: all the recipe
        uses); a variant in a new package adds it here.
      extra_tests: more test labels for the launch gate.
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
    tests = [":" + name + "_test", ":lint", ":model_tests_test"] + FRAMEWORK_TESTS
    for package in model_packages:
        tests += MODEL_PACKAGE_TESTS[package]
    native.test_suite(
        name = name + "_launch_tests",
        tests = tests + extra_tests,
    )
