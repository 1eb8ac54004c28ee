"""dry_run's memory and time estimate: per-GPU memory under ddp and fsdp (and hsdp across
nodes) against the chosen GPU, a one-line verdict and the step time (models/train/footprint.py
has the arithmetic and what it counts).

The GPU is `--estimate.gpu=NAME` (models/train/accelerators.py) or H100, the part the base
recipe (512 samples a step on 8 H100s) was sized for; clusters.yaml names no GPU model yet,
so a cluster's own cannot be the default. Everything comes from the resolved config: the
model's shape (built on the meta device), the largest crop the data loader can draw under its
token budget, the masking ratios, the microbatch, bf16 autocast unless it is off, and the
launch section's nodes x GPUs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.train import accelerators, footprint

DEFAULT_GPU = "H100"
_GB = 1e9


def _setup(config: Any) -> footprint.Setup:
    """The run's per-device setup from the resolved experiment config."""
    train_module, launch = config.train_module, config.launch
    world_size = launch.num_nodes * launch.procs_per_node
    global_batch = config.data_loader.global_batch_size
    microbatch = train_module.microbatch_size
    rank_batch = max(global_batch // world_size, microbatch)
    parallelism = getattr(train_module, "parallelism", "ddp")
    shard_degree = getattr(train_module, "shard_degree", None) or launch.procs_per_node
    setup = footprint.Setup(
        microbatch_size=microbatch,
        rank_batch_size=rank_batch,
        world_size=world_size,
        # "auto" is bf16 on a GPU, the device this estimate is for.
        bf16=train_module.autocast != "none",
    )
    return setup.with_parallelism(parallelism, shard_degree)


def _tokens(config: Any) -> list[footprint.ModalityTokens]:
    loader, masking = config.data_loader, config.masking
    return footprint.largest_step_tokens(
        config.model,
        patches_per_side=loader.patches_per_side,
        token_budget=loader.token_budget,
        max_timesteps=config.dataset.max_timesteps,
        encode_ratio=masking.encode_ratio,
        decode_ratio=masking.decode_ratio,
        modality_names=config.dataset.training_modalities,
    )


def _row(label: str, estimate: footprint.MemoryEstimate) -> str:
    cells = (
        estimate.parameters,
        estimate.gradients,
        estimate.optimizer,
        estimate.copies,
        estimate.activations,
        estimate.total,
    )
    return f"  {label:<13}" + "".join(f"{value / _GB:>12.2f}" for value in cells)


def _alternatives(setup: footprint.Setup, procs_per_node: int) -> dict[str, footprint.Setup]:
    """The run's setup under ddp and fsdp, and hsdp (one node a shard group) across nodes."""
    out = {name: setup.with_parallelism(name) for name in ("ddp", "fsdp")}
    if setup.parallelism == "hsdp":
        out["hsdp"] = setup
    elif setup.world_size > procs_per_node:
        out["hsdp"] = setup.with_parallelism("hsdp", procs_per_node)
    return out


def _smaller_microbatches(setup: footprint.Setup) -> list[int]:
    """Microbatch sizes below the run's that divide its per-GPU batch, largest first."""
    return [
        size
        for size in range(setup.microbatch_size - 1, 0, -1)
        if setup.rank_batch_size % size == 0
    ]


def summary(config: Any, gpu: str | None = None) -> str:
    """One line for a study's table: the run's per-GPU total and the verdict on `gpu`."""
    accelerator = accelerators.get(gpu or DEFAULT_GPU)
    setup = _setup(config)
    shape, tokens = footprint.ModelShape.of(config.model), _tokens(config)
    setups = _alternatives(setup, config.launch.procs_per_node)
    estimates = {name: footprint.estimate_memory(shape, tokens, s) for name, s in setups.items()}
    verdict = footprint.verdict(estimates, accelerator.memory_bytes, setup.microbatch_size)
    run = estimates[setup.parallelism]
    return (
        f"{run.total / _GB:.1f} GB per GPU ({setup.parallelism}, microbatch "
        f"{setup.microbatch_size}): {verdict} on {accelerator.name}"
    )


def estimate_lines(
    config: Any, gpu: str | None = None, mfu: float = footprint.DEFAULT_MFU
) -> list[str]:
    """The dry_run section's lines for the resolved experiment `config` on `gpu` (a name of
    models/train/accelerators.py; None: H100)."""
    accelerator = accelerators.get(gpu or DEFAULT_GPU)
    shape = footprint.ModelShape.of(config.model)
    tokens = _tokens(config)
    setup = _setup(config)
    procs_per_node = config.launch.procs_per_node
    setups = _alternatives(setup, procs_per_node)
    estimates = {name: footprint.estimate_memory(shape, tokens, s) for name, s in setups.items()}
    smaller = {
        size: {
            name: footprint.estimate_memory(
                shape, tokens, dataclasses.replace(s, microbatch_size=size)
            )
            for name, s in setups.items()
        }
        for size in _smaller_microbatches(setup)
    }
    memory_gb = accelerator.memory_bytes / _GB
    lines = [
        f"  {accelerator.name} ({memory_gb:.0f} GB), {config.launch.num_nodes} node(s) x "
        f"{procs_per_node} GPU(s); microbatch {setup.microbatch_size} of "
        f"{setup.rank_batch_size} samples per GPU; {'bf16 autocast' if setup.bf16 else 'fp32'}",
        f"  largest step: {sum(t.positions for t in tokens):.0f} tokens per sample "
        f"(token budget {config.data_loader.token_budget}), "
        f"{sum(t.encoder for t in tokens):.0f} encoded, "
        f"{sum(t.decoder for t in tokens):.0f} decoded, two views",
        f"  {'GB per GPU':<13}"
        + "".join(
            f"{name:>12}"
            for name in ("params", "grads", "optimizer", "copies", "activations", "total")
        ),
    ]
    for name, estimate in estimates.items():
        label = f"{name} (run)" if name == setup.parallelism else name
        lines.append(_row(label, estimate))
    if setup.world_size == 1:
        lines.append("  (one process runs the bare model, so every parallelism is the same)")
    verdict = footprint.verdict(estimates, accelerator.memory_bytes, setup.microbatch_size, smaller)
    lines.append(f"  verdict: {verdict} on {accelerator.name}")
    seconds = footprint.step_seconds(
        shape,
        tokens,
        config.data_loader.global_batch_size,
        setup.world_size,
        accelerator,
        bf16=setup.bf16,
        mfu=mfu,
    )
    flops = footprint.flops_per_sample(shape, tokens) * config.data_loader.global_batch_size
    peak = accelerator.peak_bf16_flops if setup.bf16 else accelerator.peak_fp32_flops
    lines.append(
        f"  step: {seconds:.2f} s at the largest step ({flops:.3g} FLOPs over "
        f"{setup.world_size} GPU(s) at {mfu:.0%} MFU of {peak / 1e12:.0f} TFLOP/s)"
    )
    lines.append(
        f"  total = peak x {1 + footprint.ALLOCATOR_MARGIN:.2f} (allocator) + "
        f"{footprint.RESERVED_BYTES / 2**30:.0f} GiB (CUDA context, NCCL): "
        "models/train/footprint.py"
    )
    return lines
