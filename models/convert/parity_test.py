"""Numerical parity with the reference OlmoEarth v1 (olmoearth-pretrain 0.1.2): model and losses.

Skips without the reference. Run it in the reference's environment (-rP prints the measured
differences):
    cd /work/main
    PYTHONPATH=. /work/refvenv/bin/python -m pytest -q -rP models/convert/parity_test.py

Both models are built at the nano size with drop_path 0; the reference's weights (perturbed so
that no parameter keeps a symmetric init: zero channel embeddings and mask token would hide
ordering bugs) are loaded into ours with models/convert/reference_checkpoint.py. Both then run the
same two masked views in fp32 train mode, and every quantity of a v1 training step is compared:
encoder tokens at ONLINE_ENCODER positions, pooled vectors, predictions at DECODER positions,
targets, the patch-discrimination and InfoNCE losses, and the gradients of the v1 total loss.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import pytest

from models.testing import reference_env

# Under Bazel the reference lives in @reference's site-packages, put on sys.path here.
reference_env.activate()
pytest.importorskip("olmoearth_pretrain")

import torch  # noqa: E402
from olmoearth_pretrain.train.loss import InfoNCELoss as RefInfoNCE  # noqa: E402
from olmoearth_pretrain.train.loss import (  # noqa: E402
    ModalityPatchDiscriminationLoss as RefPatchDiscrimination,
)

from models.convert import reference_checkpoint as rc  # noqa: E402
from models.convert.reference_batch import (  # noqa: E402
    build_reference,
    reference_tokens,
    to_reference_sample,
)
from models.latent_mim import sizes  # noqa: E402
from models.latent_mim.latent_mim import LatentMIMConfig  # noqa: E402
from models.losses.info_nce import InfoNCELossConfig  # noqa: E402
from models.losses.patch_discrimination import ModalityPatchDiscriminationLossConfig  # noqa: E402
from models.modalities import modalities  # noqa: E402
from models.modalities.samples import MASK_DTYPE, MaskedSample, MaskValue  # noqa: E402

TOLERANCE = 1e-5
"""Max abs difference allowed for every compared quantity (fp32; values are O(1))."""

PATCH_SIZES = (1, 2, 3, 4, 8)
"""The brief's 1, 2, 4, 8 plus 3: a non-integer bicubic resize factor (3 -> 8 px)."""

ROWS, COLS, STEPS, BATCH = 3, 4, 3, 2
"""Patches per side (rows != cols catches a swapped 2-D encoding), timesteps, samples."""

TAU, INFO_NCE_WEIGHT = 0.1, 0.1
"""The v1 recipe: patch discrimination tau 0.1; InfoNCE tau 0.1 with weight 0.1."""

MODALITY_NAMES = modalities.TRAINING_MODALITIES
FIXTURE = pathlib.Path(__file__).parent / "testdata" / "reference_v1_small_state_dict.json"


# -- the reference side ------------------------------------------------------------------------


def reference_step(model, x: MaskedSample, patch_size: int) -> dict:
    """One view through the reference as its ContrastiveLatentMIM train module runs it."""
    sample = to_reference_sample(x)
    latent, decoded, pooled, _, _ = model(sample, patch_size)
    with torch.no_grad():
        target = model.target_encoder(
            sample.unmask(),
            patch_size=patch_size,
            token_exit_cfg={name: 0 for name in MODALITY_NAMES},
        )["tokens_and_masks"]
    return {
        "latent": reference_tokens(latent),
        "decoded": reference_tokens(decoded),
        "pooled": pooled,
        "target": reference_tokens(target),
        "loss": RefPatchDiscrimination(tau=TAU).compute(decoded, target),
    }


# -- our side ----------------------------------------------------------------------------------


def our_step(model, x: MaskedSample, patch_size: int) -> dict:
    output = model(x, patch_size)
    target = model.target_tokens(x, patch_size)
    loss = ModalityPatchDiscriminationLossConfig(tau=TAU).build()(output.decoded, target)
    return {
        "latent": output.latent.tokens,
        "decoded": output.decoded.tokens,
        "pooled": output.pooled,
        "target": target.tokens,
        "loss": loss,
    }


# -- the batch ---------------------------------------------------------------------------------


def _token_masks(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-token masks [B, rows, cols, T, S] of one view.

    Encodable modalities mix ONLINE_ENCODER, DECODER and TARGET_ONLY; the maps (decode-only in
    v1) mix DECODER and TARGET_ONLY. MISSING: S2 timestep 2 of sample 1, S1 timestep 0 of
    sample 0, Landsat's second band set at timestep 1 of sample 0, CDL for all of sample 1.
    """
    masks = {}
    for name in MODALITY_NAMES:
        spec = modalities.get(name)
        steps = STEPS if spec.is_multitemporal else 1
        shape = (BATCH, ROWS, COLS, steps, spec.num_band_sets)
        if spec.decode_only:
            choices = torch.tensor([MaskValue.DECODER, MaskValue.TARGET_ONLY])
        else:
            choices = torch.tensor(
                [MaskValue.ONLINE_ENCODER, MaskValue.DECODER, MaskValue.TARGET_ONLY]
            )
        pick = torch.randint(len(choices), shape, generator=generator)
        masks[name] = choices[pick].to(MASK_DTYPE)
    masks["sentinel2_l2a"][1, :, :, 2] = MaskValue.MISSING
    masks["sentinel1"][0, :, :, 0] = MaskValue.MISSING
    masks["landsat"][0, :, :, 1, 1] = MaskValue.MISSING
    masks["cdl"][1] = MaskValue.MISSING
    return masks


def masked_views(patch_size: int, seed: int = 0) -> tuple[MaskedSample, MaskedSample]:
    """Two views of one batch: same data, independent masks, the same MISSING pattern."""
    generator = torch.Generator().manual_seed(seed)
    view_masks = [_token_masks(generator), _token_masks(generator)]
    data = {}
    for name in MODALITY_NAMES:
        spec = modalities.get(name)
        steps = STEPS if spec.is_multitemporal else 1
        pixels = (BATCH, ROWS * patch_size, COLS * patch_size, steps)
        values = torch.randn(*pixels, spec.num_bands, generator=generator)
        missing = view_masks[0][name] == MaskValue.MISSING  # [B, rows, cols, T, S]
        for index, bands in enumerate(spec.band_set_indices()):
            pixel_missing = missing[..., index]
            pixel_missing = pixel_missing.repeat_interleave(patch_size, 1)
            pixel_missing = pixel_missing.repeat_interleave(patch_size, 2)
            band_values = values[..., list(bands)]
            band_values[pixel_missing] = modalities.MISSING_VALUE
            values[..., list(bands)] = band_values
        data[name] = values
    months = torch.randint(0, 12, (BATCH, STEPS), generator=generator)
    timestamps = torch.stack(
        [torch.full_like(months, 15), months, torch.full_like(months, 2021)], dim=-1
    )
    views = []
    for token_masks in view_masks:
        pixel_masks = {
            name: mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
            for name, mask in token_masks.items()
        }
        views.append(MaskedSample(data=data, masks=pixel_masks, timestamps=timestamps))
    return views[0], views[1]


# -- models and one full step ------------------------------------------------------------------


def _perturb_(model: torch.nn.Module, seed: int) -> None:
    """Adds noise to every trainable-shaped parameter except the fixed month tables, so that
    zero-initialised ones (channel embeddings, mask token) and unit LayerNorms carry signal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "month_embed" not in name:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


@functools.cache
def models_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """(reference, ours) at the nano size, drop_path 0, the same weights, train mode."""
    size = sizes.get_size("nano")
    torch.manual_seed(0)
    reference = build_reference(size, drop_path=0.0)
    _perturb_(reference, seed=1)
    ours_config = LatentMIMConfig.from_size(size)
    ours_config = dataclasses.replace(
        ours_config, encoder=dataclasses.replace(ours_config.encoder, drop_path=0.0)
    )
    ours = ours_config.build()
    rc.load_reference_checkpoint(reference.state_dict(), ours)
    return reference.train(), ours.train()


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double() - b.detach().double()).abs().max().item() if a.numel() else 0.0


def _masked_max_abs(
    ours: dict[str, torch.Tensor],
    theirs: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    value: MaskValue,
) -> tuple[dict[str, float], int]:
    """Per modality max abs diff over tokens whose mask equals `value`; and how many tokens."""
    diffs, count = {}, 0
    for name, mask in masks.items():
        selected = mask == value
        count += int(selected.sum())
        if selected.any():
            diffs[name] = _max_abs(ours[name][selected], theirs[name][selected])
    return diffs, count


def _token_level(x: MaskedSample, patch_size: int) -> dict[str, torch.Tensor]:
    return {name: mask[:, ::patch_size, ::patch_size] for name, mask in x.masks.items()}


@functools.cache
def parity_step(patch_size: int) -> dict:
    """Both models through one v1 training step on the same two views; all differences."""
    reference, ours = models_pair()
    view_a, view_b = masked_views(patch_size)
    reference.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    result: dict = {"tokens": {}}
    theirs_views, ours_views = [], []
    for label, view in (("a", view_a), ("b", view_b)):
        theirs_out = reference_step(reference, view, patch_size)
        ours_out = our_step(ours, view, patch_size)
        theirs_views.append(theirs_out)
        ours_views.append(ours_out)
        masks = _token_level(view, patch_size)
        result[f"latent_{label}"] = _masked_max_abs(
            ours_out["latent"], theirs_out["latent"], masks, MaskValue.ONLINE_ENCODER
        )
        result[f"decoded_{label}"] = _masked_max_abs(
            ours_out["decoded"], theirs_out["decoded"], masks, MaskValue.DECODER
        )
        result[f"target_{label}"] = _masked_max_abs(
            ours_out["target"], theirs_out["target"], masks, MaskValue.DECODER
        )
        result[f"pooled_{label}"] = _max_abs(ours_out["pooled"], theirs_out["pooled"])
        result[f"loss_{label}"] = (ours_out["loss"].item(), theirs_out["loss"].item())
    theirs_nce = RefInfoNCE(tau=TAU, weight=INFO_NCE_WEIGHT).compute(
        theirs_views[0]["pooled"], theirs_views[1]["pooled"]
    )
    ours_nce = InfoNCELossConfig(tau=TAU, weight=INFO_NCE_WEIGHT).build()(
        ours_views[0]["pooled"], ours_views[1]["pooled"]
    )
    result["info_nce"] = (ours_nce.item(), theirs_nce.item())
    # The v1 objective: mean of the two views' token losses plus the weighted InfoNCE.
    theirs_total = (theirs_views[0]["loss"] + theirs_views[1]["loss"]) / 2 + theirs_nce
    ours_total = (ours_views[0]["loss"] + ours_views[1]["loss"]) / 2 + ours_nce
    result["total"] = (ours_total.item(), theirs_total.item())
    theirs_total.backward()
    ours_total.backward()
    result["gradients"] = _gradient_diffs(reference, ours)
    return result


def _reference_gradients(module: torch.nn.Module, component: str) -> dict[str, torch.Tensor]:
    """The module's gradients as a state dict in our naming (converted like weights)."""
    gradients = {}
    for name, parameter in module.named_parameters():
        if "month_embed" in name:
            gradients[name] = parameter.detach()  # frozen table; the converter checks it
        elif parameter.grad is None:
            gradients[name] = torch.zeros_like(parameter)
        else:
            gradients[name] = parameter.grad
    return rc.convert_reference_state_dict(gradients, component=component)


def _gradient_diffs(reference, ours) -> dict[str, float]:
    """Max abs gradient difference per component; parameters ours freezes must have exactly zero
    gradient in the reference (the decode-only maps' online patch embeddings)."""
    diffs = {}
    for component, theirs_module, ours_module in (
        ("encoder", reference.encoder, ours.encoder),
        ("predictor", reference.decoder, ours.decoder),
    ):
        theirs = _reference_gradients(theirs_module, component)
        worst, frozen_worst = 0.0, 0.0
        for name, parameter in ours_module.named_parameters():
            if parameter.requires_grad:
                assert parameter.grad is not None, f"{component}.{name} got no gradient"
                worst = max(worst, _max_abs(parameter.grad, theirs[name]))
            else:
                frozen_worst = max(frozen_worst, theirs[name].abs().max().item())
        diffs[component] = worst
        diffs[f"{component}_frozen_in_ours"] = frozen_worst
    return diffs


def _report(label: str, patch_size: int, value) -> None:
    print(f"parity p={patch_size} {label}: {value}")


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_encoder_tokens_match_at_visible_positions(patch_size):
    step = parity_step(patch_size)
    for view in ("a", "b"):
        diffs, count = step[f"latent_{view}"]
        _report(f"encoder tokens view {view} ({count} visible)", patch_size, diffs)
        assert count > 0
        assert max(diffs.values()) <= TOLERANCE, diffs


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_pooled_vectors_match(patch_size):
    step = parity_step(patch_size)
    for view in ("a", "b"):
        _report(f"pooled view {view}", patch_size, step[f"pooled_{view}"])
        assert step[f"pooled_{view}"] <= TOLERANCE


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_predictions_match_at_decoded_positions(patch_size):
    step = parity_step(patch_size)
    for view in ("a", "b"):
        diffs, count = step[f"decoded_{view}"]
        _report(f"predictions view {view} ({count} decoded)", patch_size, diffs)
        assert count > 0
        assert set(diffs) == set(MODALITY_NAMES)  # every modality is decoded somewhere
        assert max(diffs.values()) <= TOLERANCE, diffs


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_targets_match_at_decoded_positions(patch_size):
    step = parity_step(patch_size)
    for view in ("a", "b"):
        diffs, _ = step[f"target_{view}"]
        _report(f"targets view {view}", patch_size, diffs)
        assert max(diffs.values()) <= TOLERANCE, diffs


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_patch_discrimination_losses_match(patch_size):
    step = parity_step(patch_size)
    for view in ("a", "b"):
        ours, theirs = step[f"loss_{view}"]
        _report(f"patch discrimination view {view} (ours, reference)", patch_size, (ours, theirs))
        assert abs(ours - theirs) <= TOLERANCE


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_info_nce_and_total_losses_match(patch_size):
    step = parity_step(patch_size)
    for key in ("info_nce", "total"):
        ours, theirs = step[key]
        _report(f"{key} (ours, reference)", patch_size, (ours, theirs))
        assert abs(ours - theirs) <= TOLERANCE


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_gradients_of_the_v1_loss_match(patch_size):
    gradients = parity_step(patch_size)["gradients"]
    _report("max abs gradient diff", patch_size, gradients)
    assert gradients["encoder_frozen_in_ours"] == 0.0
    assert gradients["predictor_frozen_in_ours"] == 0.0
    assert gradients["encoder"] <= TOLERANCE
    assert gradients["predictor"] <= TOLERANCE


def test_the_converter_fixture_is_the_installed_reference_layout():
    fixture = json.loads(FIXTURE.read_text())
    config = fixture["config"]
    size = sizes.ModelSize(
        config["encoder_width"],
        config["encoder_depth"],
        config["encoder_heads"],
        config["decoder_width"],
        config["decoder_depth"],
        config["decoder_heads"],
        config["mlp_ratio"],
    )
    assert tuple(config["modalities"]) == MODALITY_NAMES
    with torch.device("meta"):
        reference = build_reference(size, drop_path=0.1)
    layout = [[key, list(value.shape)] for key, value in reference.state_dict().items()]
    assert layout == fixture["state_dict"]


def test_our_exported_weights_load_strictly_into_the_reference():
    _, ours = models_pair()
    reference = build_reference(sizes.get_size("nano"), drop_path=0.0, projection_only_target=True)
    reference.load_state_dict(rc.reference_state_dict_of(ours), strict=True)
    for key, value in reference.encoder.state_dict().items():
        if key.startswith("blocks.0.attn.k."):
            width = value.shape[0]
            part = key.rsplit(".", 1)[1]
            fused = ours.encoder.state_dict()[f"blocks.0.attn.qkv.{part}"]
            assert torch.equal(value, fused[width : 2 * width])


@pytest.mark.parametrize("name", ["nano", "base_shallow_decoder"])
def test_parameter_counts_differ_only_by_the_frozen_month_tables_and_the_dead_target(name):
    size = sizes.get_size(name)
    with torch.device("meta"):
        reference = build_reference(size, drop_path=0.1)
        ours = LatentMIMConfig.from_size(size).build()

    def count(module: torch.nn.Module, trainable: bool = False) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)

    ours_counts = ours.parameter_counts()
    month_encoder = 12 * size.encoder_width // 4  # a Parameter there, a buffer here
    month_decoder = 12 * size.decoder_width // 4
    print(
        f"parameters {name}: reference encoder {count(reference.encoder)} decoder "
        f"{count(reference.decoder)} target {count(reference.target_encoder)} trainable "
        f"{count(reference, trainable=True)}; ours {ours_counts} trainable "
        f"{count(ours, trainable=True)}"
    )
    assert ours_counts["encoder"] + month_encoder == count(reference.encoder)
    assert ours_counts["decoder"] + month_decoder == count(reference.decoder)
    assert ours_counts["target"] == count(reference.target_encoder.patch_embeddings)
    # Ours freezes what the decode-only maps own in the online encoder (patch and band-set
    # embeddings): the reference trains them with an exactly-zero gradient (see the gradient test).
    channel_embeddings = reference.encoder.composite_encodings.per_modality_channel_embeddings
    decode_only = sum(
        count(reference.encoder.patch_embeddings.per_modality_embeddings[m])
        + channel_embeddings[m].numel()
        for m in MODALITY_NAMES
        if modalities.get(m).decode_only
    )
    assert count(ours, trainable=True) + decode_only == count(reference, trainable=True)
