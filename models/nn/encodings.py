"""Additive token encodings: band set, time slot, month and ground position.

The token width D is cut into four quarters of n = D / 4 and each encoding fills one
quarter; the encodings are added to the patch embeddings (OlmoEarth's CompositeEncodings):

    [0, n)    band-set embedding, learnable, zeros at init   every modality
    [n, 2n)   sincos of the time slot t = 0 .. T-1            multitemporal modalities
    [2n, 3n)  sincos of the month (frozen 12-row table)       multitemporal modalities
    [3n, 4n)  2-D sincos of the patch grid in ground units    spatial modalities

There is no separate modality embedding: the band-set embedding is per (modality, band set)
and plays that role. Shapes use the legend of models/modalities/samples.py.

The formulas reproduce the reference bit for bit (checked against olmoearth-pretrain 0.1.2),
including two quirks kept for checkpoint compatibility: the 1-D frequencies are
1 / 10000^(i / (2 dim)) rather than the usual 1 / 10000^(2i / dim), and the month table puts
the same sin (cos) value in every channel of its first (second) half.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from models.modalities import modalities

QUARTERS = 4
"""Band set, time slot, month and space each get a quarter of the token width."""

MONTHS = 12

CACHED_GRID_POSITIONS = 64
"""Patches per side covered by the cached spatial tables. Training crops are at most 12 patches
per side (the reference's `sampled_hw_p_list`); longer rows are computed on the fly."""


def sincos_1d(positions: Tensor, dim: int) -> Tensor:
    """Sin/cos features of scalar positions.

    Args:
        positions: any shape; flattened to [L]. Integers or floats.
        dim: output width, even.

    Returns:
        [L, dim]: sin(pos * omega_i) for i < dim / 2, then cos(pos * omega_i), where
        omega_i = 1 / 10000^(i / (2 dim)).
    """
    if dim % 2:
        raise ValueError(f"sincos_1d needs an even dim, got {dim}")
    omega = torch.arange(dim // 2, device=positions.device) / dim / 2.0
    omega = 1.0 / 10000**omega
    angles = positions.reshape(-1).to(torch.float32)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def ground_axis_positions(length: int, resolution: float, device: torch.device | None) -> Tensor:
    """Patch indices 0 .. length-1 scaled by `resolution` (float32, as the reference)."""
    scale = torch.ones(1, device=device) * resolution  # float32 rounding of the Python float
    return torch.arange(length, device=device, dtype=torch.float32) * scale


def sincos_2d(rows: int, cols: int, resolution: float, dim: int, device=None) -> Tensor:
    """2-D sincos of a patch grid whose spacing is `resolution` ground units.

    Returns [rows, cols, dim]: the first dim / 2 channels encode the column (x) coordinate,
    the last dim / 2 the row (y) coordinate, each with `sincos_1d`. `dim` must be divisible by 4.
    """
    if dim % 4:
        raise ValueError(f"sincos_2d needs dim divisible by 4, got {dim}")
    col = sincos_1d(ground_axis_positions(cols, resolution, device), dim // 2)
    row = sincos_1d(ground_axis_positions(rows, resolution, device), dim // 2)
    return torch.cat(
        [col[None].expand(rows, cols, dim // 2), row[:, None].expand(rows, cols, dim // 2)], dim=-1
    )


def month_table(dim: int) -> Tensor:
    """[12, dim]: month m (0 = January) as sin(2 pi m / 12) in the first half, cos in the second.

    Every channel of a half holds the same value (the reference's table, kept as is).
    """
    if dim % 2:
        raise ValueError(f"month_table needs an even dim, got {dim}")
    angles = torch.arange(0, MONTHS + 1) / (MONTHS / (2 * math.pi))
    half = dim // 2
    sin = torch.sin(angles)[:, None].expand(MONTHS + 1, half)
    cos = torch.cos(angles)[:, None].expand(MONTHS + 1, half)
    return torch.cat([sin[:-1], cos[:-1]], dim=-1)


def ground_resolution(input_res_m: float, patch_size: int) -> float:
    """Grid spacing of the spatial encoding: a patch's side in units of 10 m.

    With 10 m pixels and 4-pixel patches, neighbouring patches are 4 units apart, so the same
    ground position gets the same encoding whatever the patch size.
    """
    return input_res_m * patch_size / modalities.BASE_GSD_M


class CompositeEncodings(nn.Module):
    """Adds the four encodings to per-modality tokens.

    Args:
        width: token width D; D / 4 must be divisible by 4 (the spatial quarter splits into
            sin/cos halves per axis).
        specs: the modalities (with their band sets) that get a band-set embedding.
        max_patch_size: patch sizes 1 .. max_patch_size get cached spatial tables.
        max_timesteps: time slots covered by the cached time table.
    """

    def __init__(
        self,
        width: int,
        specs: Sequence[modalities.ModalitySpec],
        max_patch_size: int = 8,
        max_timesteps: int = modalities.MAX_TIMESTEPS,
    ) -> None:
        super().__init__()
        if width % (QUARTERS * 4):
            raise ValueError(f"CompositeEncodings width must be divisible by 16, got {width}")
        for spec in specs:
            if spec.is_multitemporal and not spec.is_spatial:
                raise ValueError(
                    f"CompositeEncodings: {spec.name} is multitemporal but not spatial; only "
                    "[B, h, w, T, S, D] and [B, S, D] token layouts are supported"
                )
        self.width = width
        self.quarter = width // QUARTERS
        self.specs = {spec.name: spec for spec in specs}
        self.max_patch_size = max_patch_size
        self.channel_embeddings = nn.ParameterDict(
            {
                spec.name: nn.Parameter(torch.zeros(spec.num_band_sets, self.quarter))
                for spec in specs
            }
        )
        # Constant tables live in non-persistent buffers: they follow .to(device) and are never
        # recomputed per step, and checkpoints do not carry them.
        self.register_buffer("month_table", month_table(self.quarter), persistent=False)
        self.register_buffer(
            "time_table", sincos_1d(torch.arange(max_timesteps), self.quarter), persistent=False
        )
        # Per patch size p (at the default 10 m input), the 1-D half-quarter tables of patch
        # positions 0 .. CACHED_GRID_POSITIONS-1: the 2-D encoding is a broadcast of two of them.
        axis_tables = [
            sincos_1d(
                ground_axis_positions(CACHED_GRID_POSITIONS, ground_resolution(10.0, p), None),
                self.quarter // 2,
            )
            for p in range(1, max_patch_size + 1)
        ]
        self.register_buffer("grid_axis_tables", torch.stack(axis_tables), persistent=False)

    def _time_encoding(self, num_timesteps: int) -> Tensor:
        if num_timesteps <= self.time_table.shape[0]:
            return self.time_table[:num_timesteps]
        positions = torch.arange(num_timesteps, device=self.time_table.device)
        return sincos_1d(positions, self.quarter)

    def _axis_encoding(self, length: int, patch_size: int, input_res_m: float) -> Tensor:
        cached = (
            input_res_m == 10.0
            and 1 <= patch_size <= self.max_patch_size
            and length <= CACHED_GRID_POSITIONS
        )
        if cached:
            return self.grid_axis_tables[patch_size - 1, :length]
        resolution = ground_resolution(input_res_m, patch_size)
        positions = ground_axis_positions(length, resolution, self.time_table.device)
        return sincos_1d(positions, self.quarter // 2)

    def spatial_encoding(
        self, rows: int, cols: int, patch_size: int, input_res_m: float = 10.0
    ) -> Tensor:
        """[rows, cols, D / 4]: the spatial quarter (columns first, then rows)."""
        col = self._axis_encoding(cols, patch_size, input_res_m)
        row = self._axis_encoding(rows, patch_size, input_res_m)
        half = self.quarter // 2
        return torch.cat(
            [col[None].expand(rows, cols, half), row[:, None].expand(rows, cols, half)], dim=-1
        )

    def encode_modality(
        self,
        name: str,
        tokens: Tensor,
        timestamps: Tensor,
        patch_size: int,
        input_res_m: float = 10.0,
    ) -> Tensor:
        """Tokens of one modality plus their encodings.

        Args:
            name: modality name (must be one of `specs`).
            tokens: spatial [B, h, w, T, S, D] or non-spatial [B, S, D].
            timestamps: [B, T, 3] (day, month 0..11, year); only the month is used.
            patch_size: pixels per patch side; sets the ground spacing of the spatial quarter.
            input_res_m: metres per input pixel.
        """
        spec = self.specs[name]
        n = self.quarter
        channel, time, month, space = tokens.split(n, dim=-1)
        num_band_sets = tokens.shape[-2]
        channel_embedding = self.channel_embeddings[name]
        if channel_embedding.shape[0] != num_band_sets:
            raise ValueError(
                f"{name}: tokens have {num_band_sets} band sets but the encodings were built for "
                f"{channel_embedding.shape[0]}; use the same tokenization in model and data"
            )
        channel = channel + channel_embedding  # [S, n] broadcasts over the leading axes
        if spec.is_spatial:
            batch, rows, cols, steps = tokens.shape[:4]
            if spec.is_multitemporal:
                if timestamps.shape[1] != steps:
                    raise ValueError(
                        f"{name}: tokens have T={steps} timesteps but timestamps have "
                        f"{timestamps.shape[1]}"
                    )
                time = time + self._time_encoding(steps)[:, None, :]  # [T, 1, n]
                months = self.month_table[timestamps[:, :, 1].long()]  # [B, T, n]
                month = month + months[:, None, None, :, None, :]
            space = (
                space
                + self.spatial_encoding(rows, cols, patch_size, input_res_m)[
                    None, :, :, None, None, :
                ]
            )
        return torch.cat([channel, time, month, space], dim=-1)

    def forward(
        self,
        tokens: Mapping[str, Tensor],
        timestamps: Tensor,
        patch_size: int,
        input_res_m: float = 10.0,
    ) -> dict[str, Tensor]:
        """`encode_modality` for every modality in `tokens` (same keys, same order)."""
        return {
            name: self.encode_modality(name, value, timestamps, patch_size, input_res_m)
            for name, value in tokens.items()
        }
