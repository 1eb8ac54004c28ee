"""Reference OlmoEarth v1.1 checkpoints <-> our `LatentMIMV11` / `EncoderV11` state dicts.

A v1.1 checkpoint is a v1 checkpoint (models/convert/reference_checkpoint.py) with Linear patch
projections (`use_linear_patch_embed=True`) over single-band-set S2 and Landsat, plus one
per-pixel layer in every spatial band set's patch embedding:

    patch_embeddings.per_modality_embeddings.{m}.{m}__{i}.pixel_proj.0.{weight,bias}
        <-> patch_embed.modalities.{m}.band_sets.{i}.pixel_proj.{weight,bias}

(`.0`: the reference's nn.Sequential of Linear and ReLU; only the Linear holds weights.) The
patch Linear itself, `...{m}__{i}.proj`, is [D, hidden * 8 * 8] on both sides and maps with
the v1 rules. Band dropout has no weights. Everything else is v1's mapping, used as is: these
functions take the per-pixel keys out, hand the rest to the v1 converter, and put them back.

    from models.convert.reference_v1_1 import load_reference_v1_1_checkpoint
    from models.latent_mim.v1_1 import LatentMIMV11Config

    model = LatentMIMV11Config.from_size("nano").build()
    load_reference_v1_1_checkpoint("OlmoEarth-v1_1-Nano/weights.pth", model)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from torch import Tensor, nn

from models.convert import reference_checkpoint

V1_1_PATCH_EMBED = "linear"
"""v1.1 checkpoints use Linear patch projections (the per-pixel MLP needs them)."""

_REFERENCE_PIXEL = re.compile(
    r"(?P<prefix>encoder\.|target_encoder\.|)patch_embeddings\.per_modality_embeddings\."
    r"(?P<modality>\w+?)\.(?P=modality)__(?P<index>\d+)\.pixel_proj\.0\.(?P<part>weight|bias)"
)
_OUR_PIXEL = re.compile(
    r"(?P<prefix>encoder\.|target\.|)patch_embed\.modalities\.(?P<modality>\w+?)\.band_sets\."
    r"(?P<index>\d+)\.pixel_proj\.(?P<part>weight|bias)"
)
_TO_OURS = {"encoder.": "encoder.", "target_encoder.": "target.", "": ""}
_TO_REFERENCE = {ours: theirs for theirs, ours in _TO_OURS.items()}


def _split(
    state_dict: Mapping[str, Tensor], pattern: re.Pattern, component: str
) -> tuple[dict[str, re.Match], dict[str, Tensor]]:
    """(per-pixel keys with their matches, every other key). A bare component (encoder) has no
    prefix; a LatentMIM's per-pixel keys sit under the encoder and the target prefixes."""
    pixel: dict[str, re.Match] = {}
    rest: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        match = pattern.fullmatch(key)
        bare = component != "latent_mim"
        if match and (match["prefix"] == "") == bare:
            pixel[key] = match
        else:
            rest[key] = value
    return pixel, rest


def convert_reference_v1_1_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    component: str = "latent_mim",
    patch_embed: str = V1_1_PATCH_EMBED,
    target: str = "projection",
    max_patch_size: int = 8,
) -> dict[str, Tensor]:
    """A reference v1.1 state dict in our layout; arguments as
    `reference_checkpoint.convert_reference_state_dict` (which maps every non-per-pixel key)."""
    pixel, rest = _split(state_dict, _REFERENCE_PIXEL, component)
    out = reference_checkpoint.convert_reference_state_dict(
        rest,
        component=component,
        patch_embed=patch_embed,
        target=target,
        max_patch_size=max_patch_size,
    )
    for key, match in pixel.items():
        prefix = _TO_OURS[match["prefix"]]
        module = f"patch_embed.modalities.{match['modality']}.band_sets.{match['index']}"
        out[f"{prefix}{module}.pixel_proj.{match['part']}"] = state_dict[key]
    return out


def export_reference_v1_1_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    component: str = "latent_mim",
    patch_embed: str = V1_1_PATCH_EMBED,
    target: str = "projection",
    max_patch_size: int = 8,
) -> dict[str, Tensor]:
    """Our v1.1 state dict in the reference's layout (the inverse of the conversion)."""
    pixel, rest = _split(state_dict, _OUR_PIXEL, component)
    out = reference_checkpoint.export_reference_state_dict(
        rest,
        component=component,
        patch_embed=patch_embed,
        target=target,
        max_patch_size=max_patch_size,
    )
    for key, match in pixel.items():
        prefix = _TO_REFERENCE[match["prefix"]]
        name, index = match["modality"], match["index"]
        module = f"patch_embeddings.per_modality_embeddings.{name}.{name}__{index}"
        out[f"{prefix}{module}.pixel_proj.0.{match['part']}"] = state_dict[key]
    return out


def load_reference_v1_1_checkpoint(
    source: str | os.PathLike | Mapping[str, Tensor], model: nn.Module
) -> None:
    """Loads reference v1.1 weights into our `LatentMIMV11`, `EncoderV11` or `Predictor`,
    strictly (errors as `reference_checkpoint.load_reference_checkpoint`)."""
    reference_checkpoint.load_reference_checkpoint(
        source, model, convert=convert_reference_v1_1_state_dict
    )


def reference_v1_1_state_dict_of(model: nn.Module) -> dict[str, Tensor]:
    """Our v1.1 `model`'s weights in the reference's v1.1 layout (Linear patch projections)."""
    return reference_checkpoint.reference_state_dict_of(
        model, V1_1_PATCH_EMBED, export=export_reference_v1_1_state_dict
    )


__all__ = [
    "convert_reference_v1_1_state_dict",
    "export_reference_v1_1_state_dict",
    "load_reference_v1_1_checkpoint",
    "reference_v1_1_state_dict_of",
]
