"""Start a new ablation of base: plan document, variant file and Bazel target in one step.

    ./tools/bazel run //tools:new_experiment -- --name base_encoder_per_mod_proj \\
        --hypothesis "A Linear(D, D) per modality after the encoder blocks improves ..."

creates (in the workspace, refusing to overwrite anything):
    experiments/plans/<name>.plan.md   hypothesis, change, files, expected outcome, baseline
    experiments/<name>.py              a variant identical to base until you edit it
    experiments/BUILD                  an `experiment(name = "<name>", ...)` target appended
The new experiment passes its launch tests at once (the tests the launch gate runs:
`bazel run //launcher/gate:launch_tests -- //experiments:<name>`): its config equals base's,
so the config test, the hygiene test and dry_run all hold. Then: subclass a
component in models/ (never edit the base class), swap its config in build_model_config,
and check `dry_run` shows a diff in the model section only.
"""

from __future__ import annotations

import datetime
import re
import textwrap
import types
from pathlib import Path

from absl import flags

from launcher.cli import command
from launcher.workspace import workspace_root

NAME = re.compile(r"^base_[a-z0-9]+(_[a-z0-9]+)+$")
SECTIONS = ("model", "dataset", "data_loader", "train_module", "trainer", "launch", "visualize")
DOC_WIDTH = 92
MAX_HYPOTHESIS_LINES = 4


class ScaffoldError(ValueError):
    """The request cannot be scaffolded (bad name, existing files, not a workspace)."""


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ScaffoldError(
            f"--name {name!r} must be base_<component>_<change> in lowercase letters, digits "
            "and '_' (the guide's convention), e.g. --name base_encoder_per_mod_proj"
        )
    return name


def _hypothesis_lines(hypothesis: str, name: str) -> list[str]:
    lines = textwrap.wrap(f"Hypothesis: {hypothesis}", DOC_WIDTH)
    if len(lines) > MAX_HYPOTHESIS_LINES:
        # The plan has the full text; the variant file must stay a small derivation.
        lines = lines[:MAX_HYPOTHESIS_LINES]
        lines[-1] = lines[-1][: DOC_WIDTH - 40].rstrip() + f" ... (plans/{name}.plan.md)"
    return [line.replace("\\", "\\\\").replace('"""', "'''") for line in lines]


def _tuple_literal(items: tuple[str, ...]) -> str:
    """`("a",)` / `("a", "b")`: the form ruff format leaves alone."""
    inner = ", ".join(f'"{item}"' for item in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def variant_source(name: str, hypothesis: str, changes: tuple[str, ...]) -> str:
    """The variant file: base as its baseline (whose other builders it inherits), CHANGES
    declared, build_model_config = base's."""
    title = name.removeprefix("base_").replace("_", " ")
    doc = [
        f'"""Base with {title}.',
        "",
        *_hypothesis_lines(hypothesis, name),
        "Change: none yet; this file equals base until build_model_config swaps in a config",
        "subclass (see base_encoder_per_mod_proj.py). Expected outcome and baseline: the plan.",
        "Launch:",
        f"    ./tools/bazel run //experiments:{name} -- launch \\\\",
        f"        {name} <cluster> --launch.num_gpus=8 \\\\",
        "        --trainer.callbacks.wandb.project=YYYY_MM_DD_<study>",
        '"""',
    ]
    body = f"""
from experiments import base as baseline  # what this changes: its other builders, the diff
from experiments.framework import CommonComponents, builders_in, main
from models.latent_mim.latent_mim import LatentMIMConfig

CHANGES = {_tuple_literal(changes)}


def build_model_config(common: CommonComponents) -> LatentMIMConfig:
    # e.g. dataclasses.replace(model, encoder=as_subclass(model.encoder, MyEncoderConfig))
    model = baseline.build_model_config(common)
    return model


if __name__ == "__main__":
    main(**builders_in(globals()))
"""
    return "\n".join(doc) + "\n" + body


def plan_source(name: str, hypothesis: str, changes: tuple[str, ...], day: datetime.date) -> str:
    return f"""# {name}

Created {day:%Y-%m-%d} with `bazel run //tools:new_experiment`.

## Hypothesis
{hypothesis}

## Change (the minimal one)
Sections this experiment changes (its `CHANGES`): {", ".join(changes)}.
Everything else stays identical to `base` (learning rate, batch size, optimizer, duration,
seeds, data); `bazel test //experiments:{name}_test` fails if it does not.

- Architecture: subclass the component in `models/` (never edit the base class), with a
  config subclass whose `build()` returns it, and unit tests beside it.
- Experiment: swap the config in `build_model_config` of `experiments/{name}.py`.

## Files
- `experiments/{name}.py`: the variant (created)
- `experiments/BUILD`: its `experiment()` target (appended)
- `models/<package>/<module>.py` and `<module>_test.py`: the new component
- this plan

## Ablations
If the change touches several places (say encoder and decoder), make one experiment per
place and one with all of them, so the contribution of each is measurable.

## Expected outcome
What result would support the hypothesis, and what would refute it (loss curves,
downstream probes, convergence speed, parameter count)?

## Baseline
`base` (experiments/base.py), launched with the same flags into the same W&B project.

## Launch
    ./tools/bazel run //experiments:{name} -- dry_run {name} local
    ./tools/bazel run //launcher/gate:launch_tests -- //experiments:{name}
    ./tools/bazel run //experiments:{name} -- launch {name} <cluster> --launch.num_gpus=8 \\
        --trainer.callbacks.wandb.project={day:%Y_%m_%d}_<study>

## Runs
(W&B project and run names, once launched)
"""


def build_entry(name: str) -> str:
    return f"""
experiment(
    name = "{name}",
    deps = [
        ":base_lib",
        ":script",
        "//models/latent_mim",
    ],
)
"""


def scaffold(
    workspace: Path,
    name: str,
    hypothesis: str,
    changes: tuple[str, ...] = ("model",),
    day: datetime.date | None = None,
) -> list[Path]:
    """Create the plan, the variant and its BUILD target; returns the paths written."""
    check_name(name)
    hypothesis = " ".join(hypothesis.split())
    if len(hypothesis) < 20:
        raise ScaffoldError(
            "--hypothesis must say what you test and why (the guide: not 'try to improve the "
            "model' but e.g. 'per-modality output projections improve representations by "
            "allowing modality-specific feature transformations')"
        )
    unknown = [section for section in changes if section not in SECTIONS]
    if unknown or not changes:
        raise ScaffoldError(f"--changes {list(changes)}: choose from {', '.join(SECTIONS)}")
    experiments = workspace / "experiments"
    build = experiments / "BUILD"
    if not build.is_file() or not (experiments / "base.py").is_file():
        raise ScaffoldError(f"{workspace} is not a terra-lab workspace (no experiments/BUILD)")
    variant = experiments / f"{name}.py"
    plan = experiments / "plans" / f"{name}.plan.md"
    existing = [str(p) for p in (variant, plan) if p.exists()]
    if existing or f'name = "{name}"' in build.read_text():
        raise ScaffoldError(f"{name} already exists ({', '.join(existing) or build}); pick another")
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_text(plan_source(name, hypothesis, changes, day or datetime.date.today()))
    variant.write_text(variant_source(name, hypothesis, changes))
    text = build.read_text()
    build.write_text(text.rstrip("\n") + "\n" + build_entry(name))
    return [plan, variant, build]


FLAGS = flags.FlagValues()
flags.DEFINE_string("name", None, "base_<component>_<change>", flag_values=FLAGS)
flags.DEFINE_string("hypothesis", None, "what you test, and why", flag_values=FLAGS)
flags.DEFINE_string(
    "changes",
    "model",
    f"comma-separated config sections the hypothesis changes ({', '.join(SECTIONS)})",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "workspace",
    None,
    "the repository checkout (default: the one `bazel run` was called in, else the current "
    "directory)",
    flag_values=FLAGS,
)


def run(args: types.SimpleNamespace) -> int:
    workspace = args.workspace or str(workspace_root())
    changes = tuple(part.strip() for part in args.changes.split(",") if part.strip())
    written = scaffold(Path(workspace), args.name, args.hypothesis, changes)
    name = args.name
    print(f"created {name}:")
    for path in written:
        print(f"  {path}")
    print(
        "\nnext:\n"
        f"  1. fill in experiments/plans/{name}.plan.md (expected outcome, baseline)\n"
        "  2. subclass the component in models/ with its config and tests\n"
        f"  3. swap the config in build_model_config of experiments/{name}.py\n"
        f"  4. ./tools/bazel run //experiments:{name} -- dry_run {name} local\n"
        "     (the diff against base must show the model section only)\n"
        f"  5. ./tools/bazel run //launcher/gate:launch_tests -- //experiments:{name}"
    )
    return 0


COMMAND = command.Command(
    "new_experiment", FLAGS, run, required=("name", "hypothesis"), bad_input=(ScaffoldError,)
)
main = COMMAND.main


if __name__ == "__main__":
    COMMAND.run_app()
