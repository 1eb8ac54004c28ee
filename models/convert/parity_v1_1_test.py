"""Numerical parity with the reference OlmoEarth v1.1 (olmoearth-pretrain 0.1.2).

Skips without the reference. Run it in the reference's environment (-rP prints the measured
differences):
    cd /work/main
    PYTHONPATH=. <python with olmoearth-pretrain 0.1.2> -m pytest -q -rP \
        models/convert/parity_v1_1_test.py

Both models are v1.1 nano (per-pixel hidden width 12, single band set for S2 and Landsat, band
dropout enabled on the online encoder) with drop_path 0; the reference's weights, perturbed so no
parameter keeps a symmetric init, are loaded into ours with models/convert/reference_v1_1.py.
Both run the same two masked views in fp32 train mode at every patch size 1..8, with MISSING
timesteps, and every quantity of a v1.1 training step is compared within 1e-5: encoder tokens at
ONLINE_ENCODER positions, pooled vectors, predictions at DECODER positions, targets, the
masked-negatives patch-discrimination loss, InfoNCE (weight 0.05), the total and the gradients.

Band dropout is ON in both, with the same masks: the reference processes modalities in Python
set order (a per-process hash order), so its global-RNG draws cannot line up with ours across
modalities. The test therefore draws one keep mask per view and modality itself and hands it to
both (ours through `BandDropout.draw_keep_mask`, the reference through its
`_apply_band_dropout`); that both draw the same masks from the same seed is checked separately,
on one modality, by `test_band_dropout_draws_the_reference_masks_from_the_same_seed`.
"""

from __future__ import annotations

import contextlib
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
from olmoearth_pretrain.nn.flexi_vit import (  # noqa: E402
    MultiModalPatchEmbeddings as RefMultiModalPatchEmbeddings,
)
from olmoearth_pretrain.train.loss import InfoNCELoss as RefInfoNCE  # noqa: E402
from olmoearth_pretrain.train.loss import (  # noqa: E402
    ModalityPatchDiscriminationMaskedNegativesVec as RefMaskedNegatives,
)

from models.convert import reference_v1_1 as rc11  # noqa: E402
from models.convert.reference_batch import reference_tokens, to_reference_sample  # noqa: E402
from models.convert.reference_batch_v1_1 import (  # noqa: E402
    build_reference_v1_1,
    reference_tokenization,
)
from models.latent_mim import sizes  # noqa: E402
from models.latent_mim.v1_1 import LatentMIMV11Config  # noqa: E402
from models.losses.info_nce import InfoNCELossConfig  # noqa: E402
from models.losses.patch_discrimination import (  # noqa: E402
    DECODE_ONLY_MODALITIES,
    MaskedNegativesPatchDiscriminationLossConfig,
)
from models.modalities import modalities  # noqa: E402
from models.modalities.samples import MASK_DTYPE, MaskedSample, MaskValue  # noqa: E402
from models.nn.per_pixel_patch_embed import PerPixelMultiModalPatchEmbed  # noqa: E402

TOLERANCE = 1e-5
"""Max abs difference allowed for every compared quantity (fp32; values are O(1))."""

PATCH_SIZES = tuple(range(1, 9))

ROWS, COLS, STEPS, BATCH = 3, 4, 3, 2
"""Patches per side (rows != cols catches a swapped 2-D encoding), timesteps, samples."""

TAU, INFO_NCE_WEIGHT, SAME_TARGET = 0.1, 0.05, 0.999
"""The v1.1 recipe: masked-negatives patch discrimination (tau 0.1, same-target threshold
0.999 on the maps), InfoNCE tau 0.1 with weight 0.05."""

NANO_PIXEL_HIDDEN = 12
MODALITY_NAMES = modalities.TRAINING_MODALITIES
TOKENIZATION = modalities.SINGLE_BANDSET_TOKENIZATION
DROPOUT_MODALITIES = ("sentinel2_l2a", "landsat")
FIXTURE = pathlib.Path(__file__).parent / "testdata" / "reference_v1_1_small_state_dict.json"


# -- band dropout masks shared by both sides ---------------------------------------------------


def _keep_masks(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One [B, C] keep mask per dropout modality: about a third of the bands dropped, at least
    one band dropped and one kept in every sample, so the dropout visibly acts."""
    masks = {}
    for name in DROPOUT_MODALITIES:
        bands = TOKENIZATION.spec(name).num_bands
        keep = torch.rand(BATCH, bands, generator=generator) >= 1 / 3
        keep[:, 0] = True
        keep[:, 1] = False
        masks[name] = keep
    return masks


@contextlib.contextmanager
def _shared_band_dropout(reference, ours, keep: dict[str, torch.Tensor], calls: list[str]):
    """Both models drop exactly the bands in `keep` (modality -> [B, C]); `calls` records which
    side dropped which modality."""
    by_bands = {mask.shape[1]: name for name, mask in keep.items()}
    assert len(by_bands) == len(keep)  # S2 (12 bands) and Landsat (11) are told apart by C

    def reference_drop(data: torch.Tensor, rate: float) -> torch.Tensor:
        del rate
        name = by_bands[data.shape[-1]]
        calls.append(f"reference:{name}")
        mask = keep[name].view(data.shape[0], *([1] * (data.dim() - 2)), data.shape[-1])
        return data * mask.to(data.dtype)

    def our_draw(name: str):
        def draw(batch: int, bands: int, device: torch.device) -> torch.Tensor:
            calls.append(f"ours:{name}")
            return keep[name]

        return draw

    original = RefMultiModalPatchEmbeddings.__dict__["_apply_band_dropout"]
    RefMultiModalPatchEmbeddings._apply_band_dropout = staticmethod(reference_drop)
    dropouts = ours.encoder.patch_embed.band_dropouts()
    for name, dropout in dropouts.items():
        dropout.draw_keep_mask = our_draw(name)
    try:
        yield
    finally:
        RefMultiModalPatchEmbeddings._apply_band_dropout = original
        for dropout in dropouts.values():
            del dropout.draw_keep_mask


# -- one step on each side ---------------------------------------------------------------------


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
    loss = RefMaskedNegatives(
        tau=TAU,
        same_target_threshold=SAME_TARGET,
        mask_negatives_for_modalities=list(DECODE_ONLY_MODALITIES),
    ).compute(decoded, target)
    return {
        "latent": reference_tokens(latent),
        "decoded": reference_tokens(decoded),
        "pooled": pooled,
        "target": reference_tokens(target),
        "loss": loss,
    }


def our_step(model, x: MaskedSample, patch_size: int) -> dict:
    output = model(x, patch_size)
    target = model.target_tokens(x, patch_size)
    loss_config = MaskedNegativesPatchDiscriminationLossConfig(
        tau=TAU, same_target_threshold=SAME_TARGET
    )
    return {
        "latent": output.latent.tokens,
        "decoded": output.decoded.tokens,
        "pooled": output.pooled,
        "target": target.tokens,
        "loss": loss_config.build()(output.decoded, target),
    }


# -- the batch ---------------------------------------------------------------------------------


def _token_masks(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-token masks [B, rows, cols, T, S] of one view (S = 1 for every modality in v1.1).

    Encodable modalities mix ONLINE_ENCODER, DECODER and TARGET_ONLY; the maps mix DECODER and
    TARGET_ONLY. MISSING: S2 timestep 2 of sample 1, S1 timestep 0 of sample 0, Landsat
    timestep 1 of sample 0, CDL for all of sample 1.
    """
    masks = {}
    for spec in TOKENIZATION.specs(MODALITY_NAMES):
        steps = STEPS if spec.is_multitemporal else 1
        shape = (BATCH, ROWS, COLS, steps, spec.num_band_sets)
        if spec.decode_only:
            choices = torch.tensor([MaskValue.DECODER, MaskValue.TARGET_ONLY])
        else:
            choices = torch.tensor(
                [MaskValue.ONLINE_ENCODER, MaskValue.DECODER, MaskValue.TARGET_ONLY]
            )
        pick = torch.randint(len(choices), shape, generator=generator)
        masks[spec.name] = choices[pick].to(MASK_DTYPE)
    masks["sentinel2_l2a"][1, :, :, 2] = MaskValue.MISSING
    masks["sentinel1"][0, :, :, 0] = MaskValue.MISSING
    masks["landsat"][0, :, :, 1] = MaskValue.MISSING
    masks["cdl"][1] = MaskValue.MISSING
    return masks


def masked_views(patch_size: int, seed: int = 0) -> tuple[MaskedSample, MaskedSample]:
    """Two views of one batch: same data, independent masks, the same MISSING pattern.

    WorldCover is one value per sample, so all its patches in a sample have the same target:
    the masked-negatives loss must drop them as negatives (the case it exists for).
    """
    generator = torch.Generator().manual_seed(seed)
    view_masks = [_token_masks(generator), _token_masks(generator)]
    data = {}
    for spec in TOKENIZATION.specs(MODALITY_NAMES):
        steps = STEPS if spec.is_multitemporal else 1
        pixels = (BATCH, ROWS * patch_size, COLS * patch_size, steps)
        values = torch.randn(*pixels, spec.num_bands, generator=generator)
        if spec.name == "worldcover":
            values = values[:, :1, :1].expand_as(values).clone()
        missing = view_masks[0][spec.name][..., 0] == MaskValue.MISSING  # [B, rows, cols, T]
        missing = missing.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
        values[missing] = modalities.MISSING_VALUE
        data[spec.name] = values
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
    """Adds noise to every parameter except the fixed month tables, so that zero-initialised
    ones (channel embeddings, mask token) and unit LayerNorms carry signal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "month_embed" not in name:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


@functools.cache
def models_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """(reference, ours): v1.1 nano, drop_path 0, the same weights, train mode."""
    size = sizes.get_size("nano")
    torch.manual_seed(0)
    reference = build_reference_v1_1(size, drop_path=0.0, pixel_hidden_width=NANO_PIXEL_HIDDEN)
    _perturb_(reference, seed=1)
    config = LatentMIMV11Config.from_size(size)
    config = dataclasses.replace(config, encoder=dataclasses.replace(config.encoder, drop_path=0.0))
    ours = config.build()
    rc11.load_reference_v1_1_checkpoint(reference.state_dict(), ours)
    return reference.train(), ours.train()


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double() - b.detach().double()).abs().max().item() if a.numel() else 0.0


def _masked_max_abs(ours, theirs, masks, value: MaskValue) -> tuple[dict[str, float], int]:
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
    """Both models through one v1.1 training step on the same two views; all differences."""
    reference, ours = models_pair()
    view_a, view_b = masked_views(patch_size)
    keep_generator = torch.Generator().manual_seed(100 + patch_size)
    reference.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    result: dict = {"dropout_calls": []}
    theirs_views, ours_views = [], []
    for label, view in (("a", view_a), ("b", view_b)):
        calls: list[str] = []
        with _shared_band_dropout(reference, ours, _keep_masks(keep_generator), calls):
            theirs_out = reference_step(reference, view, patch_size)
            ours_out = our_step(ours, view, patch_size)
        result["dropout_calls"].append(sorted(calls))
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
    return rc11.convert_reference_v1_1_state_dict(gradients, component=component)


def _gradient_diffs(reference, ours) -> dict[str, float]:
    """Max abs gradient difference per component; the largest gradient our per-pixel layers
    got (they must train); parameters ours freezes must have exactly zero gradient in the
    reference (the maps' online patch embeddings)."""
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
    diffs["encoder_pixel_proj_largest_gradient"] = max(
        parameter.grad.abs().max().item()
        for name, parameter in ours.encoder.named_parameters()
        if "pixel_proj" in name and parameter.requires_grad
    )
    return diffs


def _report(label: str, patch_size: int, value) -> None:
    print(f"parity v1.1 p={patch_size} {label}: {value}")


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_band_dropout_ran_on_s2_and_landsat_in_both_models(patch_size):
    expected = sorted(
        f"{side}:{name}" for side in ("ours", "reference") for name in DROPOUT_MODALITIES
    )
    assert parity_step(patch_size)["dropout_calls"] == [expected, expected]


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
def test_masked_negatives_patch_discrimination_losses_match(patch_size):
    step = parity_step(patch_size)
    for view in ("a", "b"):
        ours, theirs = step[f"loss_{view}"]
        _report(f"masked-negatives loss view {view} (ours, reference)", patch_size, (ours, theirs))
        assert abs(ours - theirs) <= TOLERANCE


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_info_nce_and_total_losses_match(patch_size):
    step = parity_step(patch_size)
    for key in ("info_nce", "total"):
        ours, theirs = step[key]
        _report(f"{key} (ours, reference)", patch_size, (ours, theirs))
        assert abs(ours - theirs) <= TOLERANCE


@pytest.mark.parametrize("patch_size", PATCH_SIZES)
def test_gradients_of_the_v1_1_loss_match(patch_size):
    gradients = parity_step(patch_size)["gradients"]
    _report("max abs gradient diff", patch_size, gradients)
    assert gradients["encoder_frozen_in_ours"] == 0.0
    assert gradients["predictor_frozen_in_ours"] == 0.0
    assert gradients["encoder"] <= TOLERANCE
    assert gradients["encoder_pixel_proj_largest_gradient"] > 1e-4
    assert gradients["predictor"] <= TOLERANCE


def test_masked_negatives_acts_on_the_constant_worldcover():
    """The batch makes same-target negatives exist: without masking them the loss differs."""
    _, ours = models_pair()
    view, _ = masked_views(patch_size=2)
    with torch.no_grad():
        output = ours(view, 2)
        target = ours.target_tokens(view, 2)
    masked = MaskedNegativesPatchDiscriminationLossConfig(tau=TAU).build()(output.decoded, target)
    unmasked = MaskedNegativesPatchDiscriminationLossConfig(
        tau=TAU, mask_negatives_for_modalities=()
    ).build()(output.decoded, target)
    assert abs(masked.item() - unmasked.item()) > 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2, 4])
def test_band_dropout_draws_the_reference_masks_from_the_same_seed(seed):
    """One modality (S2, 12 bands), the reference's MultiModalPatchEmbeddings and ours with the
    same weights, dropout on, the same global seed: the same rate and bands are drawn. (Seed 3
    draws a rate so small that no band of the 16 samples drops; it would test nothing.)"""
    names = ["sentinel2_l2a"]
    theirs = RefMultiModalPatchEmbeddings(
        names,
        max_patch_size=8,
        embedding_size=32,
        tokenization_config=reference_tokenization(TOKENIZATION),
        use_linear_patch_embed=True,
        band_dropout_rate=0.2,
        random_band_dropout=True,
        band_dropout_modalities=names,
        patch_embed_hidden_sizes=[NANO_PIXEL_HIDDEN],
    ).train()
    ours = PerPixelMultiModalPatchEmbed(
        TOKENIZATION.specs(names),
        32,
        NANO_PIXEL_HIDDEN,
        band_dropout_rate=0.2,
        band_dropout_modalities=names,
    ).train()
    ours.enable_band_dropout()
    prefix = "per_modality_embeddings.sentinel2_l2a.sentinel2_l2a__0"
    reference_weights = theirs.state_dict()
    ours.load_state_dict(
        {
            f"modalities.sentinel2_l2a.band_sets.0.{part}.{kind}": reference_weights[
                f"{prefix}.{theirs_part}.{kind}"
            ]
            for part, theirs_part in (("pixel_proj", "pixel_proj.0"), ("proj", "proj"))
            for kind in ("weight", "bias")
        }
    )
    generator = torch.Generator().manual_seed(seed)
    data = torch.rand(16, 4, 4, 2, 12, generator=generator) + 0.5
    mask = torch.zeros(16, 4, 4, 2, 1, dtype=MASK_DTYPE)
    sample = MaskedSample(
        data={"sentinel2_l2a": data},
        masks={"sentinel2_l2a": mask},
        timestamps=torch.tensor([[15, 0, 2020], [15, 1, 2020]]).expand(16, 2, 3),
    )
    torch.manual_seed(seed)
    theirs_tokens = theirs(to_reference_sample(sample), patch_size=2)["sentinel2_l2a"]
    torch.manual_seed(seed)
    ours_tokens = ours(sample, patch_size=2).tokens["sentinel2_l2a"]
    with torch.no_grad():
        undropped = ours.eval()(sample, patch_size=2).tokens["sentinel2_l2a"]
    print(f"band dropout seed {seed}: max abs diff {_max_abs(ours_tokens, theirs_tokens)}")
    assert _max_abs(ours_tokens, theirs_tokens) <= 1e-6
    assert _max_abs(ours_tokens, undropped) > 1e-3  # some band was dropped


def test_our_exported_v1_1_weights_load_strictly_into_the_reference():
    _, ours = models_pair()
    reference = build_reference_v1_1(
        sizes.get_size("nano"),
        drop_path=0.0,
        pixel_hidden_width=NANO_PIXEL_HIDDEN,
        projection_only_target=True,
    )
    exported = rc11.reference_v1_1_state_dict_of(ours)
    reference.load_state_dict(exported, strict=True)
    key = "encoder.patch_embeddings.per_modality_embeddings.landsat.landsat__0.pixel_proj.0.weight"
    assert torch.equal(
        exported[key],
        ours.state_dict()["encoder.patch_embed.modalities.landsat.band_sets.0.pixel_proj.weight"],
    )


@pytest.mark.parametrize(
    "name, pixel_hidden_width",
    [("nano", 12), ("tiny_shallow_decoder", 64), ("base_shallow_decoder", 64)],
)
def test_parameter_counts_match_but_for_month_tables_and_the_dead_target(name, pixel_hidden_width):
    size = sizes.get_size(name)
    with torch.device("meta"):
        reference = build_reference_v1_1(size, drop_path=0.1, pixel_hidden_width=pixel_hidden_width)
        ours = LatentMIMV11Config.from_size(size).build()
    assert ours.encoder.config.resolved_pixel_hidden_width == pixel_hidden_width
    counts = ours.parameter_counts()
    month_encoder = 12 * size.encoder_width // 4  # a Parameter there, a buffer here
    month_decoder = 12 * size.decoder_width // 4
    theirs_encoder = sum(p.numel() for p in reference.encoder.parameters())
    theirs_decoder = sum(p.numel() for p in reference.decoder.parameters())
    theirs_target = sum(p.numel() for p in reference.target_encoder.patch_embeddings.parameters())
    print(f"parameters v1.1 {name}: reference {theirs_encoder} / {theirs_decoder}; ours {counts}")
    assert counts["encoder"] + month_encoder == theirs_encoder
    assert counts["decoder"] + month_decoder == theirs_decoder
    assert counts["target"] == theirs_target


def test_the_v1_1_converter_fixture_is_the_installed_reference_layout():
    """reference_v1_1_test.py converts synthetic state dicts of this layout without the
    reference; this keeps the fixture equal to what the installed reference builds."""
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
        reference = build_reference_v1_1(
            size, drop_path=0.1, pixel_hidden_width=config["pixel_hidden_width"]
        )
    layout = [[key, list(value.shape)] for key, value in reference.state_dict().items()]
    assert layout == fixture["state_dict"]
