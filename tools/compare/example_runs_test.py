"""The example study's configs: nano-sized, and each variant differs from base in its model only."""

import dataclasses

from models.config import serialization
from models.latent_mim import sizes
from models.latent_mim.latent_mim import LatentMIMConfig
from models.train.callbacks.defaults import default_callbacks
from tools.compare import analysis, example_runs


def _args():
    return example_runs.parse_args(["--run-root", "/tmp/unused", "--report", "/tmp/unused"])


def test_variants_keep_their_config_classes_at_the_nano_size() -> None:
    nano = LatentMIMConfig.from_size("nano")
    both = example_runs.example_config("base_both_per_mod_proj", _args()).model
    assert type(both.encoder).__name__ == "EncoderWithPerModalityProjectionConfig"
    assert type(both.decoder).__name__ == "PredictorWithPerModalityOutputConfig"
    for part in ("encoder", "decoder"):
        ours, reference = getattr(both, part), getattr(nano, part)
        for field in ("width", "depth", "num_heads"):
            assert getattr(ours, field) == getattr(reference, field), (part, field)
    assert both.decoder.output_width == nano.encoder.width


def test_each_variant_differs_from_base_only_in_the_model() -> None:
    base = serialization.to_dict(example_runs.example_config("base", _args()))
    for experiment in example_runs.EXPERIMENTS[1:]:
        config = serialization.to_dict(example_runs.example_config(experiment, _args()))
        paths = [path for path, _, _ in analysis.config_diff(base, config)]
        assert paths and all(path.startswith("model.") for path in paths), (experiment, paths)


def test_at_size_changes_only_the_shape_fields() -> None:
    base = LatentMIMConfig.from_size("base_shallow_decoder")
    small = sizes.resized(base, "nano")
    assert dataclasses.replace(small.encoder, width=768, depth=12, num_heads=12) == base.encoder


def test_runs_are_scored_in_the_loop_once_at_mid_run() -> None:
    args = _args()
    callbacks = example_runs.example_config("base", args).trainer.callbacks
    # the example's evaluator replaces the recipe's; the standard callbacks stay
    assert list(callbacks) == [*default_callbacks(), "evaluator"]
    (task,) = callbacks["evaluator"].evaluator.tasks
    assert task.num_samples == args.eval_samples
    assert callbacks["evaluator"].interval == args.steps // 2
    assert not callbacks["evaluator"].at_end  # the final checkpoint is scored offline
