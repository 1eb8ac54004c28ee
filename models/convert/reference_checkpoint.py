"""Reference OlmoEarth checkpoints <-> terra-lab state dicts.

Loads weights of the reference implementation (PyPI `olmoearth-pretrain`, v1 recipe: Conv2d or
Linear patch embeddings, absolute encodings, no register tokens, no qk-norm, one-layer pooled
projection) into our `LatentMIM`, `Encoder` or `Predictor`, and exports ours back. This is how
the released OlmoEarth v1 checkpoints are used here:

    from models.convert.reference_checkpoint import load_reference_checkpoint
    from models.latent_mim.latent_mim import LatentMIMConfig

    model = LatentMIMConfig.from_size("nano").build()        # OlmoEarth-v1-Nano's shape
    load_reference_checkpoint("OlmoEarth-v1-Nano/weights.pth", model)

    encoder = LatentMIMConfig.from_size("base_shallow_decoder").encoder.build()
    load_reference_checkpoint("OlmoEarth-v1-Base/weights.pth", encoder)   # encoder only

Our own training checkpoints export the same way, sharded or not:
`reference_state_dict_of_checkpoint("runs/<project>/<run>/checkpoints/step_<N>", model)`.

A released `weights.pth` is the state dict of the reference's whole LatentMIM (keys `encoder.*`,
`decoder.*`, `target_encoder.*`); the model's size must match the checkpoint's `config.json`
(v1: nano, tiny_shallow_decoder, base_shallow_decoder, large_shallow_decoder). Loading into an
`Encoder` (or `Predictor`) takes the `encoder.*` (`decoder.*`) part of such a file and ignores the
rest; a file holding a bare reference Encoder (Predictor) state dict loads as well.

The mapping is pure state-dict work: the reference package is not imported, so it runs without
it. What changes, per component (reference name -> ours; {m} modality, {i} band set, {j} block):

    patch_embeddings.per_modality_embeddings.{m}.{m}__{i}.proj
        -> patch_embed.modalities.{m}.band_sets.{i}.proj
        (Conv2d [D, C, 8, 8] <-> Linear [D, 8*8*C] in (p1 p2 c) order when the kinds differ)
    composite_encodings.per_modality_channel_embeddings.{m} -> encodings.channel_embeddings.{m}
    composite_encodings.month_embed.weight -> dropped: a frozen sin/cos table that we compute;
        loading checks that it equals ours (max abs diff <= 1e-6)
    blocks.{j}.attn.{q,k,v} (encoder) -> blocks.{j}.attn.qkv, rows [q; k; v]
    blocks.{j}.attn.{k,v} (decoder; q stays q) -> blocks.{j}.attn.kv, rows [k; v]
    project_and_aggregate.projection.0 -> pooled_projection
    encoder_to_decoder_embed, to_output_embed -> encoder_to_decoder, to_output
    norms, MLPs, attn.proj, mask_token -> same names

The target: our v1 target is a frozen copy of the patch embeddings only ("projection"), so
`target_encoder.patch_embeddings.*` loads into `target.patch_embed.*` and the rest of the
reference's target copy (blocks, norm, encodings, pooled projection) is dropped. The v1 recipe
never runs that rest (every token exits at depth 0, and EMA is off: ema_decay = (1, 1)), so it
still holds its random initial values. An "ema" target (a full encoder copy) loads the whole
`target_encoder.*` with the encoder rules. Every other key is strict: an unknown reference key,
a key our model expects but the checkpoint lacks, or a shape mismatch raises
`ReferenceCheckpointError` naming the keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import einops
import torch
from torch import Tensor, nn

from models.encoder.encoder import Encoder
from models.latent_mim.latent_mim import LatentMIM
from models.nn.encodings import month_table
from models.nn.patch_embed import PATCH_EMBED_KINDS
from models.predictor.predictor import Predictor
from models.train import checkpoint

COMPONENTS = ("latent_mim", "encoder", "predictor")
"""What a state dict holds: a whole LatentMIM, or one encoder, or one predictor."""

TARGET_KINDS = ("projection", "ema")
"""Our LatentMIM target kinds (models/latent_mim): patch embeddings only, or a full encoder."""

REFERENCE_PREFIXES = {"encoder": "encoder.", "predictor": "decoder.", "target": "target_encoder."}
"""Prefixes of the components inside a reference LatentMIM state dict."""

OUR_PREFIXES = {"encoder": "encoder.", "predictor": "decoder.", "target": "target."}
"""Prefixes of the components inside our LatentMIM state dict."""

MONTH_TABLE_TOLERANCE = 1e-6
"""The checkpoint's month table must equal the computed one to fp32 rounding (values in [-1, 1])."""

_MONTH_KEY = "composite_encodings.month_embed.weight"
_LEGACY_POS_EMBED_KEY = "composite_encodings.pos_embed"
"""A table of old reference checkpoints that the reference itself drops on load (unused)."""

_TARGET_DEAD_WEIGHT = re.compile(r"(blocks|norm|composite_encodings|project_and_aggregate)\..+")
"""Parts of the reference's full target copy that a projection target never runs."""


class ReferenceCheckpointError(ValueError):
    """A state dict does not fit the model; `missing`, `unexpected` and `mismatched` name keys.

    missing: keys the destination needs that the source lacks. unexpected: source keys that map
    to nothing. mismatched: keys present on both sides with different shapes.
    """

    def __init__(
        self,
        message: str,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[str] | None = None,
    ):
        self.missing = sorted(missing or [])
        self.unexpected = sorted(unexpected or [])
        self.mismatched = sorted(mismatched or [])
        details = [
            f"{label} ({len(keys)}): {keys}"
            for label, keys in (
                ("missing keys", self.missing),
                ("unexpected keys", self.unexpected),
                ("shape mismatches", self.mismatched),
            )
            if keys
        ]
        super().__init__("; ".join([message, *details]))


# -- patch projection kinds ------------------------------------------------------------------


def _patch_weight_kind(weight: Tensor) -> str:
    return "conv" if weight.dim() == 4 else "linear"


def _convert_patch_weight(weight: Tensor, kind: str, max_patch_size: int) -> Tensor:
    """A patch projection weight as `kind`: Conv2d [D, C, P, P] or Linear [D, P*P*C].

    The Linear flattens a patch as (p1 p2 c) (row, column, band: band fastest), the order both
    implementations use, so the two kinds compute the same map.
    """
    if _patch_weight_kind(weight) == kind:
        return weight
    if kind == "linear":
        return einops.rearrange(weight, "d c p1 p2 -> d (p1 p2 c)")
    if weight.shape[1] % (max_patch_size * max_patch_size):
        raise ReferenceCheckpointError(
            f"a Linear patch projection of width {weight.shape[1]} is not max_patch_size^2 x "
            f"bands with max_patch_size={max_patch_size}"
        )
    return einops.rearrange(
        weight, "d (p1 p2 c) -> d c p1 p2", p1=max_patch_size, p2=max_patch_size
    )


# -- one component, reference -> ours ----------------------------------------------------------

_PATCH_PROJ = re.compile(
    r"patch_embeddings\.per_modality_embeddings\.(\w+?)\.\1__(\d+)\.proj\.(weight|bias)"
)
_PATCH_LINEAR = re.compile(
    r"patch_embeddings\.per_modality_embeddings\.(\w+?)\.\1__(\d+)\.(weight|bias)"
)
_CHANNEL = re.compile(r"composite_encodings\.per_modality_channel_embeddings\.(\w+)")
_BLOCK_SAME = re.compile(
    r"blocks\.(\d+)\.(norm1|norm2|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
)
_BLOCK_QKV = re.compile(r"blocks\.(\d+)\.attn\.(q|k|v)\.(weight|bias)")

_ENCODER_RENAMES = {
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
    "project_and_aggregate.projection.0.weight": "pooled_projection.weight",
    "project_and_aggregate.projection.0.bias": "pooled_projection.bias",
}
_PREDICTOR_RENAMES = {
    "mask_token": "mask_token",
    "input_norm.weight": "input_norm.weight",
    "input_norm.bias": "input_norm.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
    "encoder_to_decoder_embed.weight": "encoder_to_decoder.weight",
    "encoder_to_decoder_embed.bias": "encoder_to_decoder.bias",
    "to_output_embed.weight": "to_output.weight",
    "to_output_embed.bias": "to_output.bias",
}


def _check_month_table(key: str, table: Tensor) -> None:
    quarter = table.shape[-1]
    expected = month_table(quarter)
    if table.shape != expected.shape:
        raise ReferenceCheckpointError(
            f"{key} has shape {tuple(table.shape)}; the month table is {tuple(expected.shape)}",
            mismatched=[key],
        )
    error = (table.float() - expected).abs().max().item()
    if error > MONTH_TABLE_TOLERANCE:
        raise ReferenceCheckpointError(
            f"{key} differs from the fixed sin/cos month table by {error:.3g} "
            f"(> {MONTH_TABLE_TOLERANCE}); our encodings compute that table and cannot hold "
            "another one",
            mismatched=[key],
        )


def _convert_component(
    state_dict: Mapping[str, Tensor],
    role: str,
    patch_embed: str,
    max_patch_size: int,
) -> tuple[dict[str, Tensor], list[str]]:
    """Maps one reference component (keys without its prefix) to ours.

    role: "encoder", "predictor" or "target" (a projection target: only patch embeddings).
    Returns (our state dict, reference keys that matched no rule).
    """
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    fused: dict[tuple[str, str], dict[str, Tensor]] = {}  # (block, weight|bias) -> {q,k,v}
    renames = _PREDICTOR_RENAMES if role == "predictor" else _ENCODER_RENAMES
    for key, value in state_dict.items():
        if role == "target":
            if match := _PATCH_PROJ.fullmatch(key):
                name, index, part = match.groups()
                if part == "weight":
                    value = _convert_patch_weight(value, patch_embed, max_patch_size)
                out[f"patch_embed.modalities.{name}.band_sets.{index}.proj.{part}"] = value
            elif match := _PATCH_LINEAR.fullmatch(key):
                name, index, part = match.groups()
                out[f"patch_embed.modalities.{name}.band_sets.{index}.{part}"] = value
            elif not _TARGET_DEAD_WEIGHT.fullmatch(key):
                unknown.append(key)
            continue
        if role == "encoder" and (match := _PATCH_PROJ.fullmatch(key)):
            name, index, part = match.groups()
            if part == "weight":
                value = _convert_patch_weight(value, patch_embed, max_patch_size)
            out[f"patch_embed.modalities.{name}.band_sets.{index}.proj.{part}"] = value
        elif role == "encoder" and (match := _PATCH_LINEAR.fullmatch(key)):
            name, index, part = match.groups()
            out[f"patch_embed.modalities.{name}.band_sets.{index}.{part}"] = value
        elif match := _CHANNEL.fullmatch(key):
            out[f"encodings.channel_embeddings.{match.group(1)}"] = value
        elif key == _MONTH_KEY:
            _check_month_table(key, value)
        elif key == _LEGACY_POS_EMBED_KEY:
            continue
        elif match := _BLOCK_SAME.fullmatch(key):
            out[key] = value
        elif match := _BLOCK_QKV.fullmatch(key):
            block, projection, part = match.groups()
            if role == "predictor" and projection == "q":
                out[key] = value
            else:
                fused.setdefault((block, part), {})[projection] = value
        elif key in renames:
            out[renames[key]] = value
        else:
            unknown.append(key)
    chunks = ("q", "k", "v") if role == "encoder" else ("k", "v")
    fused_name = "qkv" if role == "encoder" else "kv"
    for (block, part), parts in fused.items():
        absent = [c for c in chunks if c not in parts]
        if absent:
            # An incomplete group cannot be fused; report the reference keys that are missing.
            raise ReferenceCheckpointError(
                f"block {block}: cannot fuse attention {part}s without all of {list(chunks)}",
                missing=[f"blocks.{block}.attn.{c}.{part}" for c in absent],
            )
        out[f"blocks.{block}.attn.{fused_name}.{part}"] = torch.cat([parts[c] for c in chunks])
    return out, unknown


def _strip(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {
        key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)
    }


def _check_options(component: str, patch_embed: str, target: str) -> None:
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")
    if patch_embed not in PATCH_EMBED_KINDS:
        raise ValueError(f"patch_embed must be one of {PATCH_EMBED_KINDS}, got {patch_embed!r}")
    if target not in TARGET_KINDS:
        raise ValueError(f"target must be one of {TARGET_KINDS}, got {target!r}")


def convert_reference_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    component: str = "latent_mim",
    patch_embed: str = "conv",
    target: str = "projection",
    max_patch_size: int = 8,
) -> dict[str, Tensor]:
    """A reference state dict renamed, fused and reshaped into our layout.

    Args:
        state_dict: the reference's LatentMIM (`component="latent_mim"`, keys `encoder.*`,
            `decoder.*`, `target_encoder.*`), Encoder or Predictor state dict.
        component: one of COMPONENTS.
        patch_embed: our patch projection kind ("conv" or "linear"); the reference's kind is
            read from the weight shapes and converted when they differ.
        target: our LatentMIM target kind (TARGET_KINDS); ignored unless component is latent_mim.
        max_patch_size: patch side of the projection weights (8 in v1), for Linear -> Conv.

    Raises:
        ReferenceCheckpointError: keys that match no rule (`unexpected`) or attention
            projections that cannot be fused (`missing`). Keys our model needs but the
            checkpoint lacks are found by `load_reference_checkpoint`, which knows the model.
    """
    _check_options(component, patch_embed, target)
    if component != "latent_mim":
        role = component
        out, unknown = _convert_component(state_dict, role, patch_embed, max_patch_size)
    else:
        out, unknown = {}, []
        roles = {"encoder": "encoder", "predictor": "predictor", "target": "encoder"}
        if target == "projection":
            roles["target"] = "target"
        for part, role in roles.items():
            prefix = REFERENCE_PREFIXES[part]
            converted, part_unknown = _convert_component(
                _strip(state_dict, prefix), role, patch_embed, max_patch_size
            )
            out.update({OUR_PREFIXES[part] + key: value for key, value in converted.items()})
            unknown += [prefix + key for key in part_unknown]
        prefixes = tuple(REFERENCE_PREFIXES.values())
        unknown += [key for key in state_dict if not key.startswith(prefixes)]
    if unknown:
        raise ReferenceCheckpointError(
            f"reference {component} state dict has keys this converter does not map (a "
            "reference feature outside the v1 recipe, or not a reference checkpoint)",
            unexpected=unknown,
        )
    return out


# -- ours -> reference -------------------------------------------------------------------------

_OUR_PATCH = re.compile(
    r"patch_embed\.modalities\.(\w+?)\.band_sets\.(\d+)\.(proj\.)?(weight|bias)"
)
_OUR_CHANNEL = re.compile(r"encodings\.channel_embeddings\.(\w+)")
_OUR_FUSED = re.compile(r"blocks\.(\d+)\.attn\.(qkv|kv)\.(weight|bias)")
_OUR_Q = re.compile(r"blocks\.(\d+)\.attn\.q\.(weight|bias)")


def _export_component(
    state_dict: Mapping[str, Tensor], role: str, patch_embed: str, max_patch_size: int
) -> tuple[dict[str, Tensor], list[str]]:
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    renames = _PREDICTOR_RENAMES if role == "predictor" else _ENCODER_RENAMES
    inverse = {ours: theirs for theirs, ours in renames.items()}
    quarter = None
    for key, value in state_dict.items():
        if match := _OUR_PATCH.fullmatch(key):
            name, index, proj, part = match.groups()
            if proj and part == "weight":
                value = _convert_patch_weight(value, patch_embed, max_patch_size)
            module = f"patch_embeddings.per_modality_embeddings.{name}.{name}__{index}"
            out[f"{module}.{proj or ''}{part}"] = value
        elif role == "target":
            unknown.append(key)
        elif match := _OUR_CHANNEL.fullmatch(key):
            out[f"composite_encodings.per_modality_channel_embeddings.{match.group(1)}"] = value
            quarter = value.shape[-1]
        elif _BLOCK_SAME.fullmatch(key) or _OUR_Q.fullmatch(key):
            out[key] = value
        elif match := _OUR_FUSED.fullmatch(key):
            block, fused, part = match.groups()
            names = ("q", "k", "v") if fused == "qkv" else ("k", "v")
            for name, chunk in zip(names, value.chunk(len(names)), strict=True):
                out[f"blocks.{block}.attn.{name}.{part}"] = chunk
        elif key in inverse:
            out[inverse[key]] = value
        else:
            unknown.append(key)
    if role != "target":
        if quarter is None:
            raise ReferenceCheckpointError(
                f"our {role} state dict has no channel embeddings; cannot size the month table",
                missing=["encodings.channel_embeddings.*"],
            )
        out[_MONTH_KEY] = month_table(quarter)
    return out, unknown


def export_reference_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    component: str = "latent_mim",
    patch_embed: str = "conv",
    target: str = "projection",
    max_patch_size: int = 8,
) -> dict[str, Tensor]:
    """Our state dict in the reference's layout (the inverse of `convert_reference_state_dict`).

    `patch_embed` is the reference's kind to write ("conv" = `use_linear_patch_embed=False`, the
    v1 checkpoints). A LatentMIM with a projection target exports the layout of the reference's
    `projection_only_target=True` (`target_encoder.patch_embeddings.*` only); an "ema" target
    exports a full `target_encoder.*`. The month tables are regenerated.
    """
    _check_options(component, patch_embed, target)
    if component != "latent_mim":
        out, unknown = _export_component(state_dict, component, patch_embed, max_patch_size)
    else:
        out, unknown = {}, []
        roles = {"encoder": "encoder", "predictor": "predictor", "target": "encoder"}
        if target == "projection":
            roles["target"] = "target"
        for part, role in roles.items():
            prefix = OUR_PREFIXES[part]
            exported, part_unknown = _export_component(
                _strip(state_dict, prefix), role, patch_embed, max_patch_size
            )
            out.update({REFERENCE_PREFIXES[part] + key: value for key, value in exported.items()})
            unknown += [prefix + key for key in part_unknown]
        prefixes = tuple(OUR_PREFIXES.values())
        unknown += [key for key in state_dict if not key.startswith(prefixes)]
    if unknown:
        raise ReferenceCheckpointError(
            f"our {component} state dict has keys without a reference counterpart (a terra-lab "
            "variant the reference does not have)",
            unexpected=unknown,
        )
    return out


# -- loading into a model ----------------------------------------------------------------------


def _read(source: str | os.PathLike | Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    if isinstance(source, Mapping):
        return source
    return torch.load(source, map_location="cpu", weights_only=True)


def _model_options(model: nn.Module) -> tuple[str, str, str, int]:
    """(component, patch_embed kind, target kind, max_patch_size) of one of our models."""
    if isinstance(model, LatentMIM):
        encoder = model.config.encoder
        return "latent_mim", encoder.patch_embed, model.config.target, encoder.max_patch_size
    if isinstance(model, Encoder):
        config = model.config
        return "encoder", config.patch_embed, "projection", config.max_patch_size
    if isinstance(model, Predictor):
        return "predictor", "conv", "projection", model.config.max_patch_size
    raise TypeError(
        f"load_reference_checkpoint loads into a LatentMIM, Encoder or Predictor, "
        f"got {type(model).__name__}"
    )


def _select_component(state_dict: Mapping[str, Tensor], component: str) -> Mapping[str, Tensor]:
    """The part of `state_dict` a `component` model loads (see the module docstring)."""
    whole_model = all(
        any(key.startswith(REFERENCE_PREFIXES[part]) for key in state_dict)
        for part in ("encoder", "predictor")
    )
    if component == "latent_mim":
        if not whole_model:
            raise ReferenceCheckpointError(
                "a LatentMIM loads a reference LatentMIM state dict (keys encoder.*, decoder.*, "
                "target_encoder.*); this one is a single component",
                missing=[f"{prefix}*" for prefix in REFERENCE_PREFIXES.values()],
            )
        return state_dict
    if whole_model:
        return _strip(state_dict, REFERENCE_PREFIXES[component])
    return state_dict


def load_reference_checkpoint(
    source: str | os.PathLike | Mapping[str, Tensor],
    model: nn.Module,
    *,
    convert: Callable[..., dict[str, Tensor]] = convert_reference_state_dict,
) -> None:
    """Loads reference OlmoEarth weights into our `model`, strictly.

    Args:
        source: a path to a reference state dict saved with `torch.save` (a released
            `weights.pth`), or the state dict itself.
        model: our `LatentMIM`, `Encoder` or `Predictor` (or a subclass), built with the
            checkpoint's size and modalities.

    Raises:
        ReferenceCheckpointError: naming every unexpected, missing or wrongly shaped key.
        TypeError: `model` is none of the three.

    `convert` is the mapping (a variant's converter, e.g. models/convert/reference_v1_1.py,
    wraps `convert_reference_state_dict` and takes its arguments).
    """
    component, patch_embed, target, max_patch_size = _model_options(model)
    state_dict = _select_component(_read(source), component)
    converted = convert(
        state_dict,
        component=component,
        patch_embed=patch_embed,
        target=target,
        max_patch_size=max_patch_size,
    )
    expected = model.state_dict()
    missing = [key for key in expected if key not in converted]
    unexpected = [key for key in converted if key not in expected]
    mismatched = [
        f"{key}: checkpoint {tuple(converted[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in converted and converted[key].shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        raise ReferenceCheckpointError(
            f"the reference checkpoint does not fit this {type(model).__name__} (keys in our "
            "naming; check the model size, modalities and tokenization against the checkpoint's "
            "config.json)",
            missing=missing,
            unexpected=unexpected,
            mismatched=mismatched,
        )
    model.load_state_dict(converted, strict=True)


def reference_state_dict_of(
    model: nn.Module,
    patch_embed: str = "conv",
    *,
    export: Callable[..., dict[str, Tensor]] = export_reference_state_dict,
) -> dict[str, Tensor]:
    """`model`'s weights (our LatentMIM, Encoder or Predictor) in the reference's layout.

    `export` is the mapping (a variant's exporter wraps `export_reference_state_dict`)."""
    component, ours_patch_embed, target, max_patch_size = _model_options(model)
    del ours_patch_embed  # the kind written is the reference's, chosen by `patch_embed`
    return export(
        model.state_dict(),
        component=component,
        patch_embed=patch_embed,
        target=target,
        max_patch_size=max_patch_size,
    )


def reference_state_dict_of_checkpoint(
    checkpoint_dir: str | os.PathLike, model: nn.Module, patch_embed: str = "conv"
) -> dict[str, Tensor]:
    """The weights of one of our training checkpoints (`checkpoints/step_<N>/`, plain or
    sharded by several ranks) in the reference's layout: what a release writes as
    `weights.pth`. `model` is built from the run's model config (the component and options
    to export); it receives the checkpoint's weights, read whole in this one process."""
    weights = checkpoint.load(Path(checkpoint_dir), parts=["model"])["model"]
    model.load_state_dict(weights)
    return reference_state_dict_of(model, patch_embed)


__all__ = [
    "COMPONENTS",
    "ReferenceCheckpointError",
    "convert_reference_state_dict",
    "export_reference_state_dict",
    "load_reference_checkpoint",
    "reference_state_dict_of",
    "reference_state_dict_of_checkpoint",
]
