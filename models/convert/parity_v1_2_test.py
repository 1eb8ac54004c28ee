"""Numerical parity with the reference OlmoEarth v1.2 (olmoearth-pretrain 0.1.2): model and losses.

Skips without the reference. Run it in the reference's environment (-rP prints the measured
differences):
    ./tools/bazel test --config=reference //models/convert:parity_v1_2_test

The pinned reference has every v1.2 ingredient (PositionEncoding rope / rope_mixed / rope_3d /
rope_3d_mixed, rope_temporal_coordinate_scale, num_register_tokens, qk_norm), so each is checked
against its code. Both models are v1.2 nano (v1.1 + rope_3d_mixed with mixed base 1e4 and time
= days since 2000 / 30, in encoder and decoder) with drop_path 0 and a projection-only target;
the reference's weights, perturbed so that no parameter keeps a symmetric init, are loaded into
ours with models/convert/reference_v1_2.py. Both run the same two masked views (all nine
modalities, missing timesteps, timestamps spread over 2017-2023 so the time coordinate matters)
in fp32 train mode, and every quantity of a v1.2 training step is compared at patch sizes 1..8:
encoder tokens at ONLINE_ENCODER positions, pooled vectors, predictions at DECODER positions,
the masked-negatives patch discrimination and InfoNCE losses, and the gradients of the total.
The other RoPE kinds, register tokens and qk-norm are checked the same way at one patch size.

Band dropout is off on both sides (rate 0): v1.2 adds nothing to it, and v1.1's parity test
(parity_v1_1_test.py) checks it with both models drawing the same masks.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import pytest

from models.testing import reference_env

# Under Bazel the reference lives in @reference's site-packages, put on sys.path here.
reference_env.activate()
pytest.importorskip("olmoearth_pretrain")

import torch  # noqa: E402
from olmoearth_pretrain.nn.flexi_vit import EncoderConfig as RefEncoderConfig  # noqa: E402
from olmoearth_pretrain.nn.flexi_vit import PredictorConfig as RefPredictorConfig  # noqa: E402
from olmoearth_pretrain.nn.latent_mim import LatentMIMConfig as RefLatentMIMConfig  # noqa: E402
from olmoearth_pretrain.nn.tokenization import (  # noqa: E402
    ModalityTokenization as RefModalityTokenization,
)
from olmoearth_pretrain.nn.tokenization import (  # noqa: E402
    TokenizationConfig as RefTokenizationConfig,
)
from olmoearth_pretrain.train.loss import InfoNCELoss as RefInfoNCE  # noqa: E402
from olmoearth_pretrain.train.loss import (  # noqa: E402
    ModalityPatchDiscriminationMaskedNegativesVec as RefMaskedNegatives,
)

from models.convert import reference_v1_2 as rc12  # noqa: E402
from models.convert.reference_batch import reference_tokens, to_reference_sample  # noqa: E402
from models.latent_mim import sizes  # noqa: E402
from models.latent_mim.v1_2 import LatentMIMV12Config  # noqa: E402
from models.losses.info_nce import InfoNCELossConfig  # noqa: E402
from models.losses.patch_discrimination import (  # noqa: E402
    DECODE_ONLY_MODALITIES,
    MaskedNegativesPatchDiscriminationLossConfig,
)
from models.modalities import modalities  # noqa: E402
from models.modalities.samples import MASK_DTYPE, MaskedSample, MaskValue  # noqa: E402
from models.nn.rope import RopeConfig  # noqa: E402

TOLERANCE = 1e-5
"""Max abs difference allowed for every compared quantity (fp32; values are O(1))."""

PATCH_SIZES = tuple(range(1, 9))

ROWS, COLS, STEPS, BATCH = 3, 4, 3, 2
"""Patches per side (rows != cols catches swapped row/col coordinates), timesteps, samples."""

TAU, INFO_NCE_WEIGHT, SAME_TARGET = 0.1, 0.05, 0.999
"""The v1.2 recipe's losses (as v1.1): masked-negatives patch discrimination (tau 0.1,
same-target threshold 0.999 on the maps), InfoNCE tau 0.1 with weight 0.05."""

MIXED_BASE, TEMPORAL_SCALE = 1e4, 1.0 / 30.0
"""v1.2's rope_mixed_base and rope_temporal_coordinate_scale (scripts/official/v1_2)."""

NANO_PIXEL_HIDDEN = 12
MODALITY_NAMES = modalities.TRAINING_MODALITIES
TOKENIZATION = modalities.SINGLE_BANDSET_TOKENIZATION


@dataclasses.dataclass(frozen=True)
class Variant:
    """The v1.2 attention options both models are built with."""

    kind: str = "rope_3d_mixed"
    registers: int = 0
    qk_norm: bool = False


V1_2 = Variant()
OPTION_VARIANTS = (
    Variant(registers=2, qk_norm=True),
    Variant(kind="rope", qk_norm=True),
    Variant(kind="rope_mixed", registers=1),
    Variant(kind="rope_3d"),
)
OPTION_PATCH_SIZE = 3
"""The other kinds and options at one patch size (3: a non-integer resize factor, 3 -> 8 px)."""

CASES = [(V1_2, p) for p in PATCH_SIZES] + [(v, OPTION_PATCH_SIZE) for v in OPTION_VARIANTS]
CASE_IDS = [f"{v.kind}-reg{v.registers}-qk{int(v.qk_norm)}-p{p}" for v, p in CASES]


# -- the reference side ------------------------------------------------------------------------


def _reference_tokenization() -> RefTokenizationConfig:
    return RefTokenizationConfig(
        overrides={
            name: RefModalityTokenization(band_groups=[list(group) for group in groups])
            for name, groups in TOKENIZATION.band_groups.items()
        }
    )


def build_reference_v1_2(
    size: sizes.ModelSize, variant: Variant, pixel_hidden_width: int, drop_path: float = 0.0
) -> torch.nn.Module:
    """The reference's v1.2 LatentMIM (v1.1 options + RoPE in encoder and decoder), band
    dropout off, projection-only target."""
    names = list(MODALITY_NAMES)
    rope = dict(
        position_encoding=variant.kind,
        rope_mixed_base=MIXED_BASE,
        rope_temporal_coordinate_scale=TEMPORAL_SCALE,
        qk_norm=variant.qk_norm,
        tokenization_config=_reference_tokenization(),
        max_sequence_length=12,
        supported_modality_names=names,
        mlp_ratio=size.mlp_ratio,
    )
    encoder = RefEncoderConfig(
        embedding_size=size.encoder_width,
        num_heads=size.encoder_heads,
        depth=size.encoder_depth,
        max_patch_size=8,
        drop_path=drop_path,
        use_linear_patch_embed=True,
        patch_embed_hidden_sizes=[pixel_hidden_width],
        num_register_tokens=variant.registers,
        **rope,
    )
    decoder = RefPredictorConfig(
        encoder_embedding_size=size.encoder_width,
        decoder_embedding_size=size.decoder_width,
        depth=size.decoder_depth,
        num_heads=size.decoder_heads,
        **rope,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # max_sequence_length is a no-op
        return RefLatentMIMConfig(
            encoder_config=encoder, decoder_config=decoder, projection_only_target=True
        ).build()


def reference_step(model, x: MaskedSample, patch_size: int) -> dict:
    """One view through the reference as its ContrastiveLatentMIM train module runs it."""
    sample = to_reference_sample(x)
    latent, decoded, pooled, _, _ = model(sample, patch_size)
    with torch.no_grad():
        target = model.target_encoder(sample.unmask(), patch_size)["tokens_and_masks"]
    loss = RefMaskedNegatives(
        tau=TAU,
        same_target_threshold=SAME_TARGET,
        mask_negatives_for_modalities=list(DECODE_ONLY_MODALITIES),
    ).compute(decoded, target)
    return {
        "latent": reference_tokens(latent),
        "decoded": reference_tokens(decoded),
        "pooled": pooled,
        "loss": loss,
    }


# -- our side ----------------------------------------------------------------------------------


def build_ours(size: sizes.ModelSize, variant: Variant) -> torch.nn.Module:
    """Our v1.2 model with the variant's options, drop_path 0 and band dropout off."""
    rope = RopeConfig(kind=variant.kind, mixed_base=MIXED_BASE, temporal_scale=TEMPORAL_SCALE)
    config = LatentMIMV12Config.from_size(size, rope=rope)
    encoder = dataclasses.replace(
        config.encoder,
        drop_path=0.0,
        band_dropout_rate=0.0,
        num_register_tokens=variant.registers,
        qk_norm=variant.qk_norm,
    )
    decoder = dataclasses.replace(config.decoder, qk_norm=variant.qk_norm)
    return dataclasses.replace(config, encoder=encoder, decoder=decoder).build()


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
        "loss": loss_config.build()(output.decoded, target),
    }


# -- the batch ---------------------------------------------------------------------------------


def _token_masks(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-token masks [B, rows, cols, T, 1] of one view. Encodable modalities mix
    ONLINE_ENCODER, DECODER and TARGET_ONLY; the maps DECODER and TARGET_ONLY. MISSING: S2
    timestep 2 of sample 1, S1 timestep 0 of sample 0, Landsat timestep 1 of sample 0, CDL in
    sample 1."""
    masks = {}
    for spec in TOKENIZATION.specs(MODALITY_NAMES):
        steps = STEPS if spec.is_multitemporal else 1
        shape = (BATCH, ROWS, COLS, steps, spec.num_band_sets)
        values = [MaskValue.DECODER, MaskValue.TARGET_ONLY]
        if not spec.decode_only:
            values.insert(0, MaskValue.ONLINE_ENCODER)
        choices = torch.tensor(values)
        masks[spec.name] = choices[torch.randint(len(choices), shape, generator=generator)]
        masks[spec.name] = masks[spec.name].to(MASK_DTYPE)
    masks["sentinel2_l2a"][1, :, :, 2] = MaskValue.MISSING
    masks["sentinel1"][0, :, :, 0] = MaskValue.MISSING
    masks["landsat"][0, :, :, 1] = MaskValue.MISSING
    masks["cdl"][1] = MaskValue.MISSING
    return masks


def masked_views(patch_size: int, seed: int = 0) -> tuple[MaskedSample, MaskedSample]:
    """Two views of one batch: same data and timestamps, independent masks, same MISSING."""
    generator = torch.Generator().manual_seed(seed)
    view_masks = [_token_masks(generator), _token_masks(generator)]
    data = {}
    for spec in TOKENIZATION.specs(MODALITY_NAMES):
        steps = STEPS if spec.is_multitemporal else 1
        pixels = (BATCH, ROWS * patch_size, COLS * patch_size, steps)
        values = torch.randn(*pixels, spec.num_bands, generator=generator)
        missing = view_masks[0][spec.name][..., 0] == MaskValue.MISSING  # [B, rows, cols, T]
        missing = missing.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
        values[missing] = modalities.MISSING_VALUE
        data[spec.name] = values
    timestamps = torch.stack(
        [
            torch.randint(1, 29, (BATCH, STEPS), generator=generator),
            torch.randint(0, 12, (BATCH, STEPS), generator=generator),
            torch.randint(2017, 2024, (BATCH, STEPS), generator=generator),
        ],
        dim=-1,
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
    ones (channel embeddings, mask token, registers) and unit LayerNorms carry signal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "month_embed" not in name:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


@functools.cache
def models_pair(variant: Variant) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(reference, ours): v1.2 nano with `variant`, the same weights, train mode."""
    size = sizes.get_size("nano")
    torch.manual_seed(0)
    reference = build_reference_v1_2(size, variant, NANO_PIXEL_HIDDEN)
    _perturb_(reference, seed=1)
    ours = build_ours(size, variant)
    rc12.load_reference_v1_2_checkpoint(reference.state_dict(), ours)
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


@functools.cache
def parity_step(variant: Variant, patch_size: int) -> dict:
    """Both models through one v1.2 training step on the same two views; all differences."""
    reference, ours = models_pair(variant)
    reference.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    result: dict = {}
    theirs_views, ours_views = [], []
    for label, view in zip("ab", masked_views(patch_size), strict=True):
        theirs_out = reference_step(reference, view, patch_size)
        ours_out = our_step(ours, view, patch_size)
        theirs_views.append(theirs_out)
        ours_views.append(ours_out)
        masks = {name: mask[:, ::patch_size, ::patch_size] for name, mask in view.masks.items()}
        result[f"latent_{label}"] = _masked_max_abs(
            ours_out["latent"], theirs_out["latent"], masks, MaskValue.ONLINE_ENCODER
        )
        result[f"decoded_{label}"] = _masked_max_abs(
            ours_out["decoded"], theirs_out["decoded"], masks, MaskValue.DECODER
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
    return rc12.convert_reference_v1_2_state_dict(gradients, component=component)


def _gradient_diffs(reference, ours) -> dict[str, float]:
    """Max abs gradient difference per component, the v1.2 parameters (RoPE frequencies,
    qk-norms, registers) on their own; parameters ours freezes must have exactly zero gradient
    in the reference (the maps' online embeddings)."""
    diffs = {}
    for component, theirs_module, ours_module in (
        ("encoder", reference.encoder, ours.encoder),
        ("predictor", reference.decoder, ours.decoder),
    ):
        theirs = _reference_gradients(theirs_module, component)
        worst, v1_2_worst, frozen_worst = 0.0, 0.0, 0.0
        for name, parameter in ours_module.named_parameters():
            if parameter.requires_grad:
                assert parameter.grad is not None, f"{component}.{name} got no gradient"
                diff = _max_abs(parameter.grad, theirs[name])
                worst = max(worst, diff)
                if any(part in name for part in ("rope.", "_norm.", "register_tokens")):
                    v1_2_worst = max(v1_2_worst, diff)
            else:
                frozen_worst = max(frozen_worst, theirs[name].abs().max().item())
        diffs[component] = worst
        diffs[f"{component}_v1_2_parameters"] = v1_2_worst
        diffs[f"{component}_frozen_in_ours"] = frozen_worst
    return diffs


def _report(label: str, case: str, value) -> None:
    print(f"parity {case} {label}: {value}")


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant, patch_size", CASES, ids=CASE_IDS)
def test_encoder_tokens_match_at_visible_positions(variant, patch_size):
    step = parity_step(variant, patch_size)
    for view in "ab":
        diffs, count = step[f"latent_{view}"]
        _report(f"encoder tokens view {view} ({count} visible)", f"{variant} p={patch_size}", diffs)
        assert count > 0
        assert max(diffs.values()) <= TOLERANCE, diffs


@pytest.mark.parametrize("variant, patch_size", CASES, ids=CASE_IDS)
def test_pooled_vectors_match(variant, patch_size):
    step = parity_step(variant, patch_size)
    for view in "ab":
        _report(f"pooled view {view}", f"{variant} p={patch_size}", step[f"pooled_{view}"])
        assert step[f"pooled_{view}"] <= TOLERANCE


@pytest.mark.parametrize("variant, patch_size", CASES, ids=CASE_IDS)
def test_predictions_match_at_decoded_positions(variant, patch_size):
    step = parity_step(variant, patch_size)
    for view in "ab":
        diffs, count = step[f"decoded_{view}"]
        _report(f"predictions view {view} ({count} decoded)", f"{variant} p={patch_size}", diffs)
        assert set(diffs) == set(MODALITY_NAMES)  # every modality is decoded somewhere
        assert max(diffs.values()) <= TOLERANCE, diffs


@pytest.mark.parametrize("variant, patch_size", CASES, ids=CASE_IDS)
def test_losses_match(variant, patch_size):
    step = parity_step(variant, patch_size)
    for key in ("loss_a", "loss_b", "info_nce", "total"):
        ours, theirs = step[key]
        _report(f"{key} (ours, reference)", f"{variant} p={patch_size}", (ours, theirs))
        assert abs(ours - theirs) <= TOLERANCE


@pytest.mark.parametrize("variant, patch_size", CASES, ids=CASE_IDS)
def test_gradients_of_the_v1_2_loss_match(variant, patch_size):
    gradients = parity_step(variant, patch_size)["gradients"]
    _report("max abs gradient diff", f"{variant} p={patch_size}", gradients)
    assert gradients["encoder_frozen_in_ours"] == 0.0
    assert gradients["predictor_frozen_in_ours"] == 0.0
    assert gradients["encoder"] <= TOLERANCE
    assert gradients["predictor"] <= TOLERANCE


def test_our_exported_weights_load_strictly_into_the_reference():
    variant = Variant(registers=2, qk_norm=True)
    reference, ours = models_pair(variant)
    fresh = build_reference_v1_2(sizes.get_size("nano"), variant, NANO_PIXEL_HIDDEN)
    fresh.load_state_dict(rc12.reference_v1_2_state_dict_of(ours), strict=True)
    for key, value in reference.encoder.state_dict().items():
        if "rope_mixed_freqs" in key or "register_tokens" in key or "_norm." in key:
            assert torch.equal(fresh.encoder.state_dict()[key], value), key


@pytest.mark.parametrize("name", ["tiny_shallow_decoder", "base_shallow_decoder"])
def test_parameter_counts_differ_from_the_reference_only_by_the_month_tables(name):
    size = sizes.get_size(name)
    with torch.device("meta"):
        reference = build_reference_v1_2(size, V1_2, pixel_hidden_width=64, drop_path=0.1)
        ours = LatentMIMV12Config.from_size(name).build()
    counts = ours.parameter_counts()
    print(f"parameters {name}: ours {counts}")
    month_encoder = 12 * size.encoder_width // 4  # a Parameter there, a buffer here
    month_decoder = 12 * size.decoder_width // 4
    assert counts["encoder"] + month_encoder == sum(
        p.numel() for p in reference.encoder.parameters()
    )
    assert counts["decoder"] + month_decoder == sum(
        p.numel() for p in reference.decoder.parameters()
    )
