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
    LOSSES,
    REFERENCE_ALIASES,
    InfoNCELoss,
    KoLeoLoss,
    MAELoss,
    MaskedNegativesPatchDiscriminationLoss,
    ModalityPatchDiscriminationLoss,
    loss_config_from_name,
)
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue, TokensAndMasks
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
    assert ours.item() != 0  # some losses are negative (cosine, KoLeo); none is 0 here
    ours.backward()
    theirs.backward()
    _assert_same_gradients(ours_pred.tokens, reference_pred.tokens)


def _assert_same_gradients(ours: dict, theirs: dict) -> None:
    touched = False
    for name, ours_tensor in ours.items():
        ours_grad = ours_tensor.grad
        theirs_grad = theirs[name].grad
        if theirs_grad is None:  # the reference never touched a modality without decoding
            theirs_grad = torch.zeros_like(ours_grad)
        torch.testing.assert_close(ours_grad, theirs_grad, atol=TOLERANCE, rtol=0)
        touched = touched or bool(ours_grad.abs().sum() > 0)
    assert touched, "no gradient reached the predictions: the comparison proves nothing"


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


# Token losses whose reference takes (predicted, target) TokensAndMasks: reference key and
# the keyword arguments both sides get (our configs take the reference's parameters).
TOKEN_LOSS_CASES = [
    ("all_discrimination", {}),
    ("all_discrimination", {"tau": 0.2, "pred2unit": True}),
    ("modality_all_discrimination", {}),
    ("modality_all_discrimination", {"pred2unit": True}),
    ("patch_discrimination", {"weight": 0.5}),
    ("patch_discrimination", {"pred2unit": True}),
    ("patch_discrimination_new", {}),
    ("adjusted_patch_discrimination", {}),
    ("adjusted_patch_discrimination", {"tau": 0.07, "mu": 0.2, "sigma": 0.3}),
    ("adjusted_patch_discrimination", {"pred2unit": True}),
    ("l1", {}),
    ("l2", {}),
    ("cosine_similarity", {}),
]


def _case_id(case) -> str:
    key, kwargs = case
    return "-".join([key, *(f"{name}={value}" for name, value in kwargs.items())])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", TOKEN_LOSS_CASES, ids=_case_id)
def test_token_loss_equals_the_reference(ref, case, seed):
    key, kwargs = case
    ours = loss_config_from_name(key, **kwargs).build()
    _compare(ref, ours, _reference_loss(ref, key, **kwargs), seed)


def _class_views(seed: int, indices: bool) -> tuple[TokensAndMasks, TokensAndMasks]:
    """Logits over 5 classes, with targets as class indices [.., 1] or probabilities."""
    predicted, _ = _views(seed, width=5)
    generator = torch.Generator().manual_seed(seed + 100)
    targets = {}
    for name, tokens in predicted.tokens.items():
        if indices:
            targets[name] = torch.randint(0, 5, (*tokens.shape[:-1], 1), generator=generator)
        else:
            logits = torch.randn(tokens.shape, generator=generator)
            targets[name] = torch.softmax(logits, dim=-1)
    return predicted, TokensAndMasks(targets, predicted.masks)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("indices", [True, False], ids=["class_index", "probabilities"])
def test_cross_entropy_equals_the_reference(ref, indices, seed):
    predicted, target = _class_views(seed, indices)
    ours_pred, reference_pred = _with_grad(predicted), _with_grad(predicted)
    ours = loss_config_from_name("cross_entropy").build()(ours_pred, target)
    theirs = _reference_loss(ref, "cross_entropy")(
        _to_reference(ref, reference_pred), _to_reference(ref, target)
    )
    assert abs(ours.item() - theirs.item()) <= TOLERANCE, (ours.item(), theirs.item())
    ours.backward()
    theirs.backward()
    _assert_same_gradients(ours_pred.tokens, reference_pred.tokens)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"mode": "patch", "weight": 0.3}, {"eps": 1e-3}],
    ids=["instance", "patch", "eps"],
)
def test_koleo_on_encoder_tokens_equals_the_reference(ref, kwargs, seed):
    # The fixture's masks hold ONLINE_ENCODER tokens in every sample: the encoder's view.
    _compare(ref, KoLeoLoss(**kwargs), _reference_loss(ref, "KoLeo", **kwargs), seed)


def test_koleo_on_pooled_vectors_equals_the_reference(ref):
    pooled = torch.randn(7, 12, generator=torch.Generator().manual_seed(3))
    ours_in, theirs_in = pooled.clone().requires_grad_(), pooled.clone().requires_grad_()
    ours = KoLeoLoss()(ours_in)
    theirs = _reference_loss(ref, "KoLeo")(theirs_in, None)
    assert abs(ours.item() - theirs.item()) <= TOLERANCE, (ours.item(), theirs.item())
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, atol=TOLERANCE, rtol=0)


def _pixel_views(seed: int, tokenization: modalities.Tokenization):
    """Reconstructed pixels and the masked target view for three modalities, with MISSING
    fill values in the data where the mask says MISSING."""
    generator = torch.Generator().manual_seed(seed)
    batch, size, steps = 2, 4, 3
    reconstructed, data, masks = {}, {}, {}
    for name, timesteps in (("sentinel2_l2a", steps), ("sentinel1", steps), ("srtm", 1)):
        spec = tokenization.spec(name)
        shape = (batch, size, size, timesteps)
        reconstructed[name] = torch.randn(*shape, spec.num_bands, generator=generator)
        data[name] = torch.randn(*shape, spec.num_bands, generator=generator)
        mask = torch.randint(0, 4, (*shape, len(spec.band_sets)), generator=generator)
        masks[name] = mask.to(torch.int8)
        for band_set, channels in enumerate(spec.band_set_indices()):
            missing = masks[name][..., band_set] == MaskValue.MISSING
            for channel in channels:
                data[name][..., channel][missing] = modalities.MISSING_VALUE
    timestamps = torch.zeros(batch, steps, 3, dtype=torch.long)
    return reconstructed, MaskedSample(data=data, masks=masks, timestamps=timestamps)


def _reference_tokenization(ref_modules, tokenization: modalities.Tokenization):
    overrides = {
        name: ref_modules.ModalityTokenization(band_groups=[list(group) for group in groups])
        for name, groups in tokenization.band_groups.items()
    }
    return ref_modules.TokenizationConfig(overrides=overrides)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"only_decode": False, "weight": 0.5},
        {"loss_function": "L1Loss"},
        {"loss_function": "SmoothL1Loss", "beta": 0.5},
        {"loss_function": "HuberLoss", "delta": 0.7},
    ],
    ids=["mse", "all_with_data", "l1", "smooth_l1", "huber"],
)
@pytest.mark.parametrize(
    "tokenization",
    [modalities.DEFAULT_TOKENIZATION, modalities.SINGLE_BANDSET_TOKENIZATION],
    ids=["default_band_sets", "single_band_set"],
)
def test_mae_equals_the_reference(ref, kwargs, tokenization, seed):
    from olmoearth_pretrain.nn import tokenization as reference_tokenization

    reconstructed, target = _pixel_views(seed, tokenization)
    loss_kwargs = {k: v for k, v in kwargs.items() if k in ("beta", "delta")}
    options = {k: v for k, v in kwargs.items() if k not in ("beta", "delta")}
    ours_in = {name: x.clone().requires_grad_() for name, x in reconstructed.items()}
    theirs_in = {name: x.clone().requires_grad_() for name, x in reconstructed.items()}
    ours = MAELoss(loss_kwargs=loss_kwargs, tokenization=tokenization, **options)(ours_in, target)
    reference = _reference_loss(
        ref,
        "mae",
        tokenization_config=_reference_tokenization(reference_tokenization, tokenization),
        **options,
        **loss_kwargs,
    )
    predictions = ref.TokensAndMasks(
        **theirs_in, **{f"{name}_mask": target.masks[name] for name in theirs_in}
    )
    targets = ref.TokensAndMasks(
        **target.data, **{f"{name}_mask": mask for name, mask in target.masks.items()}
    )
    theirs = reference(predictions, targets)
    assert abs(ours.item() - theirs.item()) <= TOLERANCE, (ours.item(), theirs.item())
    assert ours.item() > 0
    ours.backward()
    theirs.backward()
    _assert_same_gradients(ours_in, theirs_in)


def test_every_reference_registry_key_resolves_to_a_loss_of_ours(ref):
    reference_keys = set(ref.loss.LOSS_REGISTRY.keys())
    ours = set(LOSSES) | set(REFERENCE_ALIASES)
    assert reference_keys - ours == set(), "reference losses without a counterpart"
    assert set(REFERENCE_ALIASES) <= reference_keys
