"""footprint: the estimate against a measured CPU step (nano), the largest step's tokens,
how each parallelism divides memory, the step time and the verdict."""

from __future__ import annotations

import dataclasses

import pytest

from models.latent_mim.latent_mim import LatentMIMConfig
from models.train import accelerators, footprint
from models.train.footprint_measure import measure_and_estimate

TOLERANCE = 0.20
"""The estimate must be within 20% of the measurement, category by category."""


def test_nano_step_memory_is_within_20_percent_of_the_estimate() -> None:
    # 8 x 8 patches of 2 px, 2 timesteps: 1152 positions per sample, activations dominate.
    measured, estimate = measure_and_estimate(
        "nano", batch=2, image_size=16, patch_size=2, timesteps=2
    )
    assert measured.worst_error(estimate) <= TOLERANCE, measured.errors(estimate)


def _v1_shape_and_tokens(size: str) -> tuple[footprint.ModelShape, list]:
    config = LatentMIMConfig.from_size(size)
    tokens = footprint.largest_step_tokens(
        config,
        patches_per_side=range(1, 13),
        token_budget=2250,
        max_timesteps=12,
        encode_ratio=0.5,
        decode_ratio=0.5,
    )
    return footprint.ModelShape.of(config), tokens


def test_largest_step_is_the_window_with_most_tokens_within_the_budget() -> None:
    _, tokens = _v1_shape_and_tokens("nano")
    by_name = {t.name: t for t in tokens}
    # 11 x 11 patches, 2 timesteps: 6 static maps x 121 + 2 x (3 + 1 + 2 band sets) x 121
    # = 2178 tokens, the most of any window under 2250 (10 x 10 x 2 steps: 1800; 6 x 6 x
    # 9 steps: 2160).
    assert sum(t.positions for t in tokens) == 2178
    assert by_name["sentinel2_l2a"].positions == 121 * 3 * 2
    assert by_name["sentinel2_l2a"].encoder == 363 and by_name["sentinel2_l2a"].decoder == 363
    assert by_name["srtm"].encoder == 0 and by_name["srtm"].decoder == 60
    # The conv reads the band set's pixels at the max patch size (8 x 8): S2's sets hold
    # 4, 6 and 2 bands.
    assert by_name["sentinel2_l2a"].input_values == 64 * 4


def test_largest_step_refuses_a_budget_no_window_fits() -> None:
    config = LatentMIMConfig.from_size("nano")
    with pytest.raises(ValueError, match="fits token_budget 5"):
        footprint.largest_step_tokens(config, (4, 8), 5, 12, 0.5, 0.5)


def test_fsdp_divides_parameters_gradients_and_optimizer_by_the_world_size() -> None:
    shape, tokens = _v1_shape_and_tokens("base")
    ddp = footprint.Setup(microbatch_size=8, rank_batch_size=8, world_size=8)
    fsdp = ddp.with_parallelism("fsdp")
    hsdp = ddp.with_parallelism("hsdp", shard_size=4)
    by_kind = {
        s.parallelism: footprint.estimate_memory(shape, tokens, s) for s in (ddp, fsdp, hsdp)
    }
    for field in ("parameters", "gradients", "optimizer"):
        assert getattr(by_kind["fsdp"], field) == pytest.approx(getattr(by_kind["ddp"], field) / 8)
        assert getattr(by_kind["hsdp"], field) == pytest.approx(getattr(by_kind["ddp"], field) / 4)
    assert by_kind["fsdp"].activations == by_kind["ddp"].activations
    # DDP's reducer buckets (fp32) plus autocast's bf16 weights: 6 bytes per parameter.
    assert by_kind["ddp"].copies == pytest.approx(6 * shape.trainable)
    assert by_kind["fsdp"].peak < by_kind["hsdp"].peak < by_kind["ddp"].peak


def test_one_process_is_estimated_as_the_bare_model_whatever_the_parallelism() -> None:
    shape, tokens = _v1_shape_and_tokens("nano")
    single = footprint.Setup(microbatch_size=4, rank_batch_size=4)
    assert footprint.estimate_memory(
        shape, tokens, single.with_parallelism("fsdp")
    ) == footprint.estimate_memory(shape, tokens, single)


def test_activations_grow_with_the_microbatch_and_shrink_in_bf16() -> None:
    shape, tokens = _v1_shape_and_tokens("nano")
    setup = footprint.Setup(microbatch_size=4, rank_batch_size=8, bf16=False)
    base = footprint.activation_bytes(shape, tokens, setup)
    doubled = footprint.activation_bytes(
        shape, tokens, dataclasses.replace(setup, microbatch_size=8)
    )
    assert doubled == pytest.approx(2 * base)
    bf16 = footprint.activation_bytes(shape, tokens, dataclasses.replace(setup, bf16=True))
    assert 0.5 * base < bf16 < 0.8 * base  # LayerNorm inputs and the loss stay fp32


def test_gradient_accumulation_keeps_gradients_during_the_forward() -> None:
    shape, tokens = _v1_shape_and_tokens("nano")
    one = footprint.Setup(microbatch_size=4, rank_batch_size=4)
    two = dataclasses.replace(one, rank_batch_size=8)
    first = footprint.estimate_memory(shape, tokens, one)
    second = footprint.estimate_memory(shape, tokens, two)
    assert second.forward_peak - first.forward_peak == pytest.approx(first.gradients)


def test_total_adds_the_allocator_margin_and_the_reserve() -> None:
    shape, tokens = _v1_shape_and_tokens("nano")
    estimate = footprint.estimate_memory(
        shape, tokens, footprint.Setup(microbatch_size=4, rank_batch_size=4)
    )
    assert estimate.total == pytest.approx(estimate.peak * 1.10 + 2**30)


def test_step_time_scales_with_world_size_mfu_and_the_accelerator() -> None:
    shape, tokens = _v1_shape_and_tokens("base")
    h100, a100 = accelerators.get("H100"), accelerators.get("A100")
    one = footprint.step_seconds(shape, tokens, 512, 8, h100)
    assert footprint.step_seconds(shape, tokens, 512, 16, h100) == pytest.approx(one / 2)
    assert footprint.step_seconds(shape, tokens, 512, 8, h100, mfu=0.2) == pytest.approx(2 * one)
    assert footprint.step_seconds(shape, tokens, 512, 8, a100) == pytest.approx(one * 989.4 / 312)
    with pytest.raises(ValueError, match="mfu must be in"):
        footprint.step_seconds(shape, tokens, 512, 8, h100, mfu=0)


def test_flops_are_at_least_six_per_block_parameter_per_token() -> None:
    shape, tokens = _v1_shape_and_tokens("base")
    encoder_tokens = sum(t.encoder for t in tokens)
    decoder_tokens = sum(t.decoder for t in tokens)
    dense = 6 * (
        shape.encoder_depth * shape.encoder_block_parameters * encoder_tokens
        + shape.decoder_depth * shape.decoder_block_parameters * decoder_tokens
    )
    # Two views; attention, embeddings, heads and the loss come on top.
    assert 2 * dense < footprint.flops_per_sample(shape, tokens) < 4 * dense


def _estimate(peak: float, gradients: float = 0.0) -> footprint.MemoryEstimate:
    return footprint.MemoryEstimate(
        parameters=0,
        gradients=gradients,
        optimizer=0,
        copies=0,
        activations=peak,
        forward_peak=peak,
        optimizer_peak=0,
    )


def test_verdict_names_the_cheapest_setup_that_fits() -> None:
    gib = 2**30
    memory = 20 * gib
    fits, too_big = _estimate(10 * gib), _estimate(30 * gib)
    assert footprint.verdict({"ddp": fits, "fsdp": fits}, memory, 32) == "fits with DDP"
    assert footprint.verdict({"ddp": too_big, "fsdp": fits}, memory, 32) == (
        "needs FSDP: fits with FSDP, not with DDP"
    )
    smaller = {16: {"ddp": too_big, "fsdp": too_big}, 8: {"ddp": fits, "fsdp": fits}}
    assert footprint.verdict({"ddp": too_big, "fsdp": too_big}, memory, 32, smaller) == (
        "does not fit at microbatch 32: try --train_module.microbatch_size=8 (DDP)"
    )
    assert "nor at microbatch 1" in footprint.verdict({"ddp": too_big}, memory, 32)


def test_setup_rejects_impossible_runs() -> None:
    with pytest.raises(ValueError, match="parallelism must be one of"):
        footprint.Setup(microbatch_size=1, rank_batch_size=1, parallelism="zero3")
    with pytest.raises(ValueError, match="microbatch_size"):
        footprint.Setup(microbatch_size=8, rank_batch_size=4)
    with pytest.raises(ValueError, match="must divide world_size"):
        footprint.Setup(microbatch_size=1, rank_batch_size=1, world_size=8, shard_size=3)
