"""A throwaway git repository with a small copy of terra-lab's layout, for end-to-end tests.

The layout keeps what decides affected targets and drops what makes Bazel slow: native
py_* rules only (no @pypi, so no venv and no network), the Debian stand-ins for the rule
repositories Bazel 4 would download (third_party/bazel/debian_repos.bzl, as in our WORKSPACE).

    experiments/          3 experiments (experiment() macro, tagged "experiment"):
                          base (encoder + predictor), encoder_only (encoder),
                          predictor_heads (predictor heads + configs/*.yaml);
                          list_experiments (an untagged py_binary), experiments_test,
                          manual_smoke_test (tagged manual), and launch_tests, a
                          test_suite of all three tests
    experiments/configs/  filegroup over glob(["*.yaml"])
    models/encoder/       attention <- encoder <- encoder_test
    models/predictor/     predictor <- heads <- predictor_test
    tools/build_rules/    experiment.bzl (loads tags.bzl), repositories.bzl (WORKSPACE loads it)
    tools/scratch/        a package nothing depends on
    third_party/python/requirements.lock, README.md, docs/
"""

import os
import shutil
import subprocess

# Its targets, by role.
EXPERIMENTS = frozenset(
    {"//experiments:base", "//experiments:encoder_only", "//experiments:predictor_heads"}
)
TESTS = frozenset(
    {
        "//experiments:experiments_test",
        "//models/encoder:encoder_test",
        "//models/predictor:predictor_test",
    }
)
# Never reported: an untagged binary and a manual test.
NEVER = frozenset({"//experiments:list_experiments", "//experiments:manual_smoke_test"})

_WORKSPACE = """\
workspace(name = "mini")

load("//third_party/bazel:debian_repos.bzl", "debian_bazel_repository")

debian_bazel_repository(
    name = "rules_cc",
    candidates = ["/usr/src/bazel-bootstrap/mock_repos/rules_cc"],
    debian_package = "bazel-bootstrap-source",
)

debian_bazel_repository(
    name = "rules_java",
    candidates = ["/usr/src/bazel-bootstrap/mock_repos/rules_java"],
    debian_package = "bazel-bootstrap-source",
)

debian_bazel_repository(
    name = "platforms",
    candidates = [
        "/usr/share/bazel/tools/platforms",
        "/usr/src/bazel-bootstrap/mock_repos/platforms",
    ],
    debian_package = "bazel-bootstrap-source",
)

local_repository(
    name = "remote_coverage_tools",
    path = "third_party/bazel/remote_coverage_tools",
)

load("//tools/build_rules:repositories.bzl", "mini_repositories")

mini_repositories()
"""

_FILES = {
    ".bazelignore": "third_party/bazel/remote_coverage_tools\n",
    ".bazelrc": "build --incompatible_default_to_explicit_init_py\n",
    ".gitignore": "/bazel-*\n",
    "README.md": "# mini\n",
    "docs/notes.md": "Notes.\n",
    "docs/draft.yaml": "lr: 0.1\n",
    "third_party/python/requirements.lock": "numpy==2.1.0 --hash=sha256:00\n",
    "third_party/bazel/BUILD": 'exports_files(["debian_repos.bzl"])\n',
    # Test rules name these implicitly; upstream they are downloaded.
    "third_party/bazel/remote_coverage_tools/WORKSPACE": (
        'workspace(name = "remote_coverage_tools")\n'
    ),
    "third_party/bazel/remote_coverage_tools/BUILD": (
        'package(default_visibility = ["//visibility:public"])\n'
        'sh_binary(name = "coverage_report_generator", srcs = ["fail.sh"])\n'
        'sh_binary(name = "lcov_merger", srcs = ["fail.sh"])\n'
    ),
    "third_party/bazel/remote_coverage_tools/fail.sh": "exit 1\n",
    "tools/build_rules/BUILD": "",
    # Loaded by WORKSPACE only: no BUILD file loads it.
    "tools/build_rules/repositories.bzl": "def mini_repositories():\n    pass\n",
    "tools/build_rules/tags.bzl": 'EXPERIMENT_TAGS = ["experiment"]\n',
    "tools/build_rules/experiment.bzl": (
        'load(":tags.bzl", "EXPERIMENT_TAGS")\n\n'
        "def experiment(name, deps = [], data = []):\n"
        "    native.py_binary(\n"
        '        name = name,\n        srcs = [name + ".py"],\n'
        "        deps = deps,\n        data = data,\n        tags = EXPERIMENT_TAGS,\n"
        "    )\n"
    ),
    "tools/scratch/BUILD": 'py_binary(name = "scratch", srcs = ["scratch.py"])\n',
    "tools/scratch/scratch.py": "print('scratch')\n",
    "models/README.md": "Models.\n",
    "models/encoder/BUILD": (
        'package(default_visibility = ["//visibility:public"])\n\n'
        'py_library(name = "attention", srcs = ["attention.py"])\n\n'
        'py_library(name = "encoder", srcs = ["encoder.py"], deps = [":attention"])\n\n'
        'py_test(name = "encoder_test", srcs = ["encoder_test.py"], deps = [":encoder"])\n'
    ),
    "models/encoder/attention.py": "HEADS = 2\n",
    "models/encoder/encoder.py": "from models.encoder.attention import HEADS\n",
    "models/encoder/encoder_test.py": "import models.encoder.encoder\n",
    "models/encoder/NOTES.md": "Not a target.\n",
    "models/predictor/BUILD": (
        'package(default_visibility = ["//visibility:public"])\n\n'
        'py_library(name = "predictor", srcs = ["predictor.py"])\n\n'
        'py_library(name = "heads", srcs = ["heads.py"], deps = [":predictor"])\n\n'
        'py_test(name = "predictor_test", srcs = ["predictor_test.py"], deps = [":heads"])\n'
    ),
    "models/predictor/predictor.py": "DEPTH = 2\n",
    "models/predictor/heads.py": "from models.predictor.predictor import DEPTH\n",
    "models/predictor/predictor_test.py": "import models.predictor.heads\n",
    "experiments/BUILD": (
        'load("//tools/build_rules:experiment.bzl", "experiment")\n\n'
        'py_library(name = "common", srcs = ["common.py"], deps = ["//models/encoder"])\n\n'
        'experiment(name = "base", deps = [":common", "//models/predictor"])\n\n'
        'experiment(name = "encoder_only", deps = [":common"])\n\n'
        "experiment(\n"
        '    name = "predictor_heads",\n'
        '    data = ["//experiments/configs"],\n'
        '    deps = ["//models/predictor:heads"],\n'
        ")\n\n"
        'py_binary(name = "list_experiments", srcs = ["list_experiments.py"])\n\n'
        "# A test_suite: reporting it must not report every test it holds.\n"
        "test_suite(\n"
        '    name = "launch_tests",\n'
        "    tests = [\n"
        '        ":experiments_test",\n'
        '        "//models/encoder:encoder_test",\n'
        '        "//models/predictor:predictor_test",\n'
        "    ],\n"
        ")\n\n"
        "py_test(\n"
        '    name = "experiments_test",\n'
        '    srcs = ["experiments_test.py"],\n'
        '    deps = [":base", ":encoder_only", ":predictor_heads"],\n'
        ")\n\n"
        "py_test(\n"
        '    name = "manual_smoke_test",\n'
        '    srcs = ["manual_smoke_test.py"],\n'
        '    tags = ["manual"],\n'
        '    deps = [":base"],\n'
        ")\n"
    ),
    "experiments/common.py": "import models.encoder.encoder\n",
    "experiments/base.py": "import experiments.common\n",
    "experiments/encoder_only.py": "import experiments.common\n",
    "experiments/predictor_heads.py": "import models.predictor.heads\n",
    "experiments/list_experiments.py": "print('base encoder_only predictor_heads')\n",
    "experiments/experiments_test.py": "import experiments.base\n",
    "experiments/manual_smoke_test.py": "import experiments.base\n",
    "experiments/configs/BUILD": (
        'filegroup(\n    name = "configs",\n    srcs = glob(["*.yaml"]),\n'
        '    visibility = ["//visibility:public"],\n)\n'
    ),
    "experiments/configs/keep.yaml": "lr: 0.001\n",
    "experiments/configs/old_heads.yaml": "heads: 1\n",
    "experiments/configs/predictor_heads.yaml": "heads: 4\n",
}


class MiniRepo:
    """The repository at `path`, with helpers to commit changes to it.

    Args:
        path: an empty or missing directory.
        debian_repos_bzl: our third_party/bazel/debian_repos.bzl, copied in unchanged.
    """

    def __init__(self, path: str, debian_repos_bzl: str) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.write({"WORKSPACE": _WORKSPACE, **_FILES})
        shutil.copyfile(debian_repos_bzl, os.path.join(path, "third_party/bazel/debian_repos.bzl"))
        self.git("init", "--quiet", "--initial-branch=main")
        self.commit("the mini layout")

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        result = subprocess.run(
            ["git", "-C", self.path, "-c", "commit.gpgsign=false", *args],
            capture_output=True,
            text=True,
            env=env,
        )
        if result.returncode:
            raise RuntimeError(f"git {' '.join(args)}: {result.stderr}")
        return result.stdout.strip()

    def write(self, files: dict[str, str]) -> None:
        for relative, text in files.items():
            path = os.path.join(self.path, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)

    def append(self, relative: str, text: str) -> None:
        with open(os.path.join(self.path, relative), "a", encoding="utf-8") as file:
            file.write(text)

    def commit(self, message: str) -> str:
        """Commits everything in the working tree; returns the commit hash."""
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")
