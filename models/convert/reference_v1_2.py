"""Reference OlmoEarth v1.2 checkpoints <-> our v1.2 `LatentMIMV11` / `EncoderV12` / `PredictorV12`.

A v1.2 checkpoint is a v1.1 checkpoint (models/convert/reference_v1_1.py) plus what the v1.2
attention options own, in the encoder, the decoder and (for an "ema" target) the target copy:

    blocks.{j}.attn.rope_mixed_freqs          <-> blocks.{j}.attn.rope.freqs
        [axes, heads, Dh / 2] learnable frequencies of rope_mixed / rope_3d_mixed (none for
        the axial kinds)
    blocks.{j}.attn.{q,k}_norm.{weight,bias}  <-> same names (qk-norm)
    register_tokens                           <-> register_tokens (encoder only)

These functions take those keys out, hand the rest to the v1.1 converter (which hands its rest
to v1's), and put them back. Under a "projection" target our target is the patch embeddings
only, so the reference's target copy of these keys is dropped, as v1 drops the copy's blocks.

    from models.convert.reference_v1_2 import load_reference_v1_2_checkpoint
    from models.latent_mim.v1_2 import LatentMIMV12Config

    model = LatentMIMV12Config.from_size("base_shallow_decoder").build()
    load_reference_v1_2_checkpoint("OlmoEarth-v1_2-Base/weights.pth", model)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

from torch import Tensor, nn

from models.convert import reference_checkpoint, reference_v1_1

_REFERENCE_PREFIXES = ("encoder.", "decoder.", "target_encoder.")
_OUR_PREFIXES = ("encoder.", "decoder.", "target.")
_TO_OURS = dict(zip(_REFERENCE_PREFIXES, _OUR_PREFIXES, strict=True))
_TO_REFERENCE = dict(zip(_OUR_PREFIXES, _REFERENCE_PREFIXES, strict=True))

_REFERENCE_KEY = re.compile(
    r"(?P<block>blocks\.\d+\.attn\.)(?P<name>rope_mixed_freqs|[qk]_norm\.(weight|bias))"
    r"|(?P<register>register_tokens)"
)
_OUR_KEY = re.compile(
    r"(?P<block>blocks\.\d+\.attn\.)(?P<name>rope\.freqs|[qk]_norm\.(weight|bias))"
    r"|(?P<register>register_tokens)"
)
_RENAMES = {"rope_mixed_freqs": "rope.freqs"}
_INVERSE = {ours: theirs for theirs, ours in _RENAMES.items()}


def _prefix(key: str, prefixes: tuple[str, ...], component: str) -> tuple[str, str] | None:
    """(prefix, rest) of a LatentMIM key; ("", key) for a bare component; None if unprefixed."""
    if component != "latent_mim":
        return "", key
    for prefix in prefixes:
        if key.startswith(prefix):
            return prefix, key[len(prefix) :]
    return None


def _convert(
    state_dict: Mapping[str, Tensor],
    *,
    component: str,
    target: str,
    pattern: re.Pattern,
    prefixes: tuple[str, ...],
    prefix_map: dict[str, str],
    renames: dict[str, str],
    dead_target_prefix: str,
    base: Callable[..., dict[str, Tensor]],
    **options,
) -> dict[str, Tensor]:
    """Maps the v1.2 keys (see the module docstring) and `base`-converts the rest."""
    v1_2: dict[str, Tensor] = {}
    rest: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        split = _prefix(key, prefixes, component)
        match = None if split is None else pattern.fullmatch(split[1])
        if match is None:
            rest[key] = value
            continue
        prefix, _ = split
        if prefix == dead_target_prefix and target == "projection":
            if match["register"]:
                continue  # the target copy's registers: never run, dropped like its blocks
            rest[key] = value  # the target copy's blocks: the v1 converter drops them
            continue
        name = match["register"] or match["block"] + renames.get(match["name"], match["name"])
        v1_2[prefix_map.get(prefix, prefix) + name] = value
    out = base(rest, component=component, target=target, **options)
    out.update(v1_2)
    return out


def convert_reference_v1_2_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    component: str = "latent_mim",
    patch_embed: str = reference_v1_1.V1_1_PATCH_EMBED,
    target: str = "projection",
    max_patch_size: int = 8,
) -> dict[str, Tensor]:
    """A reference v1.2 state dict in our layout; arguments as
    `reference_checkpoint.convert_reference_state_dict`."""
    return _convert(
        state_dict,
        component=component,
        target=target,
        pattern=_REFERENCE_KEY,
        prefixes=_REFERENCE_PREFIXES,
        prefix_map=_TO_OURS,
        renames=_RENAMES,
        dead_target_prefix="target_encoder.",
        base=reference_v1_1.convert_reference_v1_1_state_dict,
        patch_embed=patch_embed,
        max_patch_size=max_patch_size,
    )


def export_reference_v1_2_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    component: str = "latent_mim",
    patch_embed: str = reference_v1_1.V1_1_PATCH_EMBED,
    target: str = "projection",
    max_patch_size: int = 8,
) -> dict[str, Tensor]:
    """Our v1.2 state dict in the reference's layout (the inverse of the conversion)."""
    return _convert(
        state_dict,
        component=component,
        target=target,
        pattern=_OUR_KEY,
        prefixes=_OUR_PREFIXES,
        prefix_map=_TO_REFERENCE,
        renames=_INVERSE,
        dead_target_prefix="target.",  # our projection target holds no v1.2 key anyway
        base=reference_v1_1.export_reference_v1_1_state_dict,
        patch_embed=patch_embed,
        max_patch_size=max_patch_size,
    )


def load_reference_v1_2_checkpoint(
    source: str | os.PathLike | Mapping[str, Tensor], model: nn.Module
) -> None:
    """Loads reference v1.2 weights into our v1.2 LatentMIM, `EncoderV12` or `PredictorV12`,
    strictly (errors as `reference_checkpoint.load_reference_checkpoint`)."""
    reference_checkpoint.load_reference_checkpoint(
        source, model, convert=convert_reference_v1_2_state_dict
    )


def reference_v1_2_state_dict_of(model: nn.Module) -> dict[str, Tensor]:
    """Our v1.2 `model`'s weights in the reference's v1.2 layout (Linear patch projections)."""
    return reference_checkpoint.reference_state_dict_of(
        model, reference_v1_1.V1_1_PATCH_EMBED, export=export_reference_v1_2_state_dict
    )


__all__ = [
    "convert_reference_v1_2_state_dict",
    "export_reference_v1_2_state_dict",
    "load_reference_v1_2_checkpoint",
    "reference_v1_2_state_dict_of",
]
