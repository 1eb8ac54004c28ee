"""What every token loss shares: input checks, flattening, DECODER selection, dtype rules.

A token loss compares the decoder's predictions with the target encoder's tokens of the
same view (`TokensAndMasks` each, same modalities and shapes). Only DECODER tokens count;
the mask of the predictions picks them. Losses are computed in fp32 at least (the reference
measured that bf16 changed loss values) and targets are detached: gradients reach the
predictions only.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from models.modalities.samples import MaskValue, TokensAndMasks

# Added to the batch standard deviation before dividing (`pred2unit`), as the reference:
# it keeps a feature that is constant over the decoded tokens finite.
STANDARDIZE_EPS = 1e-4


def check_positive(owner: str, field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{owner}.{field} must be a number > 0; got {value!r}")


def check_non_negative(owner: str, field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{owner}.{field} must be a number >= 0; got {value!r}")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32, or the input's dtype when it is a wider float (fp64 stays fp64)."""
    if not x.is_floating_point():
        return torch.float32
    return torch.promote_types(x.dtype, torch.float32)


def attached_zero(x: torch.Tensor) -> torch.Tensor:
    """A zero scalar still attached to `x`, so backward() works on any total."""
    return x.reshape(-1)[:0].sum().to(compute_dtype(x))


def modality_pairs(
    predicted: TokensAndMasks, target: TokensAndMasks, same_width: bool = True
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(name, pred_BND, target_BND, mask_BN) per modality in canonical order, checked.

    Raises ValueError when the two sides differ in modalities or shapes (in the last
    axis too unless `same_width` is False: class-index targets have width 1).
    """
    if set(predicted.tokens) != set(target.tokens):
        raise ValueError(
            f"predicted and target tokens need the same modalities; got "
            f"{sorted(predicted.tokens)} and {sorted(target.tokens)}"
        )
    for name, pred_tokens, mask in predicted.items():
        target_tokens = target.tokens[name]
        compared = slice(None) if same_width else slice(0, -1)
        if pred_tokens.shape[compared] != target_tokens.shape[compared]:
            raise ValueError(
                f"{name}: predicted tokens {tuple(pred_tokens.shape)} and target tokens "
                f"{tuple(target_tokens.shape)} differ in shape"
            )
        if mask.shape != pred_tokens.shape[:-1]:
            raise ValueError(
                f"{name}: mask {tuple(mask.shape)} does not match tokens "
                f"{tuple(pred_tokens.shape)} without the last axis"
            )
        batch = pred_tokens.shape[0]
        yield (
            name,
            pred_tokens.reshape(batch, -1, pred_tokens.shape[-1]),
            target_tokens.reshape(batch, -1, target_tokens.shape[-1]),
            mask.reshape(batch, -1),
        )


def flatten_pair(
    predicted: TokensAndMasks, target: TokensAndMasks, same_width: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every modality's tokens side by side: pred_BND, target_BND, mask_BN (checked).

    Modalities are concatenated in canonical order, as the reference's
    `flatten_all_tokens_and_masks`.
    """
    pairs = list(modality_pairs(predicted, target, same_width))
    if not pairs:
        raise ValueError("a token loss needs at least one modality; got none")
    _, preds, targets, masks = zip(*pairs, strict=True)
    return torch.cat(preds, dim=1), torch.cat(targets, dim=1), torch.cat(masks, dim=1)


def standardize_decoded(pred_BND: torch.Tensor, decoder_BN: torch.Tensor) -> torch.Tensor:
    """`pred2unit`: per feature, subtract the mean and divide by (std + 1e-4), both taken
    over the DECODER tokens of the whole batch (unbiased std, as `torch.std`).

    Other tokens are returned unchanged (the losses ignore them), so a NaN there reaches
    neither the statistics nor their gradient.
    """
    decoder_BN1 = decoder_BN.unsqueeze(-1)
    count = decoder_BN.sum()
    # where(), not a product with the mask: a NaN in another token must not leak in.
    decoded_BND = torch.where(decoder_BN1, pred_BND, 0.0)
    mean_D = decoded_BND.sum(dim=(0, 1)) / count.clamp(min=1)
    squares_D = torch.where(decoder_BN1, (decoded_BND - mean_D) ** 2, 0.0).sum(dim=(0, 1))
    variance_D = squares_D / (count - 1).clamp(min=1)
    # The floor keeps the gradient of sqrt finite where a feature is constant or nothing is
    # decoded (sqrt'(0) is infinite); at 1e-19 it is invisible next to the 1e-4.
    std_D = variance_D.clamp(min=torch.finfo(variance_D.dtype).tiny).sqrt()
    return torch.where(decoder_BN1, (decoded_BND - mean_D) / (std_D + STANDARDIZE_EPS), pred_BND)


def decoder_mask(mask_BN: torch.Tensor) -> torch.Tensor:
    """True where the token is DECODER."""
    return mask_BN == MaskValue.DECODER
