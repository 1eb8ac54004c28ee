"""The five subcommands; each takes a resolved Invocation and returns an exit status.

dry_run    resolved config (YAML), parameter counts, per-GPU memory and step time
           (footprint_report.py), diff against its baseline; builds nothing but the model
           on the meta device (no memory, no weights)
train      trains here; prints where checkpoints, metrics, W&B and the loss plot are
launch     hands the run to launcher/ (gate -> image -> submit)
evaluate   scores a checkpoint on held-out batches (experiments/framework/evaluate.py)
visualize  masked inputs and predictions as PNGs (experiments/framework/visualize.py)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

from experiments.framework import diff, footprint_report
from experiments.framework.errors import CommandError
from experiments.framework.experiment_config import IDENTITY_FIELDS, build_config
from models.config import serialization

if TYPE_CHECKING:
    from experiments.framework.resolution import Invocation


def _rule(title: str) -> str:
    return f"\n== {title} " + "=" * max(0, 86 - len(title))


def format_count(count: int) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.2f}B"
    if count >= 1e6:
        return f"{count / 1e6:.2f}M"
    if count >= 1e3:
        return f"{count / 1e3:.1f}k"
    return str(count)


def parameter_counts(model_config: Any) -> dict[str, int]:
    """Parameters per part of the model, built on the meta device (no memory used)."""
    import torch

    with torch.device("meta"):
        model = model_config.build()
    counts = (
        dict(model.parameter_counts())
        if hasattr(model, "parameter_counts")
        else {"model": sum(p.numel() for p in model.parameters())}
    )
    counts["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def baseline_config_for(invocation: Invocation) -> Any:
    """The baseline's resolved config for the same run identity and the same overrides;
    None when the experiment declares no baseline (base itself)."""
    from experiments.framework import resolution

    baseline = invocation.builders.baseline
    if baseline is None:
        return None
    baseline_config = build_config(baseline, invocation.common)
    return resolution.apply_cli_overrides(baseline_config, invocation.overrides)[0]


def dry_run(invocation: Invocation, stdout: TextIO, stderr: TextIO) -> int:
    config = invocation.config
    print(
        f"{invocation.experiment}: run {invocation.run_name} on {invocation.cluster} "
        f"(dry run: nothing is trained or written)",
        file=stdout,
    )
    print(_rule("overrides"), file=stdout)
    if invocation.applied:
        for applied in invocation.applied:
            print(f"  {applied.describe()}", file=stdout)
    else:
        print("  (none)", file=stdout)
    print(_rule("resolved config"), file=stdout)
    print(serialization.to_yaml(config).rstrip(), file=stdout)
    print(_rule("parameters"), file=stdout)
    try:
        counts = parameter_counts(config.model)
    except Exception as error:  # the config is printed; a model that cannot build is an error
        raise CommandError(f"the model config does not build: {error}") from error
    for name, count in counts.items():
        print(f"  {name:<10} {format_count(count):>9}  ({count:,})", file=stdout)
    print(_rule("memory and time per GPU (estimate)"), file=stdout)
    try:
        lines = footprint_report.estimate_lines(config, invocation.estimate_gpu)
    except (AttributeError, ValueError) as error:  # a model or loader it cannot read
        lines = [f"  no estimate: {type(error).__name__}: {error}"]
    for line in lines:
        print(line, file=stdout)
    # The experiment's own baseline (base, v1_2_base, ...): the module it imports as such.
    baseline = invocation.builders.baseline
    baseline_name = (baseline and baseline.name) or "base"
    print(_rule(f"diff against {baseline_name}"), file=stdout)
    baseline_config = baseline_config_for(invocation)
    if baseline_config is None:
        print("  (this is base: it names no baseline)", file=stdout)
    else:
        changes = diff.diff_configs(baseline_config, config, ignore=IDENTITY_FIELDS)
        print(diff.format_diff(changes, baseline_name), file=stdout)
    print(_rule("run folder"), file=stdout)
    print(f"  {config.trainer.run.build().path}", file=stdout)
    return 0


def train(invocation: Invocation, stdout: TextIO, stderr: TextIO) -> int:
    from experiments.framework import training

    return training.train_command(invocation, stdout, stderr)


def launch(invocation: Invocation, stdout: TextIO, stderr: TextIO) -> int:
    from experiments.framework import launching

    return launching.launch_command(invocation, stdout, stderr)


def evaluate(invocation: Invocation, stdout: TextIO, stderr: TextIO) -> int:
    from experiments.framework import evaluate as evaluate_module

    return evaluate_module.evaluate_command(invocation, stdout, stderr)


def visualize(invocation: Invocation, stdout: TextIO, stderr: TextIO) -> int:
    from experiments.framework import visualize as visualize_module

    return visualize_module.visualize_command(invocation, stdout, stderr)
