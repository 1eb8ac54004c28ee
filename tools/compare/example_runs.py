"""The committed example comparison: base and the three per-modality projection variants.

    python -m tools.compare.example_runs --run-root /tmp/example_runs \\
        --report docs/compare_example
    ./tools/bazel run //tools/compare:example_runs -- --run-root /tmp/example_runs \\
        --report docs/compare_example

One command: trains four short CPU runs through the experiments framework (each variant's own
`build_model_config`, so the model change is exactly the variant's) with the downstream
evaluator in the loop at mid-run (`trainer.callbacks.evaluator`, in place of the recipe's),
scores each final checkpoint with the offline evaluator (`evaluate_checkpoint`, recorded in
the run folder), then writes the comparison report with
`//tools:compare`. Both evaluation paths feed the report.

What is shrunk for 2 CPU cores (identical for the four runs, so the comparison stays fair):
    model      every variant's encoder and decoder at the nano width and depth (128 wide,
               4 + 4 blocks, 8 heads) instead of base_shallow_decoder's 768; the config
               classes (the variants' changes) are kept
    training   `--steps` steps (40), global batch 8, token budget 400, lr 1e-3 after 10
               warmup steps; logged every step; W&B offline
    evaluation at step `--steps // 2` (in-loop) and `--steps` (offline) on 128 held-out
               synthetic tiles (64 train / 64 test): tile kNN, linear probe, per-patch probe
               and per-patch kNN
Runs already trained and evaluated under `--run-root` are reused, so a second call only
re-writes the report.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import flags, logging

from launcher.cli import command
from launcher.workspace import user_path

EXPERIMENTS = (
    "base",
    "base_encoder_per_mod_proj",
    "base_decoder_per_mod_proj",
    "base_both_per_mod_proj",
)
PROJECT = "example_per_modality_projection"
SIZE = "nano"


def example_config(experiment: str, args: types.SimpleNamespace) -> Any:
    """The experiment's resolved config with the CPU-sized settings of the docstring."""
    from experiments.framework import Builders, build_config
    from models.latent_mim.sizes import resized
    from models.train.callbacks.checkpointer import CheckpointerConfig
    from models.train.callbacks.wandb_logger import WandbConfig
    from models.train.run_dir import RunDirConfig
    from models.train.trainer import Duration

    module = importlib.import_module(f"experiments.{experiment}")
    builders = Builders.from_module(module)
    common = builders.common_components_builder(experiment, "train", experiment, "local")
    config = build_config(builders, common)
    batch = args.batch_size
    train_module = config.train_module
    return dataclasses.replace(
        config,
        model=resized(config.model, SIZE),
        data_loader=dataclasses.replace(
            config.data_loader, global_batch_size=batch, token_budget=400, num_workers=1
        ),
        train_module=dataclasses.replace(
            train_module,
            microbatch_size=batch,
            optimizer=dataclasses.replace(train_module.optimizer, lr=1e-3),
            scheduler=dataclasses.replace(train_module.scheduler, warmup_steps=10),
        ),
        trainer=dataclasses.replace(
            config.trainer,
            run=RunDirConfig(project=args.project, name=experiment, root=str(args.run_root)),
            max_duration=Duration.steps(args.steps),
            log_interval=1,
            callbacks={
                **config.trainer.callbacks,
                "checkpointer": CheckpointerConfig(
                    interval=args.steps, keep_last=1, permanent_interval=None
                ),
                "wandb": WandbConfig(enabled=True, mode="offline"),
                # The example's own evaluator replaces the recipe's (which would score each
                # run a second time, on 256 tiles, after its last step).
                "evaluator": evaluation(args),
            },
        ),
    )


def evaluation(args: types.SimpleNamespace) -> Any:
    from models.eval.callback import EvaluatorCallbackConfig
    from models.eval.evaluator import EvaluatorConfig
    from models.eval.landcover import LandCoverTaskConfig

    task = LandCoverTaskConfig(num_samples=args.eval_samples)
    interval = max(1, args.steps // 2)
    return EvaluatorCallbackConfig(
        evaluator=EvaluatorConfig(tasks=(task,)), interval=interval, at_end=False
    )


def _finished(run_dir: Path, steps: int) -> bool:
    from models.train import checkpoint

    latest = checkpoint.latest_complete(run_dir / "checkpoints")
    return latest is not None and checkpoint.read_meta(latest)["step"] >= steps


FLAGS = flags.FlagValues()
flags.DEFINE_string("run-root", None, "where the four run folders go", flag_values=FLAGS)
flags.DEFINE_string("report", None, "where the report goes", flag_values=FLAGS)
flags.DEFINE_string("project", PROJECT, "W&B project (folder) of the runs", flag_values=FLAGS)
flags.DEFINE_integer("steps", 40, "training steps of each run", flag_values=FLAGS)
flags.DEFINE_integer("batch-size", 8, "global batch size", flag_values=FLAGS)
flags.DEFINE_integer("eval-samples", 128, "held-out tiles of the evaluation", flag_values=FLAGS)
flags.DEFINE_integer("threads", 2, "torch threads", flag_values=FLAGS)
flags.DEFINE_list(
    "experiments", list(EXPERIMENTS), "comma-separated experiments to run", flag_values=FLAGS
)


def parse_args(argv: Sequence[str]) -> types.SimpleNamespace:
    return COMMAND.parse(argv)


def run(args: types.SimpleNamespace) -> int:
    args.run_root = user_path(args.run_root)

    import torch

    from experiments.framework import training
    from models.eval.evaluator import evaluate_checkpoint, latest_checkpoint
    from tools.compare import compare

    torch.set_num_threads(args.threads)
    evaluator = evaluation(args).evaluator.build()  # one task load for the offline scores
    for experiment in args.experiments:
        run_dir = args.run_root / args.project / experiment
        if _finished(run_dir, args.steps):
            logging.info("%s already trained %d steps: reusing it", experiment, args.steps)
        else:
            result = training.train(example_config(experiment, args))
            logging.info("%s: %d steps in %.0f s", experiment, result.steps, result.seconds)
        if not (run_dir / "eval" / f"downstream_step_{args.steps}.json").is_file():
            model = example_config(experiment, args).model
            scored = evaluate_checkpoint(
                model, latest_checkpoint(run_dir), run_dir=run_dir, evaluator=evaluator
            )
            logging.info("%s step %d: %s", experiment, scored.step, scored.metrics)
    report = str(user_path(args.report))
    # The committed report must not name a folder of this machine.
    source = f"<--run-root>/{args.project} (run folders and their offline W&B runs)"
    return compare.main(
        [
            *("--runs", str(args.run_root / args.project), "--baseline", "base"),
            *("--out", report, "--source", source),
        ]
    )


COMMAND = command.Command("example_runs", FLAGS, run, required=("run-root", "report"))
main = COMMAND.main


if __name__ == "__main__":
    COMMAND.run_app()
