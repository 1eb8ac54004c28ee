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

Data parallelism: the model is wrapped, together with its two-view forward, in one
DistributedDataParallel module. DDP's reducer accepts one forward per backward, and a
step has two model calls (view a and view b) per backward, so both run inside a single
DDP forward. Gradients are averaged across ranks only on the last microbatch (`no_sync`
on the others). Reported losses are the mean over ranks, so 2 ranks with microbatch m
report what 1 rank reports for the same global batch split into microbatches of m.

A non-finite loss part or gradient norm stops training with `NonFiniteLossError` before
the optimizer step, so the parameters stay those of the last good step and no checkpoint
is written for the bad one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from models.config.configurable import Configurable
from models.losses.info_nce import InfoNCELossConfig
from models.losses.patch_discrimination import (
    MaskedNegativesPatchDiscriminationLossConfig,
    ModalityPatchDiscriminationLossConfig,
)
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue
from models.train import distributed
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
        self.model = model.to(device)
        self.global_batch_size = global_batch_size
        self.rank_batch_size = config.rank_batch_size(global_batch_size, env.world_size)
        self.optimizer = config.optimizer.build(self.model)
        self.scheduler = config.scheduler.build(self.optimizer, max_steps)
        self.max_steps = max_steps
        self.patch_loss = config.patch_loss.build()
        self.contrastive = None if config.contrastive is None else config.contrastive.build()
        self.autocast_dtype = config.autocast_dtype(device)
        self.tokens_seen = 0
        forward: nn.Module = _TwoViewForward(self.model)
        if distributed.is_active():
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
        return contextlib.nullcontext()

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
        """Global gradient norm before clipping (DDP has averaged the gradients)."""
        max_norm = self.config.max_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(
            self._trainable, max_norm if max_norm is not None else math.inf, foreach=True
        )
        return float(norm)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optim": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "tokens_seen": self.tokens_seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optim"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.tokens_seen = int(state["tokens_seen"])
