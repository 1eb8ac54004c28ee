"""Per-modality patch discrimination: the latent-MIM token loss of OlmoEarth.

For each modality and each sample, take the sample's DECODER tokens (the mask of the
predictions picks them). Each prediction must pick out its own target among the targets
of the other decoded tokens of that modality and sample (the negatives):

    p_i = pred_i / |pred_i|,  t_j = target_j / |target_j|
    loss_sample = mean_i  2 tau * CE(softmax_j(p_i . t_j / tau), j = i)

Samples with decoded tokens are averaged, and modalities are summed: a modality no
sample decodes adds nothing. The `2 tau` factor keeps the loss scale roughly independent
of tau (the gradient of CE / tau-scaled logits carries a 1 / tau).

`MaskedNegativesPatchDiscriminationLoss` (v1.1) also drops false negatives: for the
named modalities (default: the decode-only maps, where neighbouring patches often hold
the same class) a token whose target has cosine similarity > `same_target_threshold`
(0.999) with the positive's target is removed from the softmax. A sample in which some
decoded token has no negative left (every other target is the same) is skipped, and
its modality averages over the remaining samples.

`PatchDiscriminationLoss` (the reference's `patch_discrimination`, the pre-v1 form) puts
each sample's decoded tokens of every modality into one softmax, with optional `pred2unit`
standardization of the predictions over the batch.

The maths and the averaging follow the reference (`modality_patch_discrimination` and
`modality_patch_discrimination_masked_negatives_vec`) exactly; samples are batched by
moving each sample's decoded tokens to the front and padding to the longest, which
changes only the order of floating-point sums (measured: <= 2.4e-7 on the loss, 1.5e-8
on gradients). Padding to the longest costs one host sync per modality (reading the
largest decoded count) and a `[B, n, n]` score tensor, n = that count. Everything is
computed in fp32 at least
(lower precision is cast up; the reference warns that bf16 changed loss values), and
targets are detached: gradients reach the predictions only.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from models.config.configurable import Configurable
from models.losses.decoded_tokens import (
    attached_zero,
    check_non_negative,
    check_positive,
    compute_dtype,
    decoder_mask,
    flatten_pair,
    modality_pairs,
    standardize_decoded,
)
from models.modalities import modalities
from models.modalities.samples import TokensAndMasks

DECODE_ONLY_MODALITIES: tuple[str, ...] = tuple(
    name for name, spec in modalities.MODALITIES.items() if spec.decode_only
)


def _check_modality_names(owner: str, field: str, names: tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in modalities.MODALITIES]
    if unknown:
        raise ValueError(
            f"{owner}.{field} has unknown modalities {unknown}; "
            f"valid modalities are {list(modalities.MODALITIES)}"
        )


def pack_decoded(
    pred_BND: torch.Tensor, target_BND: torch.Tensor, mask_BN: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Each sample's DECODER tokens moved to the front and padded to the longest count.

    Returns (pred_BnD, target_BnD, valid_Bn, count_B) in the compute dtype, targets
    detached, or None when no sample decodes anything. Costs one host sync (reading n).
    """
    decoder_BN = decoder_mask(mask_BN)
    count_B = decoder_BN.sum(-1)
    n = int(count_B.max()) if pred_BND.shape[0] else 0
    if n == 0:
        return None
    dtype = compute_dtype(pred_BND)
    # Decoded tokens first (stable, so their order is kept), then keep the longest run.
    order_Bn = decoder_BN.to(torch.int8).argsort(dim=-1, descending=True, stable=True)[:, :n]
    index_BnD = order_Bn.unsqueeze(-1).expand(-1, -1, pred_BND.shape[-1])
    pred_BnD = pred_BND.gather(1, index_BnD).to(dtype)
    target_BnD = target_BND.detach().gather(1, index_BnD).to(dtype)
    valid_Bn = torch.arange(n, device=pred_BND.device) < count_B.unsqueeze(-1)
    return pred_BnD, target_BnD, valid_Bn, count_B


def sample_mean_of_token_losses(
    scores_Bnn: torch.Tensor,
    valid_Bn: torch.Tensor,
    count_B: torch.Tensor,
    tau: float,
    skip_B: torch.Tensor | None = None,
) -> torch.Tensor:
    """`2 tau * CE(row, its diagonal)` per decoded token, averaged per sample, then over the
    samples that decode something (and are not skipped); 0 when none does.

    Padding columns never win the softmax; padding rows get finite dummy logits.
    """
    batch, n = valid_Bn.shape
    scores_Bnn = scores_Bnn.masked_fill(~valid_Bn.unsqueeze(1), -torch.finfo(scores_Bnn.dtype).max)
    scores_Bnn = scores_Bnn.masked_fill(~valid_Bn.unsqueeze(2), 0.0)
    labels_Bn = torch.arange(n, device=scores_Bnn.device).expand(batch, n)
    token_loss_Bn = F.cross_entropy(
        scores_Bnn.reshape(batch * n, n), labels_Bn.reshape(-1), reduction="none"
    ).reshape(batch, n) * (2 * tau)
    contributes_B = count_B > 0
    if skip_B is not None:
        contributes_B = contributes_B & ~skip_B
    sample_loss_B = torch.where(valid_Bn, token_loss_Bn, 0.0).sum(-1) / count_B.clamp(min=1)
    total = torch.where(contributes_B, sample_loss_B, 0.0).sum()
    return total / contributes_B.sum().clamp(min=1)


def patch_discrimination(
    pred_BND: torch.Tensor,
    target_BND: torch.Tensor,
    mask_BN: torch.Tensor,
    tau: float,
    same_target_threshold: float | None = None,
) -> torch.Tensor:
    """The patch-discrimination loss of one modality (module docstring).

    Args:
        pred_BND: predicted tokens, flattened per sample.
        target_BND: target tokens in the same order.
        mask_BN: `MaskValue`s; only DECODER tokens take part.
        tau: softmax temperature.
        same_target_threshold: if set, drop negatives whose target cosine similarity
            with the positive's target is above it, and skip samples left without one.

    Returns:
        A scalar: the mean over contributing samples of each sample's mean token loss
        (0 when no sample contributes).
    """
    packed = pack_decoded(pred_BND, target_BND, mask_BN)
    if packed is None:
        return attached_zero(pred_BND)
    pred_BnD, target_BnD, valid_Bn, count_B = packed
    batch, n = valid_Bn.shape

    pred_BnD = F.normalize(pred_BnD, p=2, dim=-1)
    target_BnD = F.normalize(target_BnD, p=2, dim=-1)
    scores_Bnn = torch.bmm(pred_BnD, target_BnD.transpose(1, 2)) / tau

    skip_B = None
    if same_target_threshold is not None:
        same_Bnn = torch.bmm(target_BnD, target_BnD.transpose(1, 2)) > same_target_threshold
        pairs_Bnn = valid_Bn.unsqueeze(2) & valid_Bn.unsqueeze(1)
        several_B = count_B > 1  # a lone decoded token has nothing to mask
        off_diagonal_nn = ~torch.eye(n, dtype=torch.bool, device=pred_BND.device)
        false_negative_Bnn = same_Bnn & off_diagonal_nn & pairs_Bnn & several_B[:, None, None]
        # Same-target pairs include the diagonal (a target matches itself), so a token
        # whose every other target is the same has no negative left.
        negatives_Bn = (~same_Bnn & pairs_Bnn).sum(-1)
        skip_B = ((negatives_Bn == 0) & valid_Bn & several_B[:, None]).any(-1)
        scores_Bnn = scores_Bnn.masked_fill(false_negative_Bnn, float("-inf"))

    return sample_mean_of_token_losses(scores_Bnn, valid_Bn, count_B, tau, skip_B)


@dataclasses.dataclass(kw_only=True)
class ModalityPatchDiscriminationLossConfig(Configurable["ModalityPatchDiscriminationLoss"]):
    """Per-modality patch discrimination (reference `modality_patch_discrimination`).

    Attributes:
        tau: softmax temperature (0.1 in every OlmoEarth recipe).
        weight: multiplies the summed loss.
        modality_weights: per-modality factors (missing names weigh 1); e.g. 0 for the
            maps turns their term off.
    """

    name = "modality_patch_discrimination"

    tau: float = 0.1
    weight: float = 1.0
    modality_weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_positive(owner, "tau", self.tau)
        check_non_negative(owner, "weight", self.weight)
        if self.modality_weights is not None:
            self.modality_weights = dict(self.modality_weights)
            _check_modality_names(owner, "modality_weights", tuple(self.modality_weights))
            for modality, value in self.modality_weights.items():
                check_non_negative(owner, f"modality_weights[{modality!r}]", value)

    def build(self) -> ModalityPatchDiscriminationLoss:
        return ModalityPatchDiscriminationLoss(
            tau=self.tau, weight=self.weight, modality_weights=self.modality_weights
        )


class ModalityPatchDiscriminationLoss(nn.Module):
    """Patch discrimination per modality and sample, summed over modalities."""

    def __init__(
        self,
        tau: float = 0.1,
        weight: float = 1.0,
        modality_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.tau = tau
        self.weight = weight
        self.modality_weights = dict(modality_weights or {})

    def _threshold(self, modality: str) -> float | None:
        return None

    def modality_losses(
        self, predicted: TokensAndMasks, target: TokensAndMasks
    ) -> dict[str, torch.Tensor]:
        """Unweighted loss per modality, in canonical order.

        Args:
            predicted: decoder output; `predicted.masks` select the DECODER tokens.
            target: target tokens for the same view, same shapes.
        """
        losses = {}
        for name, pred_BND, target_BND, mask_BN in modality_pairs(predicted, target):
            losses[name] = patch_discrimination(
                pred_BND, target_BND, mask_BN, self.tau, self._threshold(name)
            )
        return losses

    def forward(self, predicted: TokensAndMasks, target: TokensAndMasks) -> torch.Tensor:
        """`weight * sum over modalities of modality_weight * loss` (a scalar, fp32)."""
        losses = self.modality_losses(predicted, target)
        weighted = [self.modality_weights.get(name, 1.0) * loss for name, loss in losses.items()]
        if not weighted:
            return torch.zeros((), dtype=torch.float32)
        return self.weight * torch.stack(weighted).sum()


@dataclasses.dataclass(kw_only=True)
class MaskedNegativesPatchDiscriminationLossConfig(ModalityPatchDiscriminationLossConfig):
    """Patch discrimination without same-target negatives (reference
    `modality_patch_discrimination_masked_negatives_vec`, the v1.1 / v1.2 loss).

    Attributes:
        same_target_threshold: target cosine similarity above which two tokens count
            as the same target.
        mask_negatives_for_modalities: where to drop same-target negatives (default:
            the decode-only maps, as the v1.1 recipe); None means every modality.
    """

    name = "modality_patch_discrimination_masked_negatives"

    same_target_threshold: float = 0.999
    mask_negatives_for_modalities: tuple[str, ...] | None = DECODE_ONLY_MODALITIES

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        value = self.same_target_threshold
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= 1:
            raise ValueError(
                f"{owner}.same_target_threshold must be a cosine similarity in [-1, 1]; "
                f"got {value!r}"
            )
        if self.mask_negatives_for_modalities is not None:
            if isinstance(self.mask_negatives_for_modalities, str):
                raise ValueError(
                    f"{owner}.mask_negatives_for_modalities must be None or a sequence of "
                    f"modality names, not the string {self.mask_negatives_for_modalities!r}"
                )
            self.mask_negatives_for_modalities = tuple(self.mask_negatives_for_modalities)
            _check_modality_names(
                owner, "mask_negatives_for_modalities", self.mask_negatives_for_modalities
            )

    def build(self) -> MaskedNegativesPatchDiscriminationLoss:
        return MaskedNegativesPatchDiscriminationLoss(
            tau=self.tau,
            weight=self.weight,
            modality_weights=self.modality_weights,
            same_target_threshold=self.same_target_threshold,
            mask_negatives_for_modalities=self.mask_negatives_for_modalities,
        )


class MaskedNegativesPatchDiscriminationLoss(ModalityPatchDiscriminationLoss):
    """Patch discrimination that removes same-target negatives in chosen modalities."""

    def __init__(
        self,
        tau: float = 0.1,
        weight: float = 1.0,
        modality_weights: dict[str, float] | None = None,
        same_target_threshold: float = 0.999,
        mask_negatives_for_modalities: tuple[str, ...] | None = DECODE_ONLY_MODALITIES,
    ) -> None:
        super().__init__(tau=tau, weight=weight, modality_weights=modality_weights)
        self.same_target_threshold = same_target_threshold
        self.mask_negatives_for_modalities = (
            None if mask_negatives_for_modalities is None else tuple(mask_negatives_for_modalities)
        )

    def _threshold(self, modality: str) -> float | None:
        masked = self.mask_negatives_for_modalities
        if masked is None or modality in masked:
            return self.same_target_threshold
        return None


@dataclasses.dataclass(kw_only=True)
class PatchDiscriminationLossConfig(Configurable["PatchDiscriminationLoss"]):
    """Patch discrimination over all modalities at once (reference `patch_discrimination`).

    Each sample's decoded tokens of every modality form one softmax: a Sentinel-2 prediction
    must also tell its target apart from the sample's decoded map targets. The per-modality
    loss replaced it in OlmoEarth v1.

    Attributes:
        tau: softmax temperature.
        pred2unit: standardize each prediction feature over the batch's decoded tokens
            (mean 0, std 1 + 1e-4) before the L2 normalization.
        weight: multiplies the loss.
    """

    name = "patch_discrimination"

    tau: float = 0.1
    pred2unit: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_positive(owner, "tau", self.tau)
        check_non_negative(owner, "weight", self.weight)
        if not isinstance(self.pred2unit, bool):
            raise ValueError(f"{owner}.pred2unit must be True or False; got {self.pred2unit!r}")

    def build(self) -> PatchDiscriminationLoss:
        return PatchDiscriminationLoss(tau=self.tau, pred2unit=self.pred2unit, weight=self.weight)


class PatchDiscriminationLoss(nn.Module):
    """`weight *` patch discrimination of each sample's decoded tokens of all modalities.

    Samples without decoded tokens are left out of the mean (the reference raises when no
    sample decodes anything; this returns 0).
    """

    def __init__(self, tau: float = 0.1, pred2unit: bool = False, weight: float = 1.0) -> None:
        super().__init__()
        self.tau = tau
        self.pred2unit = pred2unit
        self.weight = weight

    def forward(self, predicted: TokensAndMasks, target: TokensAndMasks) -> torch.Tensor:
        pred_BND, target_BND, mask_BN = flatten_pair(predicted, target)
        if self.pred2unit:
            pred_BND = standardize_decoded(
                pred_BND.to(compute_dtype(pred_BND)), decoder_mask(mask_BN)
            )
        return self.weight * patch_discrimination(pred_BND, target_BND, mask_BN, self.tau)
