"""Measured memory of one training step, by category, to check `footprint`'s estimate.

`measure_train_step` runs what `ContrastiveLatentMIMTrainModule.train_batch` runs for one
microbatch on one process (the model on both views, the frozen target's tokens, the patch
discrimination and InfoNCE losses, backward, gradient clipping, an AdamW step) under
`LiveStorageTracker`, a dispatch mode that follows every tensor storage an operator creates
until it is freed. Sizes are storage bytes, so on CPU the numbers are exact and repeatable
(no allocator rounding). The step is written out here rather than calling the train module
so that it can stop between the phases and read the live memory.

PyTorch's own `torch.distributed._tools.mem_tracker.MemTracker` does the same with
categories, but it registers a gradient hook on every parameter and raises on a frozen one
(the frozen target and the decode-only patch embeddings here), hence this small tracker.

`python -m models.train.footprint_measure base_shallow_decoder 2 32 4 2` prints the check for
any size and view shape (measured there: every category within 2%).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_iter

from models.latent_mim.latent_mim import LatentMIMConfig
from models.modalities.samples import MaskedSample
from models.nn.testing import random_masked_sample
from models.train import footprint
from models.train.train_module import TrainModuleConfig


class LiveStorageTracker(TorchDispatchMode):
    """Bytes of the tensor storages alive now (`live`) and at most so far (`peak`).

    Every tensor an operator returns while the mode is active is counted once per storage
    (views share their base's) until Python frees the storage; `add` counts tensors that
    existed before (parameters, inputs).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, tuple[weakref.ref, int]] = {}

    def add(self, tensors: Iterable[object]) -> None:
        for value in tensors:
            if isinstance(value, torch.Tensor):
                self._count(value)

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        size = storage.nbytes()
        key = storage.data_ptr()
        if size == 0 or key in self._sizes:
            return
        self._sizes[key] = (weakref.ref(storage, lambda _, key=key: self._free(key)), size)
        self.live += size
        self.peak = max(self.peak, self.live)

    def _free(self, key: int) -> None:
        entry = self._sizes.pop(key, None)
        if entry is not None:
            self.live -= entry[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        self.add(tree_iter(out))
        return out


@dataclasses.dataclass(frozen=True)
class MeasuredStep:
    """Bytes live at each phase of one step (one process, one microbatch).

    Attributes:
        parameters: every parameter (trainable and frozen).
        activations: what the forward of both views, the target tokens and the losses hold
            when the loss is ready (live bytes then, less what was live before forward).
        gradients: the gradients after backward.
        optimizer: AdamW's state after the step.
        peak: the most bytes live at once during the step, everything included (parameters,
            buffers and the two views too).
    """

    parameters: int
    activations: int
    gradients: int
    optimizer: int
    peak: int

    CATEGORIES = ("parameters", "gradients", "optimizer", "activations", "peak")

    def errors(self, estimate: footprint.MemoryEstimate) -> dict[str, str]:
        """Per category: the estimate's relative error against this measurement, with both
        sizes in MiB, as 'estimated X MiB, measured Y MiB (+Z%)'."""
        out = {}
        for field in self.CATEGORIES:
            expected, actual = getattr(estimate, field), getattr(self, field)
            out[field] = (
                f"estimated {expected / 2**20:.1f} MiB, measured {actual / 2**20:.1f} MiB "
                f"({(expected - actual) / actual:+.1%})"
            )
        return out

    def worst_error(self, estimate: footprint.MemoryEstimate) -> float:
        """The largest |estimate - measured| / measured over the categories."""
        return max(
            abs(getattr(estimate, field) - getattr(self, field)) / getattr(self, field)
            for field in self.CATEGORIES
        )


def _bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    return sum(t.untyped_storage().nbytes() for t in tensors if t is not None)


def measure_train_step(
    model: nn.Module,
    train_module: TrainModuleConfig,
    view_a: MaskedSample,
    view_b: MaskedSample,
    patch_size: int,
) -> MeasuredStep:
    """One training step of `model` on the two views, measured (see the module docstring).

    The model must be on the CPU, as the views; the train module config supplies the losses,
    the AdamW settings and the clipping norm (autocast is not applied: this measures the
    fp32 step a CPU runs).
    """
    model.train()
    optimizer = train_module.optimizer.build(model)
    patch_loss = train_module.patch_loss.build()
    contrastive = None if train_module.contrastive is None else train_module.contrastive.build()
    trainable = [p for p in model.parameters() if p.requires_grad]
    tracker = LiveStorageTracker()
    tracker.add(model.parameters())
    tracker.add(model.buffers())
    for view in (view_a, view_b):
        tracker.add([*view.data.values(), *view.masks.values(), view.timestamps])
    with tracker:
        before = tracker.live
        out_a, out_b = model(view_a, patch_size), model(view_b, patch_size)
        with torch.no_grad():
            target_a = model.target_tokens(view_a, patch_size)
            target_b = model.target_tokens(view_b, patch_size)
        loss = (patch_loss(out_a.decoded, target_a) + patch_loss(out_b.decoded, target_b)) / 2
        if contrastive is not None:
            loss = loss + contrastive(out_a.pooled, out_b.pooled)
        activations = tracker.live - before
        del out_a, out_b, target_a, target_b
        loss.backward()
        del loss
        gradients = _bytes(p.grad for p in trainable)
        if train_module.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, train_module.max_grad_norm, foreach=True)
        optimizer.step()
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return MeasuredStep(
        parameters=_bytes(model.parameters()),
        activations=activations,
        gradients=gradients,
        optimizer=_bytes(state),
        peak=tracker.peak,
    )


def measure_and_estimate(
    size: str, batch: int, image_size: int, patch_size: int, timesteps: int
) -> tuple[MeasuredStep, footprint.MemoryEstimate]:
    """One fp32 CPU step of the v1 model at `size` on two random views (every modality,
    `image_size` pixels a side, half the tokens encoded and half decoded), measured, and
    `footprint`'s estimate for the same views' tokens."""
    torch.manual_seed(0)
    config = LatentMIMConfig.from_size(size)
    model = config.build()
    views = [
        random_masked_sample(
            batch=batch,
            size=image_size,
            steps=timesteps,
            patch_size=patch_size,
            seed=seed,
            decoder_ratio=0.5,
        )
        for seed in (1, 2)
    ]
    measured = measure_train_step(model, TrainModuleConfig(), views[0], views[1], patch_size)
    setup = footprint.Setup(
        microbatch_size=batch,
        rank_batch_size=batch,
        bf16=False,
        # One sample is one batched SDPA call; several of different lengths are one call
        # each, whose outputs are concatenated (models/nn/varlen.py).
        attention_output_copies=1 if batch == 1 else 2,
    )
    estimate = footprint.estimate_memory(
        footprint.ModelShape.of_model(model),
        footprint.tokens_of_view(config, views[0], patch_size),
        setup,
    )
    return measured, estimate


def main(argv: list[str] | None = None) -> int:
    """Prints the measured step against the estimate, category by category:

    python -m models.train.footprint_measure SIZE BATCH IMAGE_SIZE PATCH_SIZE TIMESTEPS
    e.g. `nano 2 16 2 2` (footprint_test's case) or `base 1 16 4 2`.
    """
    import sys

    args = sys.argv[1:] if argv is None else argv
    usage = (
        "usage: footprint_measure SIZE BATCH IMAGE_SIZE PATCH_SIZE TIMESTEPS (e.g. nano 2 16 2 2)"
    )
    if len(args) != 5 or not all(arg.isdigit() for arg in args[1:]):
        print(usage, file=sys.stderr)
        return 2
    size, numbers = args[0], [int(arg) for arg in args[1:]]
    measured, estimate = measure_and_estimate(size, *numbers)
    for field, line in measured.errors(estimate).items():
        print(f"{field:<12} {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
