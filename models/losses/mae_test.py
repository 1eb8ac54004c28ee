"""MAE pixel loss: values, band-set masks per channel, counted elements, errors, config."""

import pytest
import torch

from models.losses.mae import MAELoss, MAELossConfig, channel_band_sets
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue

DEC = int(MaskValue.DECODER)
ONLINE = int(MaskValue.ONLINE_ENCODER)
MISSING = int(MaskValue.MISSING)


def _target(data, masks):
    batch, steps = 1, 1
    for value in data.values():
        batch, steps = value.shape[0], value.shape[3]
    timestamps = torch.zeros(batch, steps, 3, dtype=torch.long)
    return MaskedSample(data=data, masks=masks, timestamps=timestamps)


def test_mse_over_decoded_pixels_matches_a_hand_computation():
    # Sentinel-1: one band set (vv, vh) on a 1 x 2 x 2 x 1 grid; pixels 0 and 3 decoded.
    data = torch.tensor([[1.0, 2.0], [0.0, 0.0], [5.0, 5.0], [3.0, -1.0]]).reshape(1, 2, 2, 1, 2)
    pred = torch.tensor([[2.0, 2.0], [9.0, 9.0], [9.0, 9.0], [1.0, 0.0]]).reshape(1, 2, 2, 1, 2)
    mask = torch.tensor([DEC, ONLINE, ONLINE, DEC], dtype=torch.int8).reshape(1, 2, 2, 1, 1)
    target = _target({"sentinel1": data}, {"sentinel1": mask})
    # (1 + 0 + 4 + 1) / 4 counted elements.
    assert MAELoss()({"sentinel1": pred}, target).item() == pytest.approx(6 / 4)
    # L1: (1 + 0 + 2 + 1) / 4; weight scales it.
    l1 = MAELoss(loss_function="L1Loss", weight=0.5)({"sentinel1": pred}, target)
    assert l1.item() == pytest.approx(0.5 * 4 / 4)


def test_each_channel_takes_the_mask_of_its_band_set():
    spec = modalities.get("sentinel2_l2a")
    generator = torch.Generator().manual_seed(0)
    shape = (2, 3, 3, 2)
    data = torch.randn(*shape, spec.num_bands, generator=generator)
    pred = torch.randn(*shape, spec.num_bands, generator=generator)
    mask = torch.full((*shape, len(spec.band_sets)), ONLINE, dtype=torch.int8)
    mask[..., 1] = DEC  # only the 20 m set is decoded
    target = _target({"sentinel2_l2a": data}, {"sentinel2_l2a": mask})
    counted = list(spec.band_set_indices()[1])
    expected = ((pred - data)[..., counted] ** 2).mean()
    loss_fn = MAELoss()
    assert loss_fn({"sentinel2_l2a": pred}, target).item() == pytest.approx(expected.item())
    others = [c for c in range(spec.num_bands) if c not in counted]
    changed = pred.clone()
    changed[..., others] += 5.0
    assert loss_fn({"sentinel2_l2a": changed}, target).item() == pytest.approx(expected.item())


def test_channel_band_sets_follow_the_tokenization():
    spec = modalities.get("sentinel2_l2a")
    default = channel_band_sets(spec)
    for band_set, channels in enumerate(spec.band_set_indices()):
        assert (default[list(channels)] == band_set).all()
    single = channel_band_sets(modalities.SINGLE_BANDSET_TOKENIZATION.spec("sentinel2_l2a"))
    assert (single == 0).all()


def test_only_decode_false_counts_every_element_with_data_and_never_the_missing_fill():
    data = torch.tensor([1.0, modalities.MISSING_VALUE, 3.0, 0.0]).reshape(1, 2, 2, 1, 1)
    pred = torch.tensor([0.0, 0.0, 1.0, 2.0]).reshape(1, 2, 2, 1, 1)
    mask = torch.tensor([DEC, MISSING, ONLINE, int(MaskValue.TARGET_ONLY)], dtype=torch.int8)
    target = _target({"srtm": data}, {"srtm": mask.reshape(1, 2, 2, 1, 1)})
    everything = MAELoss(only_decode=False)({"srtm": pred}, target)
    assert everything.item() == pytest.approx((1 + 4 + 4) / 3)
    assert MAELoss()({"srtm": pred}, target).item() == pytest.approx(1.0)


def test_modalities_pool_their_counted_elements():
    ones = torch.ones(1, 2, 2, 1, 1)
    decoded = torch.full((1, 2, 2, 1, 1), DEC, dtype=torch.int8)
    target = _target(
        {"srtm": ones, "cdl": ones.clone()},
        {"srtm": decoded, "cdl": decoded.clone().fill_(ONLINE)},
    )
    target.masks["cdl"][0, 0, 0] = DEC
    # srtm: 4 counted errors of 1; cdl: 1 counted error of 4. Pooled: (4 + 4) / 5.
    loss = MAELoss()({"srtm": ones * 2, "cdl": ones * 3}, target)
    assert loss.item() == pytest.approx(8 / 5)
    # A modality the decoder does not reconstruct takes no part.
    assert MAELoss()({"srtm": ones * 2}, target).item() == pytest.approx(1.0)


def test_gradients_reach_counted_elements_only_and_nothing_counted_gives_zero():
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(2, 2, 2, 1, 2, generator=generator)
    pred = torch.randn(2, 2, 2, 1, 2, generator=generator).requires_grad_()
    mask = torch.randint(0, 4, (2, 2, 2, 1, 1), generator=generator).to(torch.int8)
    mask[0, 0, 0] = DEC
    MAELoss()({"sentinel1": pred}, _target({"sentinel1": data}, {"sentinel1": mask})).backward()
    decoded = (mask == DEC).expand(-1, -1, -1, -1, 2)
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[~decoded] == 0).all() and (pred.grad[decoded] != 0).all()
    pred.grad = None
    nothing = _target({"sentinel1": data}, {"sentinel1": torch.full_like(mask, ONLINE)})
    loss = MAELoss()({"sentinel1": pred}, nothing)
    assert loss.item() == 0.0
    loss.backward()
    assert (pred.grad == 0).all()


def test_bad_inputs_are_rejected_with_the_fix():
    data = torch.zeros(1, 2, 2, 1, 2)
    target = _target({"sentinel1": data}, {"sentinel1": torch.zeros(1, 2, 2, 1, 1)})
    with pytest.raises(ValueError, match="reconstructed sentinel1 .* differs from the target"):
        MAELoss()({"sentinel1": torch.zeros(1, 2, 2, 1, 3)}, target)
    with pytest.raises(ValueError, match=r"reconstructed modalities \['srtm'\] are not in"):
        MAELoss()({"srtm": torch.zeros(1, 2, 2, 1, 1)}, target)
    with pytest.raises(ValueError, match="at least one reconstructed modality"):
        MAELoss()({}, target)


def test_config_builds_the_loss_and_rejects_unsupported_functions():
    built = MAELossConfig(loss_function="HuberLoss", loss_kwargs={"delta": 0.5}).build()
    assert built.loss_kwargs == {"delta": 0.5} and built.only_decode
    with pytest.raises(ValueError, match="loss_function 'CrossEntropyLoss' is not supported"):
        MAELossConfig(loss_function="CrossEntropyLoss")
    with pytest.raises(ValueError, match=r"loss_kwargs has \['beta'\], which MSELoss does not"):
        MAELossConfig(loss_kwargs={"beta": 1.0})


def test_a_nan_in_an_element_that_does_not_count_changes_nothing():
    data = torch.tensor([1.0, modalities.MISSING_VALUE]).reshape(1, 1, 2, 1, 1)
    pred = torch.tensor([3.0, float("nan")]).reshape(1, 1, 2, 1, 1).requires_grad_()
    mask = torch.tensor([DEC, MISSING], dtype=torch.int8).reshape(1, 1, 2, 1, 1)
    loss = MAELoss(only_decode=False)({"srtm": pred}, _target({"srtm": data}, {"srtm": mask}))
    assert loss.item() == pytest.approx(4.0)
    loss.backward()
    assert pred.grad.flatten().tolist() == [4.0, 0.0]
