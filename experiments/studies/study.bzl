"""`study(name, experiments)`: one ablation study's binary and its declaration test.

    study(
        name = "per_modality_projection",
        experiments = ["base", "base_encoder_per_mod_proj", ...],
    )

declares
    :<name>_lib    py_library of <name>.py
    :<name>        py_binary, tagged "study":
                   `bazel run //experiments/studies:<name> -- dry_run|launch|status|compare|reproduce <cluster>`
    :<name>_test   its declaration test (study_test.py with TERRA_STUDY=<name>): the study
                   loads, names exactly these experiments, and its dry run on every cluster
                   resolves every run with identical hyperparameters outside each variant's CHANGES

`compare` runs tools/compare's study report as a command (tools sit above experiments in the
layer order, so the study imports none of it): //tools/compare:compare is in its runfiles.
"""

load("//tools/build_rules:python.bzl", "py_binary", "py_library", "py_test")

def study(name, experiments, test_size = "medium"):
    """A study binary and its test (module docstring).

    Args:
      name: the study; its file is <name>.py.
      experiments: the baseline and variants it imports (names of //experiments targets).
      test_size: Bazel size of the declaration test.
    """
    deps = [
        "//experiments/framework:study_cli",
        "//launcher:settings",
    ] + ["//experiments:%s_lib" % experiment for experiment in experiments]
    py_library(
        name = name + "_lib",
        srcs = [name + ".py"],
        deps = deps,
    )
    py_binary(
        name = name,
        srcs = [name + ".py"],
        main = name + ".py",
        data = ["//tools/compare:compare"],
        tags = ["study"],
        deps = deps,
    )
    py_test(
        name = name + "_test",
        srcs = ["study_test.py"],
        env = {
            "TERRA_STUDY": name,
            "TERRA_STUDY_EXPERIMENTS": ",".join(experiments),
        },
        size = test_size,
        deps = [":" + name + "_lib", "@pypi//:torch"],
    )
