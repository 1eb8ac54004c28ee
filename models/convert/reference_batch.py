"""The reference OlmoEarth v1 model and batches in its types, for parity tests and benchmarks.

Shared by models/convert/parity_test.py and tools/bench: both build the reference's v1
LatentMIM (olmoearth-pretrain 0.1.2, scripts/official/v1) from one of our `ModelSize`s and feed
it our `MaskedSample`s. Importing this module needs the reference: under Bazel a target depends
on "//models/testing:reference_env" and "@reference//:olmoearth_pretrain", and this module puts
@reference's site-packages on sys.path first.
"""

from __future__ import annotations

import warnings

import torch

from models.latent_mim import sizes
from models.modalities import modalities
from models.modalities.samples import MaskedSample
from models.testing import reference_env

reference_env.activate()

from olmoearth_pretrain.datatypes import MaskedOlmoEarthSample  # noqa: E402
from olmoearth_pretrain.nn.flexi_vit import EncoderConfig as RefEncoderConfig  # noqa: E402
from olmoearth_pretrain.nn.flexi_vit import PredictorConfig as RefPredictorConfig  # noqa: E402
from olmoearth_pretrain.nn.latent_mim import LatentMIMConfig as RefLatentMIMConfig  # noqa: E402

V1_MODALITIES: tuple[str, ...] = modalities.TRAINING_MODALITIES
"""The nine modalities of the v1 recipe (S2, S1, Landsat encoded; six maps decode-only)."""


def build_reference(
    size: sizes.ModelSize,
    drop_path: float,
    projection_only_target: bool = False,
    modality_names: tuple[str, ...] = V1_MODALITIES,
    encoder_options: dict | None = None,
    decoder_options: dict | None = None,
) -> torch.nn.Module:
    """The reference's v1 LatentMIM (scripts/official/v1) at `size`.

    Args:
        size: widths, depths and heads of encoder and decoder.
        drop_path: stochastic depth of the encoder blocks (0.1 in v1; 0 for exact parity).
        projection_only_target: keep only the patch embeddings as the target (the reference's
            v1.2 `base_faster`); False is v1, whose target is a full frozen encoder copy.
        modality_names: supported modalities of encoder and decoder.
        encoder_options, decoder_options: further reference EncoderConfig / PredictorConfig
            options, over v1's (the v1.1 and v1.2 builders pass theirs here).
    """
    names = list(modality_names)
    encoder = RefEncoderConfig(
        embedding_size=size.encoder_width,
        num_heads=size.encoder_heads,
        depth=size.encoder_depth,
        mlp_ratio=size.mlp_ratio,
        supported_modality_names=names,
        max_patch_size=8,
        drop_path=drop_path,
        max_sequence_length=12,
        **{"use_linear_patch_embed": False, **(encoder_options or {})},
    )
    decoder = RefPredictorConfig(
        encoder_embedding_size=size.encoder_width,
        decoder_embedding_size=size.decoder_width,
        depth=size.decoder_depth,
        mlp_ratio=size.mlp_ratio,
        num_heads=size.decoder_heads,
        supported_modality_names=names,
        max_sequence_length=12,
        **(decoder_options or {}),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # max_sequence_length is a no-op
        return RefLatentMIMConfig(
            encoder_config=encoder,
            decoder_config=decoder,
            projection_only_target=projection_only_target,
        ).build()


def to_reference_sample(x: MaskedSample) -> MaskedOlmoEarthSample:
    """Our MaskedSample as the reference's (same tensors, same layouts, no copy)."""
    fields = {"timestamps": x.timestamps}
    for name in x.modality_names:
        fields[name] = x.data[name]
        fields[f"{name}_mask"] = x.masks[name]
    return MaskedOlmoEarthSample(**fields)


def reference_tokens(tokens_and_masks) -> dict[str, torch.Tensor]:
    """The per-modality tokens of a reference `TokensAndMasks`, by modality name."""
    return {name: getattr(tokens_and_masks, name) for name in tokens_and_masks.modalities}
