"""Sharded data parallelism: PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`).

`ddp` (DistributedDataParallel, in the train module) keeps a full copy of parameters,
gradients and AdamW state on every rank. `fsdp` shards all three over the ranks: each rank
holds 1/world_size of every parameter (a DTensor sharded on dim 0), all-gathers a block's
parameters just before the block runs and frees them after, and reduce-scatters its
gradients in the backward. `hsdp` shards within groups of `shard_degree` ranks (normally
one node, where the links are fast) and replicates across the groups (gradients
all-reduced between them): a 2-D mesh (replicate, shard).

The wrapping unit is one transformer block: each block is all-gathered on its own, so at
most a block or two of full parameters live at once besides the root's. The root (the
whole model) then owns what is left: patch embeddings, encodings, norms, the pooled
projection, the predictor's input/output layers and the frozen target's copy of the patch
embeddings. The functions here take no config; the train module picks what to call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import (
    FSDPModule,
    MixedPrecisionPolicy,
    fully_shard,
    register_fsdp_forward_method,
)

PARALLELISM_CHOICES = ("ddp", "fsdp", "hsdp")
SHARDED_CHOICES = ("fsdp", "hsdp")
BLOCK_CONTAINER_NAME = "blocks"
"""Every `nn.ModuleList` attribute of this name holds transformer blocks (the encoder's, the
predictor's and, for the EMA target, the target encoder's)."""


def default_shard_degree(world_size: int, environ: Mapping[str, str] | None = None) -> int:
    """Ranks per HSDP shard group when the config leaves it unset: the ranks of one node
    (torchrun's LOCAL_WORLD_SIZE), so parameter all-gathers stay on the node's links;
    `world_size` (plain FSDP) when torchrun did not set it."""
    environ = os.environ if environ is None else environ
    value = environ.get("LOCAL_WORLD_SIZE")
    if value is None:
        return world_size
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"LOCAL_WORLD_SIZE must be an integer, got {value!r}") from error


def check_shard_degree(shard_degree: int, world_size: int) -> None:
    """Raises unless `shard_degree` ranks per group tile `world_size` ranks exactly."""
    if shard_degree < 1 or world_size % shard_degree:
        raise ValueError(
            f"train_module.shard_degree ({shard_degree}) must be a positive divisor of the "
            f"world size ({world_size}); set it to the ranks per node, or use "
            "parallelism=fsdp to shard over all ranks"
        )


def build_mesh(
    parallelism: str, world_size: int, device_type: str, shard_degree: int | None = None
) -> DeviceMesh:
    """The device mesh of `parallelism` over `world_size` ranks (the default process group).

    fsdp: 1-D ("shard",) over all ranks. hsdp: 2-D ("replicate", "shard") of shape
    (world_size / shard_degree, shard_degree); rank r is in shard group r // shard_degree.
    """
    if parallelism == "fsdp":
        return init_device_mesh(device_type, (world_size,), mesh_dim_names=("shard",))
    if parallelism == "hsdp":
        degree = default_shard_degree(world_size) if shard_degree is None else shard_degree
        check_shard_degree(degree, world_size)
        return init_device_mesh(
            device_type,
            (world_size // degree, degree),
            mesh_dim_names=("replicate", "shard"),
        )
    raise ValueError(f"no device mesh for parallelism {parallelism!r}; one of {SHARDED_CHOICES}")


def mixed_precision_policy(
    device: torch.device, autocast_dtype: torch.dtype | None
) -> MixedPrecisionPolicy:
    """bf16 parameters with fp32 gradient reduction on GPU when the step autocasts to bf16;
    full fp32 otherwise (CPU: gloo and the CPU kernels gain nothing from bf16 copies).

    Summing bf16 gradients over many ranks loses low bits (8 mantissa bits), hence the fp32
    reduction. Forward inputs are not cast: the samples carry MISSING_VALUE (-99999), which
    bf16 cannot hold exactly, and autocast already runs the matmuls in bf16.
    """
    if device.type == "cuda" and autocast_dtype == torch.bfloat16:
        return MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False
        )
    return MixedPrecisionPolicy(cast_forward_inputs=False)


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks `apply_fsdp` wraps one by one, in module order (BLOCK_CONTAINER_NAME)."""
    blocks: list[nn.Module] = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == BLOCK_CONTAINER_NAME and isinstance(module, nn.ModuleList):
            blocks.extend(module)
    return blocks


def apply_fsdp(
    model: nn.Module,
    mesh: DeviceMesh,
    mp_policy: MixedPrecisionPolicy,
    *,
    forward_methods: Sequence[str] = (),
    reshard_after_forward: bool | None = None,
) -> FSDPModule:
    """Shards `model` in place: each transformer block, then the root; returns `model`.

    Args:
        model: on its training device; its parameters become sharded DTensors, so build
            the optimizer after this call.
        mesh: from `build_mesh` (1-D: FSDP; 2-D: HSDP).
        mp_policy: from `mixed_precision_policy`.
        forward_methods: methods of `model` other than `forward` that the caller calls
            directly and that read the root's parameters. FSDP all-gathers the root's
            parameters only in the root's pre-forward hook; a method registered here runs
            inside the same hooks, so it sees full parameters (unregistered, it would read
            the 1/world_size shards, or rely on the root's parameters happening to be still
            gathered from an earlier forward).
        reshard_after_forward: True frees each unit's gathered parameters after its
            forward (ZeRO-3; the backward gathers them again); False keeps them until the
            backward (ZeRO-2: one all-gather less per unit, more memory). None (FSDP's
            auto) is True for the blocks and False for the root: the root's parameters
            are needed again at once by the second view's forward, by `target_tokens` and
            by the backward, and are small (patch embeddings, norms, input/output layers).
    """
    for block in transformer_blocks(model):
        fully_shard(
            block, mesh=mesh, mp_policy=mp_policy, reshard_after_forward=reshard_after_forward
        )
    fully_shard(model, mesh=mesh, mp_policy=mp_policy, reshard_after_forward=reshard_after_forward)
    for name in forward_methods:
        if not callable(getattr(model, name, None)):
            raise ValueError(f"{type(model).__name__} has no method {name!r} to register")
        register_fsdp_forward_method(model, name)
    assert isinstance(model, FSDPModule)  # fully_shard swapped its class in place
    return model


def reshard_all(model: nn.Module) -> None:
    """Every FSDP unit of `model` back to its shards (a no-op for units already sharded).

    Code that reads parameters outside a forward (e.g. an EMA update over two modules) sees
    them all as shards after this; a unit left gathered (the root after a forward with no
    backward yet) would otherwise mix full tensors with DTensor shards.
    """
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
