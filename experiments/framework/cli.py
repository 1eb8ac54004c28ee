"""The experiment command line: `<experiment> <subcommand> <run_name> <cluster> [--k=v ...]`.

    ./tools/bazel run //experiments:base -- dry_run base_try1 local
    ./tools/bazel run //experiments:nano -- train nano_quickstart local --trainer.max_steps=100
    ./tools/bazel run //experiments:base_s2_only -- launch base_s2_only_lr1e-4 slurm \\
        --launch.num_gpus=8 --trainer.callbacks.wandb.project=2026_11_25_s2_only

Subcommands:
    dry_run    print the resolved config, parameter counts and the diff against its
               baseline (base, or the baseline the experiment imports, e.g. v1_2_base)
    train      train here (one process, or one rank of a torchrun job)
    launch     hand the run to the launcher (gate, image, submit)
    evaluate   score a run's newest checkpoint on held-out batches
    visualize  masked inputs and predictions of a checkpoint, as PNGs

Options:
    --resume   (train, launch) continue an existing run of the same setup: experiment,
               commit and config must match what the run folder recorded (identity.json)
    --untrained  (evaluate, visualize) use the untrained model when the run has no checkpoint
    --init_from=PATH  (train, launch) a new run starts from these weights instead of its
               random initialisation: a checkpoint folder (runs/<project>/<run>/checkpoints/
               step_<N>), a run folder (its newest checkpoint), a state dict file of the
               model, or a reference OlmoEarth weights.pth (converted); weights that do not
               fit the model are refused naming the first key (init_from.py). It is a config
               field: config.yaml and overrides.txt record it
    --model_size=NAME  the variant's encoder and decoder at a size of
               models/latent_mim/sizes.py (widths, depths, heads; e.g. nano, 128 wide, for
               CPU), config classes kept; applied to base too, so dry_run's diff is the
               variant's change alone; recorded in overrides.txt like any override

Exit status: 0 done; 2 the command line is wrong (usage, unknown or mistyped override,
bad name, a run name taken by another setup; the message says what to type); 1 the work
itself failed. Either way the error is one line; TERRA_LAB_DEBUG=1 adds the traceback.

Model changes are variant files, never flags: `--model.*` is refused (resolution.py);
`--model_size` only resizes the variant's model.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import types
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from experiments.framework import clusters, naming, subcommands
from experiments.framework import overrides as ov
from experiments.framework.errors import CommandError
from experiments.framework.experiment_config import (
    BASELINE_NAME,
    Builders,
    CommonComponents,
    builder_functions,
)
from experiments.framework.resolution import SUBCOMMANDS, USAGE, Invocation, UsageError, resolve

__all__ = ["SUBCOMMANDS", "USAGE", "Invocation", "builders_in", "main", "resolve", "run"]


def _experiment_from_main() -> str:
    main_module = sys.modules.get("__main__")
    path = getattr(main_module, "__file__", None) or sys.argv[0]
    return path.rsplit("/", 1)[-1].removesuffix(".py")


def builders_in(namespace: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """main()'s keyword arguments from a module namespace (`main(**builders_in(globals()))`).

    The namespace is the experiment module's: the builders it defines or imports, the rest
    from its baseline (`experiment_config.builder_functions`), which is exactly what the
    hygiene test reads with `Builders.from_module`.
    """
    builders: dict[str, Any] = dict(builder_functions(namespace))
    if isinstance(namespace.get(BASELINE_NAME), types.ModuleType):
        builders[BASELINE_NAME] = namespace[BASELINE_NAME]
    return builders


def run(
    builders: Builders,
    argv: Sequence[str],
    experiment: str,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Resolve and run one command line; returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if any(arg in ("-h", "--help", "help") for arg in argv[:1]):
        print(__doc__, file=stdout)
        return 0
    try:
        invocation = resolve(builders, argv, experiment)
    except (
        UsageError,
        ov.OverrideError,
        naming.NamingError,
        clusters.UnknownClusterError,
    ) as error:
        print(f"error: {error}", file=stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a builder or a config check that raised
        if debugging():
            raise
        print(f"error: the config does not resolve: {one_line(error)}", file=stderr)
        return 2
    for warning in invocation.warnings:
        print(f"warning: {warning}", file=stderr)
    handler = getattr(subcommands, invocation.subcommand)
    return report_failures(
        lambda: handler(invocation, stdout, stderr), stderr, f"{invocation.subcommand} failed"
    )


def report_failures(
    action: Callable[[], int],
    stderr: TextIO,
    failed: str,
    usage_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Run `action`; its exit status, or a failure as one line and the status that goes with it.

    usage_errors (exit 2, one line) and CommandError (its own status) are expected; an
    interrupt is 130; anything else is a crash: `error: <failed>: <type>: <message>`, exit 1.
    TERRA_LAB_DEBUG=1 shows the traceback. The experiment and study command lines share it.
    """
    try:
        return action()
    except usage_errors as error:
        print(f"error: {one_line(error, limit=900)}", file=stderr)
        return 2
    except CommandError as error:
        if debugging():
            traceback.print_exc(file=stderr)
        print(f"error: {error}", file=stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place that turns crashes into a line
        if debugging():
            raise
        print(
            f"error: {failed}: {type(error).__name__}: {one_line(error)} (TERRA_LAB_DEBUG=1 "
            "shows the traceback)",
            file=stderr,
        )
        return 1


def debugging() -> bool:
    """TERRA_LAB_DEBUG=1: show tracebacks (the one debug switch of every terra-lab tool)."""
    return os.environ.get("TERRA_LAB_DEBUG", "") not in ("", "0")


def one_line(error: BaseException, limit: int = 500) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(
    *,
    common_components_builder: Callable[..., CommonComponents],
    model_config_builder: Callable[[CommonComponents], Any],
    dataset_config_builder: Callable[[CommonComponents], Any],
    dataloader_config_builder: Callable[[CommonComponents], Any],
    train_module_config_builder: Callable[[CommonComponents], Any],
    trainer_config_builder: Callable[[CommonComponents], Any],
    visualize_config_builder: Callable[[CommonComponents], Any],
    baseline: types.ModuleType | None = None,
    argv: Sequence[str] | None = None,
    experiment: str | None = None,
) -> NoReturn:
    """Entry point of an experiment binary; exits with `run`'s status.

    Args:
        *_builder: the experiment's builder functions (see experiment_config).
        baseline: the experiment module this one is compared to (None for base itself).
        argv: the command line after the program name (default: sys.argv[1:]).
        experiment: the experiment's name (default: the running file's name, which is
            the Bazel target's name).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    builders = Builders(
        common_components_builder=common_components_builder,
        model_config_builder=model_config_builder,
        dataset_config_builder=dataset_config_builder,
        dataloader_config_builder=dataloader_config_builder,
        train_module_config_builder=train_module_config_builder,
        trainer_config_builder=trainer_config_builder,
        visualize_config_builder=visualize_config_builder,
        baseline=Builders.from_module(baseline) if baseline is not None else None,
    )
    args = list(sys.argv[1:] if argv is None else argv)
    sys.exit(run(builders, args, experiment or _experiment_from_main()))
