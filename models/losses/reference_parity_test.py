"""Our losses equal the reference's (olmoearth_pretrain 0.1.2) on identical inputs.

Runs only where the reference is installed; elsewhere every test is collected and skipped
(a module-level skip would leave pytest with nothing collected, exit code 5):
    PYTHONPATH=/work/main /work/refvenv/bin/python -m pytest models/losses/reference_parity_test.py
"""

import warnings
from types import SimpleNamespace

import pytest
import torch

from models.losses.losses import (
    InfoNCELoss,
    MaskedNegativesPatchDiscriminationLoss,
    ModalityPatchDiscriminationLoss,
)
from models.modalities.samples import MaskValue, TokensAndMasks
from models.testing import reference_env

TOLERANCE = 1e-5
MAPS = ["worldcover", "srtm", "openstreetmap_raster", "wri_canopy_height_map", "cdl", "worldcereal"]
DEC = int(MaskValue.DECODER)


def _views(seed: int, width: int = 16) -> tuple[TokensAndMasks, TokensAndMasks]:
    """Predictions and targets with every case the averaging rules care about.

    - random masks over all four MaskValues;
    - sample 1 decodes no Sentinel-2 token, sample 2 exactly one Sentinel-1 token;
    - WorldCover: two classes repeated across patches (exact same-target duplicates),
      and sample 0 all one class (skipped by the masked-negatives loss);
    - SRTM: near-duplicate targets either side of the 0.999 threshold;
    - CDL: no decoder token in any sample (the modality adds nothing);
    - lat/lon without spatial axes.
    """
    generator = torch.Generator().manual_seed(seed)
    batch = 3
    shapes = {
        "sentinel2_l2a": (batch, 2, 2, 3, 3),
        "sentinel1": (batch, 2, 2, 3, 1),
        "worldcover": (batch, 3, 3, 1, 1),
        "srtm": (batch, 3, 3, 1, 1),
        "cdl": (batch, 2, 2, 1, 1),
        "latlon": (batch, 1),
    }
    tokens, targets, masks = {}, {}, {}
    for name, shape in shapes.items():
        tokens[name] = torch.randn(*shape, width, generator=generator)
        targets[name] = torch.randn(*shape, width, generator=generator)
        masks[name] = torch.randint(0, 4, shape, generator=generator).to(torch.int8)
    masks["sentinel2_l2a"][1] = int(MaskValue.TARGET_ONLY)
    s1 = masks["sentinel1"].view(batch, -1)
    s1[2] = int(MaskValue.MISSING)
    s1[2, 5] = DEC
    classes = torch.randn(2, width, generator=generator)
    labels = torch.randint(0, 2, shapes["worldcover"], generator=generator)
    labels[0] = 0
    targets["worldcover"] = classes[labels] * (1 + torch.rand(*shapes["worldcover"], 1))
    masks["worldcover"].view(batch, -1)[:, :5] = DEC
    srtm = targets["srtm"].view(batch, -1, width)
    srtm[:, 1] = srtm[:, 0] + 0.01 * torch.randn(batch, width, generator=generator)  # > 0.999
    srtm[:, 2] = srtm[:, 0] + 0.3 * torch.randn(batch, width, generator=generator)  # < 0.999
    masks["srtm"].view(batch, -1)[:, :3] = DEC
    masks["cdl"] = torch.where(masks["cdl"] == DEC, int(MaskValue.TARGET_ONLY), masks["cdl"])
    masks["latlon"][:] = DEC
    return TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks)


@pytest.fixture(scope="module")
def ref() -> SimpleNamespace:
    """The reference's loss module and TokensAndMasks, or a skip."""
    reference_env.import_reference()
    from olmoearth_pretrain.datatypes import TokensAndMasks as ReferenceTokensAndMasks
    from olmoearth_pretrain.train import loss

    return SimpleNamespace(loss=loss, TokensAndMasks=ReferenceTokensAndMasks)


def _to_reference(ref: SimpleNamespace, view: TokensAndMasks):
    fields = {}
    for name, tokens, mask in view.items():
        fields[name] = tokens
        fields[f"{name}_mask"] = mask
    return ref.TokensAndMasks(**fields)


def _with_grad(view: TokensAndMasks) -> TokensAndMasks:
    tokens = {name: t.detach().clone().requires_grad_() for name, t in view.tokens.items()}
    return TokensAndMasks(tokens, view.masks)


def _compare(ref: SimpleNamespace, ours_fn, reference_fn, seed: int) -> None:
    predicted, target = _views(seed)
    ours_pred, reference_pred = _with_grad(predicted), _with_grad(predicted)
    ours = ours_fn(ours_pred, target)
    theirs = reference_fn(_to_reference(ref, reference_pred), _to_reference(ref, target))
    assert torch.is_tensor(theirs)
    assert abs(ours.item() - theirs.item()) <= TOLERANCE, (ours.item(), theirs.item())
    assert ours.item() > 0
    ours.backward()
    theirs.backward()
    for name in predicted.tokens:
        ours_grad = ours_pred.tokens[name].grad
        theirs_grad = reference_pred.tokens[name].grad
        if theirs_grad is None:  # the reference never touched a modality without decoding
            theirs_grad = torch.zeros_like(ours_grad)
        torch.testing.assert_close(ours_grad, theirs_grad, atol=TOLERANCE, rtol=0)


def _reference_loss(ref: SimpleNamespace, key: str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loss = ref.loss.LOSS_REGISTRY.get_class(key)(**kwargs)
    return loss.compute


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "key",
    [
        "modality_patch_discrimination",
        "modality_patch_discrimination_new",
        "modality_patch_discrimination_vec",
    ],
)
def test_patch_discrimination_equals_the_reference(ref, key, seed):
    weights = {name: 1.0 for name in _views(seed)[0].tokens} | {"sentinel1": 0.5}
    _compare(
        ref,
        ModalityPatchDiscriminationLoss(tau=0.1, weight=0.7, modality_weights=weights),
        _reference_loss(ref, key, tau=0.1, weight=0.7, modality_weights=weights),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "key",
    [
        "modality_patch_discrimination_masked_negatives_vec",
        "modality_patch_discrimination_masked_negatives",
    ],
)
@pytest.mark.parametrize("masked_modalities", [MAPS, None], ids=["maps", "all"])
def test_masked_negatives_equals_the_reference(ref, key, masked_modalities, seed):
    ours = MaskedNegativesPatchDiscriminationLoss(
        tau=0.1,
        same_target_threshold=0.999,
        mask_negatives_for_modalities=masked_modalities,
        modality_weights={"srtm": 2.0},
    )
    theirs = _reference_loss(
        ref,
        key,
        tau=0.1,
        same_target_threshold=0.999,
        mask_negatives_for_modalities=masked_modalities,
        modality_weights={"srtm": 2.0},
    )
    _compare(ref, ours, theirs, seed)


def test_the_fixture_exercises_masked_negatives():
    predicted, target = _views(0)
    masked = MaskedNegativesPatchDiscriminationLoss().modality_losses(predicted, target)
    plain = ModalityPatchDiscriminationLoss().modality_losses(predicted, target)
    assert masked["worldcover"] != plain["worldcover"]
    assert masked["srtm"] != plain["srtm"]
    assert masked["sentinel2_l2a"] == plain["sentinel2_l2a"]
    assert plain["cdl"] == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_info_nce_equals_the_reference(ref, seed):
    generator = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 8, 32, generator=generator)
    ours = InfoNCELoss(tau=0.1, weight=0.05)(a, b)
    theirs = ref.loss.InfoNCELoss(tau=0.1, weight=0.05).compute(a, b)
    assert abs(ours.item() - theirs.item()) <= TOLERANCE
