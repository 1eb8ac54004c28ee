"""Rotary position embeddings (RoPE) on attention queries and keys: OlmoEarth v1.2's positions.

RoPE turns a token's position into a rotation of each (even, odd) feature pair of its query and
key, by an angle that grows linearly with the position. The dot product of a query at p and a
key at p' then depends on p - p' only, so attention sees relative positions and nothing is added
to the tokens. Four kinds (the reference's `PositionEncoding` values; "absolute" is v1's
additive encodings with no rotation):

    rope            2-D axial: first half of the head dim rotates with the row, second half
                    with the column, frequencies base^(-2i/d) per half (d = its width)
    rope_3d         3-D axial: [time | row | col] chunks; time gets round(Dh * f / 2) * 2
                    features (f = temporal_fraction, 0.25), the rest splits evenly
    rope_mixed      learnable 2-D frequencies: pair i of head h turns by
                    f_row[h, i] * row + f_col[h, i] * col (RoPE-Mixed, Heo et al. 2024)
    rope_3d_mixed   the same with (t, row, col); v1.2 uses it in encoder and decoder

Coordinates (`positions_of`): row and column are patch indices times the ground spacing of a
patch in 10 m units (input_res_m * patch_size / 10, the "gsd ratio"), so a place keeps its
coordinates whatever the patch size; time is days since 2000-01-01 times temporal_scale (1/30
in v1.2: about months). Spatial tokens [B, h, w, T, S, D] take the time of their slot among the
sample's first T timestamps, so a static map (T = 1) sits at the first timestamp's time, as in
the reference's code (its docstring says t = 0; measured against olmoearth-pretrain 0.1.2);
non-spatial tokens [B, S, D] sit at the origin.

Shapes: packed q/k [N, heads, Dh] with positions [N, A], or padded [B, heads, N, Dh] with
positions [B, N, A]; A = 2 (row, col) or 3 (t, row, col).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import einops
import torch
from torch import Tensor, nn

from models.config.configurable import Configurable
from models.modalities import modalities
from models.nn import onednn_linear
from models.nn.attention import Block, CrossAttention, CrossBlock, SelfAttention, _sdpa
from models.nn.encodings import CompositeEncodings
from models.nn.varlen import Varlen, varlen_attention

ABSOLUTE = "absolute"
ROPE_KINDS = ("rope", "rope_mixed", "rope_3d", "rope_3d_mixed")
POSITION_ENCODINGS = (ABSOLUTE, *ROPE_KINDS)
"""Every position encoding a v1.2 encoder or decoder accepts."""

DEFAULT_BASE = 10_000.0
"""Axial RoPE's frequency base (the reference's rope_base)."""

DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
"""Days before the first of each month (0 = January) in a non-leap year."""

DAYS_PER_YEAR = 365.25
ANCHOR_YEAR = 2000
"""Day 0 of the temporal coordinate: 2000-01-01 (calendar days are off by at most one, far
below the one-month resolution v1.2 works at)."""


def is_rope(kind: str) -> bool:
    return kind in ROPE_KINDS


def is_3d(kind: str) -> bool:
    """The kind rotates with time as well (and the additive time-slot encoding is skipped)."""
    return kind in ("rope_3d", "rope_3d_mixed")


def num_axes(kind: str) -> int:
    """Coordinates per token: 3 (t, row, col) or 2 (row, col)."""
    return 3 if is_3d(kind) else 2


def rotate_pairs(x: Tensor) -> Tensor:
    """Each feature pair (a, b) becomes (-b, a): a quarter turn of every pair."""
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)


def rotate(x: Tensor, angles: Tensor) -> Tensor:
    """Turns feature pair i of x [..., Dh] by angles [..., Dh / 2] (broadcast), in x's dtype."""
    cos = torch.cos(angles).repeat_interleave(2, dim=-1).to(x.dtype)
    sin = torch.sin(angles).repeat_interleave(2, dim=-1).to(x.dtype)
    return x * cos + rotate_pairs(x) * sin


def axial_frequencies(dim: int, base: float, device=None) -> Tensor:
    """[dim / 2] float32: base^(-2i / dim), the frequencies of a dim-wide 1-D RoPE chunk."""
    exponents = torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim
    return 1.0 / (base**exponents)


def temporal_split(head_dim: int, temporal_fraction: float) -> tuple[int, int, int]:
    """(time, row, col) chunk widths of axial 3-D RoPE; each even, row == col.

    Raises:
        ValueError: a fraction outside (0, 1), or a head dim that cannot be split so.
    """
    if not 0.0 < temporal_fraction < 1.0:
        raise ValueError(f"temporal_fraction must be in (0, 1), got {temporal_fraction}")
    time = round(head_dim * temporal_fraction / 2) * 2
    rest = head_dim - time
    if time < 2 or rest % 4:
        raise ValueError(
            f"rope_3d cannot split head_dim {head_dim} with temporal_fraction "
            f"{temporal_fraction}: the time chunk ({time}) must be >= 2 and the rest ({rest}) "
            "divisible by 4; change num_heads or temporal_fraction"
        )
    return time, rest // 2, rest // 2


def mixed_2d_frequencies(head_dim: int, num_heads: int, base: float) -> Tensor:
    """Initial learnable frequencies of rope_mixed: [2 (row, col), heads, Dh / 2].

    Per head, a random angle a: the first Dh / 4 pairs point along (cos a, sin a), the others
    along the perpendicular direction, with magnitudes base^(-4i / Dh).
    """
    magnitude = 1.0 / base ** (torch.arange(0, head_dim, 4, dtype=torch.float32) / head_dim)
    angle = (torch.rand(num_heads) * 2 * math.pi)[:, None]
    row = torch.cat([magnitude * torch.cos(angle), magnitude * torch.cos(angle + math.pi / 2)], -1)
    col = torch.cat([magnitude * torch.sin(angle), magnitude * torch.sin(angle + math.pi / 2)], -1)
    return torch.stack([row, col])


def mixed_3d_frequencies(head_dim: int, num_heads: int, base: float) -> Tensor:
    """Initial learnable frequencies of rope_3d_mixed: [3 (t, row, col), heads, Dh / 2].

    Per head, two random orthonormal directions u, v in (t, row, col) space: the first Dh / 4
    pairs point along u, the others along v, with magnitudes base^(-4i / Dh).
    """
    magnitude = 1.0 / base ** (torch.arange(0, head_dim, 4, dtype=torch.float32) / head_dim)
    u = torch.randn(num_heads, 3)
    u = u / u.norm(dim=-1, keepdim=True)
    v = torch.randn(num_heads, 3)
    v = v - (v * u).sum(dim=-1, keepdim=True) * u
    v = v / v.norm(dim=-1, keepdim=True)
    per_axis = [
        torch.cat([magnitude * u[:, axis, None], magnitude * v[:, axis, None]], dim=-1)
        for axis in range(3)
    ]
    return torch.stack(per_axis)


class Rope(nn.Module):
    """Rotates queries or keys by their positions; one per attention layer.

    Args:
        kind: one of ROPE_KINDS.
        num_heads, head_dim: the attention's; head_dim must be divisible by 4 (two axes of
            feature pairs), and splittable by `temporal_split` for rope_3d.
        base: frequency base of the axial kinds (spatial axes of rope_3d).
        mixed_base: magnitude base of the mixed kinds' initial frequencies (1e4 in v1.2).
        temporal_fraction: share of the head dim rotated by time under rope_3d.
        temporal_base: rope_3d's frequency base for time; None means `base`.

    The mixed kinds own a learnable `freqs` [axes, heads, Dh / 2]; the axial kinds have no
    parameter.
    """

    def __init__(
        self,
        kind: str,
        num_heads: int,
        head_dim: int,
        base: float = DEFAULT_BASE,
        mixed_base: float = DEFAULT_BASE,
        temporal_fraction: float = 0.25,
        temporal_base: float | None = None,
    ):
        super().__init__()
        if kind not in ROPE_KINDS:
            raise ValueError(f"RoPE kind must be one of {ROPE_KINDS}, got {kind!r}")
        if head_dim % 4:
            raise ValueError(
                f"{kind} needs a head dim divisible by 4, got {head_dim}; change width or heads"
            )
        if base <= 0 or mixed_base <= 0 or (temporal_base is not None and temporal_base <= 0):
            raise ValueError(
                f"RoPE bases must be positive, got base={base}, mixed_base={mixed_base}, "
                f"temporal_base={temporal_base}"
            )
        self.kind = kind
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.base = base
        self.temporal_base = base if temporal_base is None else temporal_base
        self.chunks = (
            temporal_split(head_dim, temporal_fraction)
            if kind == "rope_3d"
            else (head_dim // 2, head_dim // 2)
        )
        self.freqs: nn.Parameter | None = None
        if kind == "rope_mixed":
            self.freqs = nn.Parameter(mixed_2d_frequencies(head_dim, num_heads, mixed_base))
        elif kind == "rope_3d_mixed":
            self.freqs = nn.Parameter(mixed_3d_frequencies(head_dim, num_heads, mixed_base))

    @property
    def num_axes(self) -> int:
        return num_axes(self.kind)

    def angles(self, positions: Tensor, packed: bool) -> Tensor:
        """Rotation angles (float32) for positions [N, A] -> [N, 1 or heads, Dh / 2] (packed),
        or [B, N, A] -> [B, 1 or heads, N, Dh / 2] (padded)."""
        positions = positions.to(torch.float32)
        if self.freqs is None:
            bases = (self.temporal_base, self.base, self.base) if self.kind == "rope_3d" else None
            parts = []
            for axis, width in enumerate(self.chunks):
                base = self.base if bases is None else bases[axis]
                frequencies = axial_frequencies(width, base, positions.device)
                parts.append(positions[..., axis, None] * frequencies)
            angles = torch.cat(parts, dim=-1)  # [N, Dh / 2] or [B, N, Dh / 2]: every head's
            return angles[:, None]
        freqs = self.freqs.to(torch.float32)  # [A, H, Dh / 2]
        angles = None
        for axis in range(self.num_axes):
            if packed:  # [N, 1, 1] * [H, Dh / 2]
                term = positions[:, axis, None, None] * freqs[axis]
            else:  # [B, 1, N, 1] * [1, H, 1, Dh / 2]
                term = positions[:, None, :, axis, None] * freqs[axis][None, :, None, :]
            angles = term if angles is None else angles + term
        return angles

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """x packed [N, heads, Dh] with positions [N, A], or padded [B, heads, N, Dh] with
        positions [B, N, A] -> x rotated, same shape and dtype."""
        packed = x.ndim == 3
        if x.shape[-1] != self.head_dim or positions.shape[-1] != self.num_axes:
            raise ValueError(
                f"{self.kind}: expected head dim {self.head_dim} and {self.num_axes} coordinates, "
                f"got x {tuple(x.shape)} and positions {tuple(positions.shape)}"
            )
        return rotate(x, self.angles(positions, packed))


# -- coordinates ---------------------------------------------------------------------------------


def days_since_anchor(timestamps: Tensor) -> Tensor:
    """timestamps [..., 3] = (day 1..31, month 0..11, year) -> float32 days since 2000-01-01."""
    if timestamps.shape[-1] != 3:
        raise ValueError(
            f"timestamps must end with (day, month, year), got shape {tuple(timestamps.shape)}"
        )
    day = timestamps[..., 0].to(torch.float32)
    year = timestamps[..., 2].to(torch.float32)
    table = torch.tensor(DAYS_BEFORE_MONTH, dtype=torch.float32, device=timestamps.device)
    before_month = table[timestamps[..., 1].long()]
    return (year - ANCHOR_YEAR) * DAYS_PER_YEAR + before_month + (day - 1.0)


def gsd_ratio(input_res_m: float, patch_size: int) -> float:
    """A patch's side in 10 m units: the spacing of neighbouring patches' coordinates."""
    return input_res_m * patch_size / modalities.BASE_GSD_M


def positions_of(
    tokens: Mapping[str, Tensor],
    kind: str,
    timestamps: Tensor,
    patch_size: int,
    input_res_m: float = 10.0,
    temporal_scale: float = 1.0,
    coordinate_scale: float = 1.0,
) -> dict[str, Tensor]:
    """RoPE coordinates of per-modality tokens: {name: [*tokens.shape[:-1], A]} float32.

    Args:
        tokens: spatial [B, h, w, T, S, D] or non-spatial [B, S, D] per modality.
        kind: one of ROPE_KINDS.
        timestamps: [B, T, 3] (day, month 0..11, year); read by the 3-D kinds only.
        patch_size, input_res_m: set the ground spacing of the row/col coordinates.
        temporal_scale: days -> time coordinate (1/30 in v1.2).
        coordinate_scale: an extra factor on row and col (1 in every reference recipe).
    """
    axes = num_axes(kind)
    spacing = gsd_ratio(input_res_m, patch_size) * coordinate_scale
    time = None
    if is_3d(kind):
        time = days_since_anchor(timestamps) * temporal_scale  # [B, T]
    out = {}
    for name, value in tokens.items():
        positions = torch.zeros(*value.shape[:-1], axes, dtype=torch.float32, device=value.device)
        if value.ndim == 6:
            batch, rows, cols, steps = value.shape[:4]
            row = torch.arange(rows, dtype=torch.float32, device=value.device) * spacing
            col = torch.arange(cols, dtype=torch.float32, device=value.device) * spacing
            positions[..., axes - 2] = row[None, :, None, None, None]
            positions[..., axes - 1] = col[None, None, :, None, None]
            if time is not None:  # static maps (T = 1) take the first timestamp's time
                if time.shape[1] < steps:
                    raise ValueError(
                        f"{name} has T={steps} timesteps but timestamps have {time.shape[1]}"
                    )
                positions[..., 0] = time[:, None, None, :steps, None].to(value.device)
        out[name] = positions
    return out


# -- the additive encodings RoPE replaces --------------------------------------------------------


class RopeEncodings(CompositeEncodings):
    """v1's additive encodings with the quarters RoPE takes over left at zero.

    Under any RoPE kind the spatial quarter (2-D sincos) is not added: rows and columns are
    rotated inside attention instead. Under the 3-D kinds the time-slot quarter is not added
    either. The band-set and month quarters stay (the month is a seasonal signal, not a
    position). Zero quarters keep the token layout of v1, so checkpoints map one to one.
    """

    def __init__(self, *args, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        if kind not in ROPE_KINDS:
            raise ValueError(f"RopeEncodings kind must be one of {ROPE_KINDS}, got {kind!r}")
        self.kind = kind

    def _time_encoding(self, num_timesteps: int) -> Tensor:
        if is_3d(self.kind):
            return self.time_table.new_zeros(num_timesteps, self.quarter)
        return super()._time_encoding(num_timesteps)

    def spatial_encoding(
        self, rows: int, cols: int, patch_size: int, input_res_m: float = 10.0
    ) -> Tensor:
        return self.time_table.new_zeros(rows, cols, self.quarter)


# -- configuration -------------------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class RopeConfig(Configurable[Rope]):
    """How an encoder or decoder rotates q/k (one `Rope` per attention layer).

    Attributes:
        kind: one of ROPE_KINDS ("rope_3d_mixed" in v1.2).
        base: frequency base of the axial kinds.
        mixed_base: magnitude base of the mixed kinds' initial frequencies (1e4 in v1.2; the
            reference's default, 10, is the RoPE-Mixed paper's ViT-B value).
        temporal_fraction: head-dim share of time under rope_3d (0.25: the additive quarter).
        temporal_base: rope_3d's time frequency base; None means `base`.
        temporal_scale: days since 2000 -> time coordinate (1/30 in v1.2: about months).
        coordinate_scale: extra factor on the row/col coordinates (1 in every recipe).
    """

    kind: str = "rope_3d_mixed"
    base: float = DEFAULT_BASE
    mixed_base: float = DEFAULT_BASE
    temporal_fraction: float = 0.25
    temporal_base: float | None = None
    temporal_scale: float = 1.0 / 30.0
    coordinate_scale: float = 1.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if self.kind not in ROPE_KINDS:
            raise ValueError(f"{owner}.kind must be one of {ROPE_KINDS}, got {self.kind!r}")
        for name in ("base", "mixed_base", "temporal_scale", "coordinate_scale"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{owner}.{name} must be positive, got {getattr(self, name)}")
        if self.temporal_base is not None and self.temporal_base <= 0:
            raise ValueError(f"{owner}.temporal_base must be positive, got {self.temporal_base}")
        if not 0.0 < self.temporal_fraction < 1.0:
            raise ValueError(
                f"{owner}.temporal_fraction must be in (0, 1), got {self.temporal_fraction}"
            )

    def check_heads(self, owner: str, width: int, num_heads: int) -> None:
        """Raises a one-line ValueError if this kind cannot rotate heads of width/num_heads."""
        head_dim = width // num_heads
        if head_dim % 4:
            raise ValueError(
                f"{owner}: {self.kind} needs a head dim divisible by 4, got {width} / "
                f"{num_heads} heads = {head_dim}; change width or num_heads"
            )
        if self.kind == "rope_3d":
            temporal_split(head_dim, self.temporal_fraction)

    def build(self, num_heads: int, head_dim: int) -> Rope:
        return Rope(
            self.kind,
            num_heads,
            head_dim,
            base=self.base,
            mixed_base=self.mixed_base,
            temporal_fraction=self.temporal_fraction,
            temporal_base=self.temporal_base,
        )

    def positions(
        self,
        tokens: Mapping[str, Tensor],
        timestamps: Tensor,
        patch_size: int,
        input_res_m: float = 10.0,
    ) -> dict[str, Tensor]:
        """`positions_of` the tokens with this config's kind and scales."""
        return positions_of(
            tokens,
            self.kind,
            timestamps,
            patch_size,
            input_res_m,
            temporal_scale=self.temporal_scale,
            coordinate_scale=self.coordinate_scale,
        )


# -- attention and blocks with RoPE and qk-norm --------------------------------------------------


def check_rope_field(owner: str, value: object, width: int, num_heads: int) -> None:
    """Checks an encoder's or decoder's optional `rope` field (None: no RoPE): a RopeConfig
    whose kind can rotate heads of width / num_heads; otherwise a one-line ValueError."""
    if value is None:
        return
    if not isinstance(value, RopeConfig):
        raise ValueError(f"{owner}.rope must be a RopeConfig or None, got {type(value).__name__}")
    value.check_heads(owner, width, num_heads)


def _qk_norm(head_dim: int, enabled: bool) -> nn.Module:
    """LayerNorm over each head's features (eps 1e-5, as the reference), or identity."""
    return nn.LayerNorm(head_dim) if enabled else nn.Identity()


def _checked(rope: Rope | None, positions: Tensor | None, role: str) -> Tensor | None:
    if rope is not None and positions is None:
        raise ValueError(f"this attention applies {rope.kind}; pass the {role} positions")
    return positions


class RopeSelfAttention(SelfAttention):
    """`SelfAttention` with optional qk-norm and RoPE on q and k (after the norm, as the
    reference), the positions passed per call."""

    def __init__(self, width: int, num_heads: int, rope: Rope | None = None, qk_norm: bool = False):
        super().__init__(width, num_heads)
        head_dim = width // num_heads
        self.q_norm = _qk_norm(head_dim, qk_norm)
        self.k_norm = _qk_norm(head_dim, qk_norm)
        self.rope = rope

    def _rotate(self, q: Tensor, k: Tensor, positions: Tensor | None) -> tuple[Tensor, Tensor]:
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is None:
            return q, k
        positions = _checked(self.rope, positions, "token")
        return self.rope(q, positions), self.rope(k, positions)

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None = None,
        varlen: Varlen | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """As `SelfAttention.forward`; positions [N, A] (packed) or [B, N, A] (padded)."""
        qkv = onednn_linear.linear(x, self.qkv)
        if varlen is not None:
            q, k, v = qkv.unflatten(-1, (3, self.num_heads, -1)).unbind(1)
            q, k = self._rotate(q, k, positions)
            out = varlen_attention(q, k, v, varlen, varlen)
            return onednn_linear.linear(out.flatten(1), self.proj)
        q, k, v = einops.rearrange(
            qkv, "b n (three h d) -> three b h n d", three=3, h=self.num_heads
        ).unbind(0)
        q, k = self._rotate(q, k, positions)
        out = _sdpa(q, k, v, key_padding_mask)
        return onednn_linear.linear(einops.rearrange(out, "b h n d -> b n (h d)"), self.proj)


class RopeCrossAttention(CrossAttention):
    """`CrossAttention` with optional qk-norm and RoPE: queries rotate by their positions,
    keys by the context's."""

    def __init__(self, width: int, num_heads: int, rope: Rope | None = None, qk_norm: bool = False):
        super().__init__(width, num_heads)
        head_dim = width // num_heads
        self.q_norm = _qk_norm(head_dim, qk_norm)
        self.k_norm = _qk_norm(head_dim, qk_norm)
        self.rope = rope

    def _rotate(
        self, q: Tensor, k: Tensor, q_positions: Tensor | None, kv_positions: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is None:
            return q, k
        q_positions = _checked(self.rope, q_positions, "query")
        kv_positions = _checked(self.rope, kv_positions, "context")
        return self.rope(q, q_positions), self.rope(k, kv_positions)

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        key_padding_mask: Tensor | None = None,
        q_varlen: Varlen | None = None,
        kv_varlen: Varlen | None = None,
        q_positions: Tensor | None = None,
        kv_positions: Tensor | None = None,
    ) -> Tensor:
        """As `CrossAttention.forward`; q_positions / kv_positions match x / context."""
        if q_varlen is not None or kv_varlen is not None:
            if q_varlen is None or kv_varlen is None:
                raise ValueError("packed cross-attention needs both q_varlen and kv_varlen")
            q = self.q(x).unflatten(-1, (self.num_heads, -1))
            k, v = self.kv(context).unflatten(-1, (2, self.num_heads, -1)).unbind(1)
            q, k = self._rotate(q, k, q_positions, kv_positions)
            return self.proj(varlen_attention(q, k, v, q_varlen, kv_varlen).flatten(1))
        q = einops.rearrange(self.q(x), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = einops.rearrange(
            self.kv(context), "b n (two h d) -> two b h n d", two=2, h=self.num_heads
        ).unbind(0)
        q, k = self._rotate(q, k, q_positions, kv_positions)
        out = _sdpa(q, k, v, key_padding_mask)
        return self.proj(einops.rearrange(out, "b h n d -> b n (h d)"))


class RopeBlock(Block):
    """`Block` whose attention is a `RopeSelfAttention`; forward takes the token positions."""

    def __init__(
        self,
        width: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        rope: Rope | None = None,
        qk_norm: bool = False,
    ):
        super().__init__(width, num_heads, mlp_ratio, drop_path)
        self.attn = RopeSelfAttention(width, num_heads, rope, qk_norm)

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None = None,
        varlen: Varlen | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        attended = self.attn(self.norm1(x), key_padding_mask, varlen, positions)
        x = x + self.drop_path(attended, varlen)
        return x + self.drop_path(self.mlp(self.norm2(x)), varlen)


class RopeCrossBlock(CrossBlock):
    """`CrossBlock` whose attention is a `RopeCrossAttention`; forward takes both positions."""

    def __init__(
        self,
        width: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        rope: Rope | None = None,
        qk_norm: bool = False,
    ):
        super().__init__(width, num_heads, mlp_ratio, drop_path)
        self.attn = RopeCrossAttention(width, num_heads, rope, qk_norm)

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        key_padding_mask: Tensor | None = None,
        q_varlen: Varlen | None = None,
        kv_varlen: Varlen | None = None,
        q_positions: Tensor | None = None,
        kv_positions: Tensor | None = None,
    ) -> Tensor:
        attended = self.attn(
            self.norm1(x), context, key_padding_mask, q_varlen, kv_varlen, q_positions, kv_positions
        )
        x = x + self.drop_path(attended, q_varlen)
        return x + self.drop_path(self.mlp(self.norm2(x)), q_varlen)
