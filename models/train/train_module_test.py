"""Tests for one contrastive latent-MIM optimizer step on the real tiny model and data."""

import copy
import dataclasses

import pytest
import torch

from models.config import serialization
from models.data.loader import EarthDataLoader
from models.modalities.samples import MaskValue
from models.train import tiny_run
from models.train.train_module import (
    ContrastiveLatentMIMTrainModule,
    TrainModuleConfig,
    count_tokens,
    split_microbatches,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tiny_run.write_tiny_dataset(tmp_path_factory.mktemp("data"))
    return tiny_run.tiny_config(data_dir, tmp_path_factory.mktemp("runs"), "tm", steps=10)


def _loader(config) -> EarthDataLoader:
    return config.data_loader.build(config.dataset.build(), config.masking.build())


def _module(config, global_batch_size=None, **changes) -> ContrastiveLatentMIMTrainModule:
    """The tiny run's train module; the global batch is its loader's unless given."""
    torch.manual_seed(0)
    module_config = dataclasses.replace(config.train_module, **changes)
    return module_config.build(
        config.model.build(),
        max_steps=10,
        global_batch_size=global_batch_size or config.data_loader.global_batch_size,
    )


def test_a_step_reports_consistent_losses_and_moves_only_trainable_weights(tiny) -> None:
    module = _module(tiny)
    batch = next(iter(_loader(tiny)))
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    metrics = module.train_batch(batch, step=1)
    assert metrics["loss"] == pytest.approx(metrics["patch_disc"] + metrics["infonce"])
    assert metrics["patch_disc"] == pytest.approx(
        (metrics["patch_disc_a"] + metrics["patch_disc_b"]) / 2
    )
    assert metrics["lr"] == pytest.approx(3e-3 / 3)  # first warmup step of 3
    assert metrics["samples"] == 4 and metrics["tokens"] == metrics["tokens_seen"] > 0
    after = module.model.state_dict()
    target = [k for k in before if k.startswith("target.")]
    assert target and all(torch.equal(before[k], after[k]) for k in target)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert all(p.grad is None for p in module.model.parameters())


def test_losses_run_outside_autocast_even_when_the_model_runs_in_bf16(tiny) -> None:
    module = _module(tiny, autocast="bfloat16")
    seen = []
    module.patch_loss.register_forward_pre_hook(
        lambda mod, args: seen.append((torch.is_autocast_enabled("cpu"), args[0].tokens))
    )
    module.train_batch(next(iter(_loader(tiny))), step=1)
    assert seen and not any(enabled for enabled, _ in seen)
    # The decoder ran under bf16 autocast: its predictions arrive in bf16.
    assert {t.dtype for _, tokens in seen for t in tokens.values()} == {torch.bfloat16}


def test_the_gradient_is_clipped_to_max_grad_norm_before_the_update(tiny) -> None:
    module = _module(tiny, max_grad_norm=0.01)
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for p in module.model.parameters() if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    module.optimizer.register_step_pre_hook(record)
    metrics = module.train_batch(next(iter(_loader(tiny))), step=1)
    assert metrics["grad_norm"] > 0.01  # reported before clipping
    assert norms == [pytest.approx(0.01, rel=1e-4)]


def test_a_module_restored_from_state_takes_the_same_next_step(tiny) -> None:
    loader = _loader(tiny)
    batches = iter(loader)
    module = _module(tiny)
    module.train_batch(next(batches), step=1)
    state = copy.deepcopy(module.state_dict())  # live tensors would move with step 2
    batch = next(batches)
    expected = module.train_batch(batch, step=2)

    other = _module(tiny)
    other.load_state_dict(state)
    got = other.train_batch(batch, step=2)
    assert got == expected


def test_microbatches_split_the_batch_in_order_and_tokens_count_present_patches(tiny) -> None:
    view = next(iter(_loader(tiny))).view_a
    pieces = split_microbatches(view, 3)
    assert [p.batch_size for p in pieces] == [3, 1]
    for name in view.data:
        assert torch.equal(torch.cat([p.data[name] for p in pieces]), view.data[name])
        assert torch.equal(torch.cat([p.masks[name] for p in pieces]), view.masks[name])
    expected = sum(
        int((mask[:, ::2, ::2] != MaskValue.MISSING).sum()) for mask in view.masks.values()
    )
    assert count_tokens(view, patch_size=2) == expected
    assert count_tokens(view, 2) == sum(count_tokens(p, 2) for p in pieces)


def test_a_batch_of_the_wrong_size_is_rejected(tiny) -> None:
    module = _module(tiny, global_batch_size=8, microbatch_size=2)
    with pytest.raises(ValueError, match="this rank needs 8"):
        module.train_batch(next(iter(_loader(tiny))), step=1)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"microbatch_size": 0}, "microbatch_size"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"autocast": "fp16"}, "autocast"),
    ],
)
def test_invalid_configs_are_rejected_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"TrainModuleConfig.{field}"):
        TrainModuleConfig(**changes)


def test_ranks_must_split_the_global_batch_into_whole_microbatches() -> None:
    config = TrainModuleConfig(microbatch_size=4)
    assert config.rank_batch_size(8, world_size=2) == 4
    for global_batch, world_size in ((8, 4), (6, 1), (0, 1)):
        with pytest.raises(ValueError, match="data_loader.global_batch_size"):
            config.rank_batch_size(global_batch, world_size)


def test_a_train_module_is_built_for_the_loaders_global_batch(tiny) -> None:
    with pytest.raises(ValueError, match=r"global batch \(6, data_loader"):
        _module(tiny, global_batch_size=6, microbatch_size=4)
    assert _module(tiny, global_batch_size=8, microbatch_size=2).rank_batch_size == 8


def test_a_file_with_the_retired_train_module_batch_size_loads_without_it() -> None:
    # Files written before the loader held the one global batch had a copy here, which
    # pretraining required to equal the loader's: dropping it loses nothing.
    old = serialization.to_dict(TrainModuleConfig(microbatch_size=4))
    old["global_batch_size"] = 8
    assert serialization.from_dict(old) == TrainModuleConfig(microbatch_size=4)


def test_autocast_auto_is_bf16_on_gpu_and_off_on_cpu() -> None:
    config = TrainModuleConfig()
    assert config.autocast_dtype(torch.device("cpu")) is None
    assert config.autocast_dtype(torch.device("cuda", 0)) == torch.bfloat16
    assert TrainModuleConfig(autocast="none").autocast_dtype(torch.device("cuda")) is None
