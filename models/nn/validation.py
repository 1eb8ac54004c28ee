"""Config checks shared by the encoder and predictor configs; every error names its field."""

from __future__ import annotations

from collections.abc import Iterable

from models.modalities import modalities


def modality_names(value: str | Iterable[str], field: str) -> tuple[str, ...]:
    """`value` as a tuple of registry names (lists from YAML become tuples); rejects unknown
    names and repeats."""
    names = (value,) if isinstance(value, str) else tuple(value)
    for name in names:
        try:
            modalities.get(name)
        except ValueError as error:
            raise ValueError(f"{field}: {error}") from None
    if len(set(names)) != len(names):
        raise ValueError(f"{field} lists a modality twice: {list(names)}")
    return names


def check_transformer_shape(
    owner: str, width: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: float
) -> None:
    """Width, depth, heads, MLP ratio and drop-path rate of a transformer config."""
    if width <= 0 or width % 16:
        raise ValueError(
            f"{owner}.width must be a positive multiple of 16 (four encoding quarters, each "
            f"split into sin/cos halves per axis), got {width}"
        )
    if num_heads <= 0 or width % num_heads:
        raise ValueError(
            f"{owner}.num_heads must be positive and divide width={width}, got {num_heads}"
        )
    if depth < 1:
        raise ValueError(f"{owner}.depth must be >= 1, got {depth}")
    if mlp_ratio <= 0:
        raise ValueError(f"{owner}.mlp_ratio must be > 0, got {mlp_ratio}")
    if not 0.0 <= drop_path < 1.0:
        raise ValueError(f"{owner}.drop_path must be in [0, 1), got {drop_path}")
