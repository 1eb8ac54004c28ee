"""Frozen-encoder embeddings for evaluation: every present token visible, mean-pooled.

The evaluation view of a sample keeps only the *input* modalities (S2, S1 and Landsat by
default): the WorldCover map is the label and the other decode-only maps are prediction
targets, so feeding them would leak the answer. Every token with data is ONLINE_ENCODER
(nothing is masked out); tokens without data (a missing timestep or modality) are MISSING and
never reach attention.

Two poolings of the encoder output, both means over the ONLINE_ENCODER tokens of one sample:
    pooled   [B, D]        over every token (all modalities, patches, timesteps, band sets):
                           the sample embedding of classification tasks (the reference's
                           MEAN pooling, without the contrastive projection head)
    patches  [B, h, w, D]  per patch, over its timesteps, band sets and modalities: the
                           embedding of per-patch segmentation; `patch_counts` [B, h, w] says
                           how many tokens each patch averaged (0: no data there)

A sample's embedding does not depend on the rest of its batch: the encoder masks padding out
of attention in eval mode, and pooling is per sample (embeddings_test.py checks it to 1e-5).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from models.data.collate import stack_items
from models.data.dataset import DatasetItem
from models.encoder.encoder import Encoder
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue, Sample
from models.nn.precision import inference_precision

DEFAULT_INPUT_MODALITIES = ("sentinel2_l2a", "sentinel1", "landsat")
"""The modalities the v1 encoder encodes; everything an evaluation feeds the encoder."""


def check_input_modalities(names: Sequence[str]) -> tuple[str, ...]:
    """`names` in canonical order; refuses decode-only maps (labels and targets) by name."""
    ordered = modalities.canonical_order(names)
    leaking = [name for name in ordered if modalities.get(name).decode_only]
    if leaking:
        raise ValueError(
            f"input_modalities {leaking} are decode-only maps (labels or prediction targets); "
            f"an evaluation may only feed the encoder observations such as "
            f"{list(DEFAULT_INPUT_MODALITIES)}"
        )
    if not ordered:
        raise ValueError("input_modalities is empty; name at least one observed modality")
    return ordered


def evaluation_view(
    sample: Sample, encoder: Encoder, input_modalities: Sequence[str] = DEFAULT_INPUT_MODALITIES
) -> MaskedSample:
    """The encoder's input for evaluation: `input_modalities` that the encoder encodes, every
    present token ONLINE_ENCODER, absent data MISSING."""
    wanted = set(check_input_modalities(input_modalities))
    encodable = set(encoder.config.encodable_modalities)
    names = [name for name in sample.modality_names if name in wanted and name in encodable]
    if not names:
        raise ValueError(
            f"the sample has none of the input modalities the encoder encodes: sample has "
            f"{list(sample.modality_names)}, inputs {sorted(wanted)}, encodable "
            f"{sorted(encodable)}"
        )
    kept = Sample(data={name: sample.data[name] for name in names}, timestamps=sample.timestamps)
    return MaskedSample.from_sample(kept, encoder.config.tokenization)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module.eval()` inside the block; the previous train/eval flags of every submodule are
    restored afterwards (an in-loop evaluation must hand training back unchanged)."""
    flags = {name: child.training for name, child in module.named_modules()}
    module.eval()
    try:
        yield module
    finally:
        for name, child in module.named_modules():
            child.training = flags[name]


@dataclasses.dataclass
class Embeddings:
    """Pooled embeddings of a set of samples (see the module docstring).

    Attributes:
        pooled: [N, D] float32.
        patches: [N, h, w, D] float32.
        patch_counts: [N, h, w] int64, tokens averaged per patch.
    """

    pooled: Tensor
    patches: Tensor
    patch_counts: Tensor


def pool_encoder_output(
    tokens: dict[str, Tensor], masks: dict[str, Tensor], names: Sequence[str]
) -> Embeddings:
    """Means of the ONLINE_ENCODER tokens of `names` per sample and per patch (float32 sums).

    Args:
        tokens: per modality, spatial [B, h, w, T, S, D] or non-spatial [B, S, D].
        masks: per modality, spatial [B, h, w, T, S] or non-spatial [B, S].
        names: the modalities to pool (the encoded inputs).
    """
    pooled_sum: Tensor | None = None
    pooled_count: Tensor | None = None
    patch_sum: Tensor | None = None
    patch_count: Tensor | None = None
    for name in names:
        visible = (masks[name] == MaskValue.ONLINE_ENCODER).float()
        values = tokens[name].float() * visible[..., None]
        batch = values.shape[0]
        sample_sum = values.reshape(batch, -1, values.shape[-1]).sum(dim=1)
        sample_count = visible.reshape(batch, -1).sum(dim=1)
        pooled_sum = sample_sum if pooled_sum is None else pooled_sum + sample_sum
        pooled_count = sample_count if pooled_count is None else pooled_count + sample_count
        if values.dim() == 6:  # spatial: reduce T and S, keep the patch grid
            grid_sum, grid_count = values.sum(dim=(3, 4)), visible.sum(dim=(3, 4))
            patch_sum = grid_sum if patch_sum is None else patch_sum + grid_sum
            patch_count = grid_count if patch_count is None else patch_count + grid_count
    if pooled_sum is None or pooled_count is None or patch_sum is None or patch_count is None:
        raise ValueError(f"no spatial modality among {list(names)} to pool")
    return Embeddings(
        pooled=pooled_sum / pooled_count.clamp_min(1.0)[:, None],
        patches=patch_sum / patch_count.clamp_min(1.0)[..., None],
        patch_counts=patch_count.round().long(),
    )


@torch.no_grad()
def embed_batch(
    encoder: Encoder,
    view: MaskedSample,
    patch_size: int,
    input_res_m: float = 10.0,
) -> Embeddings:
    """Embeddings of one evaluation view (call inside `eval_mode(encoder)`)."""
    output = encoder(view, patch_size, input_res_m=input_res_m, fast_pass=False)
    result = output.tokens_and_masks
    names = [name for name in encoder.encodable_names(view)]
    return pool_encoder_output(result.tokens, result.masks, names)


def embed_items(
    encoder: Encoder,
    items: Sequence[DatasetItem],
    patch_size: int,
    batch_size: int = 8,
    input_res_m: float = 10.0,
    input_modalities: Sequence[str] = DEFAULT_INPUT_MODALITIES,
    precision: str = "fp32",
) -> Embeddings:
    """Embeddings of dataset items, `batch_size` at a time, on the encoder's device.

    Items of one batch must have the same shapes (the evaluation tasks load whole tiles with
    one timestep count, so they do). `precision` "bf16" runs the encoder under bf16 autocast
    (models/nn/precision.py): 1.9x fp32 for a base encoder on 2 AVX512-BF16 cores
    (tools/bench/embed.py), embeddings within cosine 0.99999 of fp32; pooling stays fp32.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not items:
        raise ValueError("no items to embed")
    device = next(encoder.parameters()).device
    parts: list[Embeddings] = []
    with eval_mode(encoder), inference_precision(encoder, precision, device):
        for start in range(0, len(items), batch_size):
            sample = stack_items(items[start : start + batch_size])
            view = evaluation_view(sample, encoder, input_modalities).to(device)
            parts.append(embed_batch(encoder, view, patch_size, input_res_m))
    return Embeddings(
        pooled=torch.cat([part.pooled.cpu() for part in parts]),
        patches=torch.cat([part.patches.cpu() for part in parts]),
        patch_counts=torch.cat([part.patch_counts.cpu() for part in parts]),
    )
