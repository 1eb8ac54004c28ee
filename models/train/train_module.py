"""One optimizer step of contrastive latent MIM (OlmoEarth's training step).

For each microbatch of this rank's batch, and for each of the two masked views:

    decoded, pooled = model(view, patch_size)                 (under autocast)
    target          = model.target_tokens(view, patch_size)   (no_grad)
    patch_disc      = patch-discrimination(decoded, target)   (fp32, autocast off)

    loss = (patch_disc_a + patch_disc_b) / 2 + infonce(pooled_a, pooled_b)
    (loss / num_microbatches).backward()

then clip the global gradient norm (1.0), take an AdamW step, advance the schedule and
update the target encoder (a no-op for the frozen projection target of the recipe).

The losses run outside autocast: the reference measured that a bf16 matmul inside
autocast changed the loss values. `infonce` in the metrics is the weighted term that
enters the loss, so `loss == patch_disc + infonce`.

Data parallelism (`parallelism`): with "ddp" the model is wrapped, together with its
two-view forward, in one DistributedDataParallel module. DDP's reducer accepts one forward
per backward, and a step has two model calls (view a and view b) per backward, so both run
inside a single DDP forward. Gradients are averaged across ranks only on the last
microbatch (`no_sync` on the others). With "fsdp" / "hsdp" the model is sharded in place
by FSDP2 (models/train/parallel.py: per transformer block, then the root), which accepts
several forwards per backward, so the two views are two calls of the root; gradient sync
is off on all but the last microbatch (`set_requires_gradient_sync`), the analogue of
no_sync. Gradients are the same mean over ranks in all three, so losses and gradient norms
agree (fsdp_test checks it). Reported losses are the mean over ranks, so 2 ranks with
microbatch m report what 1 rank reports for the same global batch split into microbatches
of m. A single process runs the bare model whatever the choice.

A non-finite loss part or gradient norm stops training with `NonFiniteLossError` before
the optimizer step, so the parameters stay those of the last good step and no checkpoint
is written for the bad one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from models.config.configurable import Configurable
from models.losses.info_nce import InfoNCELossConfig
from models.losses.patch_discrimination import (
    MaskedNegativesPatchDiscriminationLossConfig,
    ModalityPatchDiscriminationLossConfig,
)
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue
from models.train import distributed, parallel
from models.train.optim import AdamWConfig, CosineWithWarmupConfig

AUTOCAST_CHOICES = ("auto", "bfloat16", "none")
LOSS_PARTS = ("loss", "patch_disc_a", "patch_disc_b", "infonce")


class TwoViewBatch(Protocol):
    """What the data loader yields (models.data `Batch`)."""

    patch_size: int
    view_a: MaskedSample
    view_b: MaskedSample


class NonFiniteLossError(FloatingPointError):
    """A loss part or the gradient norm is NaN or infinite; training must stop."""

    def __init__(self, step: int, values: dict[str, float]) -> None:
        self.step = step
        self.values = dict(values)
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        # Name the culprit: the total is non-finite whenever a part is, so it is named
        # only when no part is (or when it is the gradient norm that overflowed).
        culprits = [name for name in bad if name != "loss"] or bad
        self.parts = culprits
        shown = ", ".join(f"{name}={value:.6g}" for name, value in values.items())
        super().__init__(
            f"non-finite {' and '.join(culprits)} at step {step} ({shown}). Training stopped "
            "before the optimizer step; no checkpoint was written for this step, the last "
            "checkpoint before it is intact."
        )


@dataclasses.dataclass(kw_only=True)
class TrainModuleConfig(Configurable["TrainModule"]):
    """The optimisation recipe of one step.

    Attributes:
        optimizer: AdamW settings (recipe: lr 1e-4, weight decay 0.02).
        scheduler: warmup + cosine schedule (recipe: 8000 warmup steps, alpha_f 0.1).
        microbatch_size: samples per forward/backward on one rank (recipe: 32); a rank's
            share of the global batch must be a multiple of it. InfoNCE negatives come
            from one microbatch only.
        patch_loss: token loss (v1: modality patch discrimination, tau 0.1; v1.1: the
            masked-negatives variant).
        contrastive: InfoNCE between the two views' pooled vectors (v1 weight 0.1); None
            turns it off.
        max_grad_norm: clip the global gradient norm to this; None: no clipping.
        autocast: "auto" = bf16 autocast on GPU and none on CPU; "bfloat16"; "none".
        find_unused_parameters: DDP option; needed when some parameters get no gradient
            in a step (e.g. the patch embedding of a modality absent from the batch).
            fsdp/hsdp have no such option: FSDP reduces the gradients that exist, so every
            rank must run the same modules in a step. It does here: every sample carries
            every training modality (absent ones filled, MISSING), so each embedding runs
            (and gets a zero gradient when all its tokens are masked).
        parallelism: one of PARALLELISM_CHOICES. "ddp": full replicas, gradients
            all-reduced (DistributedDataParallel). "fsdp": parameters, gradients and AdamW
            state sharded over all ranks (FSDP2 fully_shard per transformer block, then the
            whole model). "hsdp": sharded within groups of `shard_degree` ranks, replicated
            across groups. Same losses and gradients in all three; with bf16 autocast on
            GPU, fsdp/hsdp keep bf16 parameter copies for compute and reduce gradients in
            fp32. One process runs the bare model whatever the choice.
        shard_degree: ranks per HSDP shard group (hsdp only); None: the ranks of one node
            (torchrun's LOCAL_WORLD_SIZE). Must divide the world size.

    The global batch (samples per optimizer step over all ranks) is the data loader's
    `global_batch_size`, its one field: `build` receives it. Files written before held a
    copy here, which `upgrade_retired_fields` drops (pretraining refused to start unless
    the two were equal, so no run's setup is lost).
    """

    optimizer: AdamWConfig = dataclasses.field(default_factory=AdamWConfig)
    scheduler: CosineWithWarmupConfig = dataclasses.field(default_factory=CosineWithWarmupConfig)
    microbatch_size: int = 32
    patch_loss: (
        ModalityPatchDiscriminationLossConfig | MaskedNegativesPatchDiscriminationLossConfig
    ) = dataclasses.field(default_factory=ModalityPatchDiscriminationLossConfig)
    contrastive: InfoNCELossConfig | None = dataclasses.field(
        default_factory=lambda: InfoNCELossConfig(tau=0.1, weight=0.1)
    )
    max_grad_norm: float | None = 1.0
    autocast: str = "auto"
    find_unused_parameters: bool = True
    parallelism: str = "ddp"
    shard_degree: int | None = None

    def __post_init__(self) -> None:
        if self.microbatch_size < 1:
            raise ValueError(
                f"TrainModuleConfig.microbatch_size must be >= 1, got {self.microbatch_size}"
            )
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(
                f"TrainModuleConfig.max_grad_norm must be > 0 or None, got {self.max_grad_norm}"
            )
        if self.autocast not in AUTOCAST_CHOICES:
            raise ValueError(
                f"TrainModuleConfig.autocast must be one of {AUTOCAST_CHOICES}, got "
                f"{self.autocast!r}"
            )
        if self.parallelism not in parallel.PARALLELISM_CHOICES:
            raise ValueError(
                f"TrainModuleConfig.parallelism must be one of {parallel.PARALLELISM_CHOICES}, "
                f"got {self.parallelism!r}"
            )
        if self.shard_degree is not None:
            if self.parallelism != "hsdp":
                raise ValueError(
                    f"TrainModuleConfig.shard_degree ({self.shard_degree}) applies only to "
                    f"parallelism='hsdp', got parallelism={self.parallelism!r}; unset it or "
                    "choose hsdp"
                )
            if self.shard_degree < 1:
                raise ValueError(
                    f"TrainModuleConfig.shard_degree must be >= 1 or None, got {self.shard_degree}"
                )

    @classmethod
    def upgrade_retired_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Plain data of an older file in today's fields (models/config's engine calls this):
        the retired copy of the global batch goes (the class docstring says why)."""
        return {key: value for key, value in data.items() if key != "global_batch_size"}

    def rank_batch_size(self, global_batch_size: int, world_size: int) -> int:
        """Samples per step on one rank; checks the global batch (the data loader's) is
        positive and splits evenly into microbatches on every rank."""
        if global_batch_size < 1 or global_batch_size % (self.microbatch_size * world_size):
            raise ValueError(
                f"the global batch ({global_batch_size}, data_loader.global_batch_size) must "
                f"be a positive multiple of train_module.microbatch_size "
                f"({self.microbatch_size}) x world size ({world_size})"
            )
        return global_batch_size // world_size

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        if self.autocast == "bfloat16" or (self.autocast == "auto" and device.type == "cuda"):
            return torch.bfloat16
        return None

    def build(
        self,
        model: nn.Module,
        max_steps: int,
        device: torch.device | None = None,
        env: distributed.DistributedEnv | None = None,
        *,
        global_batch_size: int,
    ) -> ContrastiveLatentMIMTrainModule:
        """The train module for `model` (moved to `device`), scheduled over `max_steps`,
        stepping on batches of `global_batch_size` samples over all ranks (the loader's)."""
        env = env or distributed.DistributedEnv()
        self.rank_batch_size(global_batch_size, env.world_size)
        if self.parallelism == "hsdp" and env.is_distributed:
            degree = self.shard_degree or parallel.default_shard_degree(env.world_size)
            parallel.check_shard_degree(degree, env.world_size)
        return ContrastiveLatentMIMTrainModule(
            self, model, max_steps, device or torch.device("cpu"), env, global_batch_size
        )


class _TwoViewForward(nn.Module):
    """Runs the model on both views in one call (one DDP forward per backward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, view_a: MaskedSample, view_b: MaskedSample, patch_size: int
    ) -> tuple[Any, Any]:
        return self.model(view_a, patch_size), self.model(view_b, patch_size)


def split_microbatches(sample: MaskedSample, size: int) -> list[MaskedSample]:
    """`sample` cut along the batch axis into consecutive pieces of `size` samples."""
    pieces = []
    for start in range(0, sample.batch_size, size):
        stop = start + size
        pieces.append(
            MaskedSample(
                data={name: value[start:stop] for name, value in sample.data.items()},
                masks={name: mask[start:stop] for name, mask in sample.masks.items()},
                timestamps=sample.timestamps[start:stop],
            )
        )
    return pieces


def count_tokens(sample: MaskedSample, patch_size: int) -> int:
    """Tokens that hold data: (patch, timestep, band set) entries whose mask is not MISSING.

    Masks are constant inside a patch, so one pixel per patch (the top-left) counts it.
    """
    total = 0
    for name, mask in sample.masks.items():
        if modalities.get(name).is_spatial:
            mask = mask[:, ::patch_size, ::patch_size]
        total += int((mask != MaskValue.MISSING).sum())
    return total


class ContrastiveLatentMIMTrainModule:
    """Owns the model, optimizer and schedule; `train_batch` runs one optimizer step."""

    def __init__(
        self,
        config: TrainModuleConfig,
        model: nn.Module,
        max_steps: int,
        device: torch.device,
        env: distributed.DistributedEnv,
        global_batch_size: int,
    ) -> None:
        self.config = config
        self.device = device
        self.env = env
        self.sharded = config.parallelism in parallel.SHARDED_CHOICES and distributed.is_active()
        # Rank 0 keeps an unsharded copy in CPU memory for `full_model` (the in-loop
        # evaluation runs the encoder on rank 0 alone, which a sharded model cannot: each
        # block's all-gather needs every rank); 4 bytes a parameter, 0.5 GB for base.
        self._full_copy = copy.deepcopy(model).cpu() if self.sharded and env.is_main else None
        self.model = model.to(device)
        self.global_batch_size = global_batch_size
        self.rank_batch_size = config.rank_batch_size(global_batch_size, env.world_size)
        self.autocast_dtype = config.autocast_dtype(device)
        # Sharded in place before the optimizer is built: AdamW must hold the sharded
        # parameters (its state is then sharded too).
        if self.sharded:
            mesh = parallel.build_mesh(
                config.parallelism, env.world_size, device.type, config.shard_degree
            )
            parallel.apply_fsdp(
                self.model,
                mesh,
                parallel.mixed_precision_policy(device, self.autocast_dtype),
                # target_tokens reads the frozen target's patch embeddings (root
                # parameters) outside `forward`: parallel.apply_fsdp says why it must be
                # registered.
                forward_methods=("target_tokens",),
            )
        self.optimizer = config.optimizer.build(self.model)
        self.scheduler = config.scheduler.build(self.optimizer, max_steps)
        self.max_steps = max_steps
        self.patch_loss = config.patch_loss.build()
        self.contrastive = None if config.contrastive is None else config.contrastive.build()
        self.tokens_seen = 0
        forward: nn.Module = _TwoViewForward(self.model)
        if distributed.is_active() and not self.sharded:
            forward = DistributedDataParallel(
                forward,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=config.find_unused_parameters,
            )
        self.forward = forward

    @property
    def _trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _sync_context(self, last: bool) -> contextlib.AbstractContextManager:
        if isinstance(self.forward, DistributedDataParallel) and not last:
            return self.forward.no_sync()
        if self.sharded and not last:
            return self._fsdp_no_sync()
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _fsdp_no_sync(self) -> Any:
        """FSDP's no_sync: gradients accumulate unsharded and unreduced on each rank until a
        backward with sync on (the last microbatch's) reduces the sum."""
        self.model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.model.set_requires_gradient_sync(True)

    def _microbatch_losses(
        self, view_a: MaskedSample, view_b: MaskedSample, patch_size: int
    ) -> torch.Tensor:
        """[loss, patch_disc_a, patch_disc_b, infonce] of one microbatch (loss has grad)."""
        with self._autocast():
            out_a, out_b = self.forward(view_a, view_b, patch_size)
            with torch.no_grad():
                target_a = self.model.target_tokens(view_a, patch_size)
                target_b = self.model.target_tokens(view_b, patch_size)
        with torch.autocast(self.device.type, enabled=False):
            patch_a = self.patch_loss(out_a.decoded, target_a).to(self.device)
            patch_b = self.patch_loss(out_b.decoded, target_b).to(self.device)
            loss = (patch_a + patch_b) / 2
            if self.contrastive is not None:
                contrast = self.contrastive(out_a.pooled, out_b.pooled)
                loss = loss + contrast
            else:
                contrast = torch.zeros((), device=self.device)
        return torch.stack([loss, patch_a, patch_b, contrast])

    def train_batch(self, batch: TwoViewBatch, step: int) -> dict[str, float]:
        """One optimizer step on this rank's batch; returns global metrics.

        Args:
            batch: this rank's `rank_batch_size` samples, two views.
            step: the 1-based number of this optimizer step (for errors and the target
                update).

        Returns:
            loss, patch_disc (mean of the views), patch_disc_a, patch_disc_b, infonce
            (weighted), grad_norm (before clipping), lr (of this step), samples and tokens
            (this step, all ranks), tokens_seen (since the start of the run).
        """
        view_a, view_b, patch_size = batch.view_a, batch.view_b, int(batch.patch_size)
        if view_a.batch_size != self.rank_batch_size or view_b.batch_size != view_a.batch_size:
            raise ValueError(
                f"step {step}: got views of {view_a.batch_size} and {view_b.batch_size} "
                f"samples; this rank needs {self.rank_batch_size} (global batch "
                f"{self.global_batch_size} over {self.env.world_size} ranks)"
            )
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        pieces_a = split_microbatches(view_a, self.config.microbatch_size)
        pieces_b = split_microbatches(view_b, self.config.microbatch_size)
        count = len(pieces_a)
        totals = torch.zeros(len(LOSS_PARTS), dtype=torch.float64, device=self.device)
        for index, (piece_a, piece_b) in enumerate(zip(pieces_a, pieces_b, strict=True)):
            piece_a = piece_a.to(self.device, non_blocking=True)
            piece_b = piece_b.to(self.device, non_blocking=True)
            with self._sync_context(last=index == count - 1):
                losses = self._microbatch_losses(piece_a, piece_b, patch_size)
                (losses[0] / count).backward()
            totals += losses.detach().to(torch.float64) / count

        means = distributed.all_reduce_mean(totals).tolist()
        values = dict(zip(LOSS_PARTS, means, strict=True))
        if not all(math.isfinite(value) for value in values.values()):
            raise NonFiniteLossError(step, values)
        values["grad_norm"] = self._clip_gradients()
        if not math.isfinite(values["grad_norm"]):
            raise NonFiniteLossError(step, values)

        lr = self.scheduler.lr
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.sharded:
            # The EMA update reads encoder and target parameters outside a forward: as
            # shards on every unit (the backward has resharded them; this makes it sure).
            parallel.reshard_all(self.model)
        self.model.update_target(step, self.max_steps)

        # On the device: NCCL reduces only GPU tensors.
        local_tokens = torch.tensor(
            [count_tokens(view_a, patch_size)], dtype=torch.float64, device=self.device
        )
        tokens = distributed.all_reduce_sum(local_tokens).item()
        self.tokens_seen += int(tokens)
        return {
            **values,
            "patch_disc": (values["patch_disc_a"] + values["patch_disc_b"]) / 2,
            "lr": lr,
            "samples": float(self.global_batch_size),
            "tokens": float(tokens),
            "tokens_seen": float(self.tokens_seen),
            "patch_size": float(patch_size),
        }

    def _clip_gradients(self) -> float:
        """Global gradient norm before clipping (DDP has averaged the gradients; FSDP has
        reduce-scattered the same mean, so the norm is the same)."""
        max_norm = self.config.max_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(
            self._trainable, max_norm if max_norm is not None else math.inf, foreach=True
        )
        if isinstance(norm, DTensor):
            # Sharded gradients give a DTensor norm; full_tensor() is the norm over all
            # shards, identical on every rank.
            norm = norm.full_tensor()
        return float(norm)

    @contextlib.contextmanager
    def full_model(self) -> Iterator[nn.Module | None]:
        """The model with full parameters, for code that runs it on rank 0 alone (the
        in-loop evaluation); `self.model` itself under ddp or in one process.

        Under fsdp/hsdp this gathers the weights (a collective: enter it on every rank) into
        rank 0's unsharded copy, on the training device while inside, back in CPU memory
        after; other ranks get None. Changes to the copy do not reach training.
        """
        if not self.sharded:
            yield self.model
            return
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(self.model, options=options)
        if self._full_copy is None:
            yield None
            return
        self._full_copy.load_state_dict(state)
        try:
            yield self._full_copy.to(self.device)
        finally:
            self._full_copy.cpu()

    def state_dict(self, *, model_and_optimizer: bool = True) -> dict[str, Any]:
        """Model, optimizer, schedule and token count. Collective under fsdp/hsdp: call on
        every rank. The sharded model and optimizer are gathered into full tensors on rank
        0's CPU (other ranks get empty dicts), keyed like the unsharded model's, so one
        file of rank 0 holds them; the optimizer state is keyed by parameter name.

        `model_and_optimizer=False`: the schedule and token count alone, nothing gathered
        (a sharded checkpoint writes `self.model` and `self.optimizer` itself with
        torch.distributed.checkpoint: models/train/checkpoint.py's `save_sharded`)."""
        rest = {"scheduler": self.scheduler.state_dict(), "tokens_seen": self.tokens_seen}
        if not model_and_optimizer:
            return rest
        if self.sharded:
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            model_state = get_model_state_dict(self.model, options=options)
            optim_state = get_optimizer_state_dict(self.model, self.optimizer, options=options)
        else:
            model_state = self.model.state_dict()
            optim_state = self.optimizer.state_dict()
        return {"model": model_state, "optim": optim_state, **rest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores `state_dict()`'s output; under fsdp/hsdp every rank passes the full
        state and keeps its own shards. A state without "model" and "optim" (that of
        `state_dict(model_and_optimizer=False)`) restores the schedule and token count alone."""
        if "model" in state or "optim" in state:
            if self.sharded:
                options = StateDictOptions(full_state_dict=True)
                # Copies of the containers: the setters put this rank's shards into the
                # dicts they are given, which must not change the caller's state.
                model_state = _copy_containers(state["model"])
                optim_state = _copy_containers(state["optim"])
                set_model_state_dict(self.model, model_state, options=options)
                set_optimizer_state_dict(self.model, self.optimizer, optim_state, options=options)
            else:
                self.model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optim"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.tokens_seen = int(state["tokens_seen"])


def _copy_containers(value: Any) -> Any:
    """`value` with its dicts and lists copied, their tensors and other leaves shared."""
    if isinstance(value, dict):
        return {key: _copy_containers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_containers(item) for item in value]
    return value
