"""Single-process tests of the sharding choices: config validation, meshes, mixed
precision, which modules fully_shard wraps, and the sharded model's non-forward methods
(on a one-rank gloo group; the two-rank equivalence with DDP is fsdp_test)."""

import copy
import dataclasses

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

from models.config import serialization
from models.train import distributed, parallel, tiny_run
from models.train.train_module import TrainModuleConfig


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tiny_run.write_tiny_dataset(tmp_path_factory.mktemp("data"))
    return tiny_run.tiny_config(data_dir, tmp_path_factory.mktemp("runs"), "p", steps=2)


@pytest.fixture
def one_rank_group():
    """A gloo process group of one rank (an in-memory store: no port is opened)."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _batch(config):
    loader = config.data_loader.build(config.dataset.build(), config.masking.build())
    return next(iter(loader))


def _ema_model(config):
    model_config = dataclasses.replace(
        config.model, target="ema", ema_decay=(0.5, 0.9), ema_target_output="encoder"
    )
    torch.manual_seed(0)
    return model_config.build()


# -- config ------------------------------------------------------------------------------


def test_parallelism_defaults_to_ddp_and_a_file_without_the_field_loads_as_ddp() -> None:
    assert TrainModuleConfig().parallelism == "ddp"
    old = serialization.to_dict(TrainModuleConfig(microbatch_size=4))
    del old["parallelism"], old["shard_degree"]
    assert serialization.from_dict(old) == TrainModuleConfig(microbatch_size=4)


def test_the_sharded_choices_round_trip_through_the_config_files() -> None:
    config = TrainModuleConfig(parallelism="hsdp", shard_degree=4)
    assert serialization.from_dict(serialization.to_dict(config)) == config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"parallelism": "zero3"}, "parallelism must be one of ('ddp', 'fsdp', 'hsdp')"),
        ({"parallelism": "fsdp", "shard_degree": 2}, "applies only to parallelism='hsdp'"),
        ({"parallelism": "hsdp", "shard_degree": 0}, "shard_degree must be >= 1"),
    ],
)
def test_invalid_parallelism_settings_are_rejected_naming_the_field(
    changes: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainModuleConfig(**changes)


def test_hsdp_refuses_a_shard_group_size_that_does_not_divide_the_world(tiny) -> None:
    config = TrainModuleConfig(parallelism="hsdp", shard_degree=3, microbatch_size=1)
    env = distributed.DistributedEnv(rank=0, world_size=4)
    with pytest.raises(ValueError, match=r"shard_degree \(3\) must be a positive divisor"):
        config.build(tiny.model.build(), 1, env=env, global_batch_size=4)


def test_the_default_shard_group_is_the_node_from_local_world_size() -> None:
    assert parallel.default_shard_degree(16, {"LOCAL_WORLD_SIZE": "8"}) == 8
    assert parallel.default_shard_degree(16, {}) == 16
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE must be an integer"):
        parallel.default_shard_degree(16, {"LOCAL_WORLD_SIZE": "eight"})


def test_shard_degree_must_divide_the_world_size() -> None:
    parallel.check_shard_degree(4, 8)
    for bad in (3, 0, 16):
        with pytest.raises(ValueError, match="positive divisor of the world size"):
            parallel.check_shard_degree(bad, 8)


def test_bf16_parameters_with_fp32_reduction_only_on_gpu_with_bf16_autocast() -> None:
    gpu = parallel.mixed_precision_policy(torch.device("cuda", 0), torch.bfloat16)
    assert (gpu.param_dtype, gpu.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert not gpu.cast_forward_inputs  # MISSING_VALUE must reach the model unrounded
    for device, dtype in [("cpu", torch.bfloat16), ("cuda", None), ("cpu", None)]:
        policy = parallel.mixed_precision_policy(torch.device(device), dtype)
        assert (policy.param_dtype, policy.reduce_dtype) == (None, None), (device, dtype)


# -- wrapping ------------------------------------------------------------------------------


def test_the_blocks_of_encoder_decoder_and_ema_target_are_the_wrapping_units(tiny) -> None:
    model = tiny.model.build()
    assert parallel.transformer_blocks(model) == [*model.encoder.blocks, *model.decoder.blocks]
    ema = _ema_model(tiny)
    assert parallel.transformer_blocks(ema) == [
        *ema.encoder.blocks,
        *ema.decoder.blocks,
        *ema.target.blocks,
    ]


def test_meshes_name_their_dimensions(one_rank_group) -> None:
    fsdp = parallel.build_mesh("fsdp", 1, "cpu")
    assert (fsdp.mesh_dim_names, tuple(fsdp.shape)) == (("shard",), (1,))
    hsdp = parallel.build_mesh("hsdp", 1, "cpu", shard_degree=1)
    assert (hsdp.mesh_dim_names, tuple(hsdp.shape)) == (("replicate", "shard"), (1, 1))
    with pytest.raises(ValueError, match="no device mesh for parallelism 'ddp'"):
        parallel.build_mesh("ddp", 1, "cpu")


def test_apply_fsdp_wraps_each_block_and_the_root_and_shards_every_parameter(
    tiny, one_rank_group
) -> None:
    model = _ema_model(tiny)
    parallel.apply_fsdp(
        model,
        parallel.build_mesh("fsdp", 1, "cpu"),
        parallel.mixed_precision_policy(torch.device("cpu"), None),
    )
    wrapped = [name for name, module in model.named_modules() if isinstance(module, FSDPModule)]
    expected = [""] + [
        f"{owner}.blocks.{index}"
        for owner, count in [("encoder", 1), ("decoder", 1), ("target", 1)]
        for index in range(count)
    ]
    assert sorted(wrapped) == sorted(expected)
    assert all(isinstance(p, DTensor) for p in model.parameters())


def test_an_unknown_forward_method_is_refused(tiny, one_rank_group) -> None:
    with pytest.raises(ValueError, match="LatentMIM has no method 'target_embeddings'"):
        parallel.apply_fsdp(
            tiny.model.build(),
            parallel.build_mesh("fsdp", 1, "cpu"),
            parallel.mixed_precision_policy(torch.device("cpu"), None),
            forward_methods=("target_embeddings",),
        )


def test_target_tokens_and_the_ema_update_work_on_the_sharded_model(tiny, one_rank_group) -> None:
    # target_tokens runs the target outside `forward`; registered as a forward method it
    # gathers the root's parameters first. Unregistered, the frozen patch embeddings
    # would be DTensor shards mixed with plain inputs (an error), which is what this
    # catches before any forward has gathered them.
    view = _batch(tiny).view_a
    sharded = _ema_model(tiny)
    reference = copy.deepcopy(sharded)
    parallel.apply_fsdp(
        sharded,
        parallel.build_mesh("fsdp", 1, "cpu"),
        parallel.mixed_precision_policy(torch.device("cpu"), None),
        forward_methods=("target_tokens",),
    )
    got = sharded.target_tokens(view, tiny_run.TINY_PATCH_SIZE)
    want = reference.target_tokens(view, tiny_run.TINY_PATCH_SIZE)
    assert got.tokens.keys() == want.tokens.keys()
    for name in want.tokens:
        torch.testing.assert_close(got.tokens[name], want.tokens[name], rtol=0, atol=1e-6)
        assert torch.equal(got.masks[name], want.masks[name])

    # The EMA update runs foreach ops over the target's and encoder's sharded parameters,
    # resharded first as the train module does (the root stays gathered after a forward).
    parallel.reshard_all(sharded)
    assert all(isinstance(p, DTensor) for p in sharded.parameters())
    with torch.no_grad():
        for model in (sharded, reference):
            for parameter in model.encoder.parameters():
                parameter.add_(1.0)
            model.update_target(step=3, max_steps=10)
    for (name, got_p), want_p in zip(
        sharded.target.named_parameters(), reference.target.parameters(), strict=True
    ):
        torch.testing.assert_close(got_p.full_tensor(), want_p, rtol=0, atol=1e-6, msg=name)
