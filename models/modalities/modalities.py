"""The modality registry: the one place that says what each input is.

Facts (band lists, resolutions, which maps are decode-only) follow the OlmoEarth v1
pretraining data. Every other layer (data, masking, losses, the model) asks this module
instead of hard-coding band counts.

Vocabulary:
- A *modality* is one source (Sentinel-2 L2A, Sentinel-1, a land-cover map, ...).
- Its *bands* are stored in a fixed channel order, the last axis of `[B, H, W, T, C]`.
- A *band set* is the unit of tokenization: one token per (patch, timestep, band set).
  By default band sets group bands of the same native resolution (S2 has 3, Landsat 2);
  `regroup` builds other groupings (e.g. all 12 S2 bands in one token, as OlmoEarth v1.1).

All spatial modalities here live on the 10 m grid: H and W are counted in 10 m pixels.
The band-set resolution factor only records the native ground resolution of the bands
(resolution = 0.625 m x factor; factor 16 = 10 m); it does not change the array size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

BASE_RESOLUTION_M = 0.625
"""The finest grid the reference data format knows; resolutions are powers of two of it."""

BASE_GSD_M = 10
"""Ground sample distance of the model's pixel grid, in metres."""

MISSING_VALUE = -99999
"""Fill value for missing pixels, timesteps and modalities, as in the reference H5 files."""

MAX_TIMESTEPS = 12
"""Monthly steps over one year: the longest time series a sample holds."""

WORLDCOVER_CLASSES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
"""ESA WorldCover class codes, in canonical order (tree cover ... moss and lichen)."""


@dataclasses.dataclass(frozen=True)
class BandSet:
    """Bands tokenized together; `resolution_factor` x 0.625 m is their native resolution."""

    bands: tuple[str, ...]
    resolution_factor: int

    def __post_init__(self) -> None:
        if not self.bands:
            raise ValueError("BandSet.bands is empty: a band set needs at least one band")
        if len(set(self.bands)) != len(self.bands):
            raise ValueError(f"BandSet.bands repeats a band: {self.bands}")

    @property
    def resolution_m(self) -> float:
        return BASE_RESOLUTION_M * self.resolution_factor


@dataclasses.dataclass(frozen=True)
class ModalitySpec:
    """What one modality is.

    Attributes:
        name: registry key, also the dataset name inside the H5 files.
        band_sets: tokenization groups, in token order.
        is_multitemporal: True for time series (`T` up to 12); static maps have `T = 1`.
        is_spatial: False for per-sample vectors such as lat/lon (no H, W axes).
        decode_only: True for maps that are prediction targets only and never encoded
            (the v1 recipe decodes the six maps and encodes S2, S1 and Landsat).
        storage_bands: channel order on disk and in `[B, H, W, T, C]`; defaults to the
            concatenation of the default band sets. Kept when band sets are regrouped, so
            the same data files serve every tokenization.
    """

    name: str
    band_sets: tuple[BandSet, ...]
    is_multitemporal: bool
    is_spatial: bool = True
    decode_only: bool = False
    storage_bands: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        grouped = tuple(band for band_set in self.band_sets for band in band_set.bands)
        if not self.storage_bands:
            object.__setattr__(self, "storage_bands", grouped)
        if sorted(grouped) != sorted(self.storage_bands):
            raise ValueError(
                f"{self.name}: band sets {[bs.bands for bs in self.band_sets]} must use every "
                f"stored band exactly once; stored bands are {list(self.storage_bands)}"
            )

    @property
    def num_bands(self) -> int:
        return len(self.storage_bands)

    @property
    def num_band_sets(self) -> int:
        return len(self.band_sets)

    @property
    def is_spacetime(self) -> bool:
        return self.is_spatial and self.is_multitemporal

    def band_set_indices(self) -> tuple[tuple[int, ...], ...]:
        """For each band set, the channel indices of its bands in `storage_bands`."""
        position = {band: index for index, band in enumerate(self.storage_bands)}
        return tuple(tuple(position[band] for band in bs.bands) for bs in self.band_sets)

    def regroup(self, band_groups: Sequence[Sequence[str]]) -> ModalitySpec:
        """The same modality tokenized with other band sets (every band exactly once).

        A regrouped set takes the finest native resolution of its bands, because its
        token covers the patch at that detail.
        """
        factor_of = {band: bs.resolution_factor for bs in self.band_sets for band in bs.bands}
        unknown = [band for group in band_groups for band in group if band not in factor_of]
        if unknown:
            raise ValueError(
                f"{self.name}: unknown bands {unknown} in band_groups; "
                f"valid bands are {list(self.storage_bands)}"
            )
        new_sets = tuple(
            BandSet(tuple(group), min(factor_of[band] for band in group)) for group in band_groups
        )
        return dataclasses.replace(self, band_sets=new_sets)


def _spec(
    name: str,
    band_sets: Iterable[tuple[Sequence[str], int]],
    *,
    is_multitemporal: bool,
    decode_only: bool = False,
    is_spatial: bool = True,
) -> ModalitySpec:
    return ModalitySpec(
        name=name,
        band_sets=tuple(BandSet(tuple(bands), factor) for bands, factor in band_sets),
        is_multitemporal=is_multitemporal,
        is_spatial=is_spatial,
        decode_only=decode_only,
    )


_OSM_CATEGORIES = (
    "aerialway_pylon",
    "aerodrome",
    "airstrip",
    "amenity_fuel",
    "building",
    "chimney",
    "communications_tower",
    "crane",
    "flagpole",
    "fountain",
    "generator_wind",
    "helipad",
    "highway",
    "leisure",
    "lighthouse",
    "obelisk",
    "observatory",
    "parking",
    "petroleum_well",
    "power_plant",
    "power_substation",
    "power_tower",
    "river",
    "runway",
    "satellite_dish",
    "silo",
    "storage_tank",
    "taxiway",
    "water_tower",
    "works",
)

_WORLDCEREAL_PRODUCTS = (
    "tc-annual-temporarycrops-classification",
    "tc-maize-main-irrigation-classification",
    "tc-maize-main-maize-classification",
    "tc-maize-second-irrigation-classification",
    "tc-maize-second-maize-classification",
    "tc-springcereals-springcereals-classification",
    "tc-wintercereals-irrigation-classification",
    "tc-wintercereals-wintercereals-classification",
)

SENTINEL2_L2A = _spec(
    "sentinel2_l2a",
    [
        (("B02", "B03", "B04", "B08"), 16),  # 10 m
        (("B05", "B06", "B07", "B8A", "B11", "B12"), 32),  # 20 m
        (("B01", "B09"), 64),  # 60 m bands, stored at 40 m
    ],
    is_multitemporal=True,
)
SENTINEL1 = _spec("sentinel1", [(("vv", "vh"), 16)], is_multitemporal=True)
LANDSAT = _spec(
    "landsat",
    [
        (("B8",), 16),  # 15 m panchromatic, stored at 10 m
        (("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"), 32),  # 30 m, at 20 m
    ],
    is_multitemporal=True,
)
WORLDCOVER = _spec("worldcover", [(("B1",), 16)], is_multitemporal=False, decode_only=True)
SRTM = _spec("srtm", [(("srtm",), 16)], is_multitemporal=False, decode_only=True)
OPENSTREETMAP_RASTER = _spec(
    "openstreetmap_raster", [(_OSM_CATEGORIES, 4)], is_multitemporal=False, decode_only=True
)
WRI_CANOPY_HEIGHT_MAP = _spec(
    "wri_canopy_height_map", [(("B1",), 16)], is_multitemporal=False, decode_only=True
)
CDL = _spec("cdl", [(("cdl",), 16)], is_multitemporal=False, decode_only=True)
WORLDCEREAL = _spec(
    "worldcereal", [(_WORLDCEREAL_PRODUCTS, 16)], is_multitemporal=False, decode_only=True
)
LATLON = _spec("latlon", [(("lat", "lon"), 0)], is_multitemporal=False, is_spatial=False)

MODALITIES: dict[str, ModalitySpec] = {
    spec.name: spec
    for spec in (
        SENTINEL2_L2A,
        SENTINEL1,
        LANDSAT,
        WORLDCOVER,
        SRTM,
        OPENSTREETMAP_RASTER,
        WRI_CANOPY_HEIGHT_MAP,
        CDL,
        WORLDCEREAL,
        LATLON,
    )
}
"""Every modality, in canonical order. This order is the token order everywhere: when the
encoder concatenates modalities into one sequence it walks them in this order, so the
layout of a sequence never depends on dictionary or set iteration order."""

TRAINING_MODALITIES: tuple[str, ...] = (
    "sentinel2_l2a",
    "sentinel1",
    "landsat",
    "worldcover",
    "srtm",
    "openstreetmap_raster",
    "wri_canopy_height_map",
    "cdl",
    "worldcereal",
)
"""The nine modalities of the OlmoEarth v1 recipe: three encoded, six decode-only maps."""


def get(name: str) -> ModalitySpec:
    """The spec of `name`, or a ValueError that lists the valid names."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise ValueError(
            f"unknown modality {name!r}; valid modalities are {list(MODALITIES)}"
        ) from None


def canonical_order(names: Iterable[str]) -> tuple[str, ...]:
    """`names` sorted into registry order (unknown names raise)."""
    wanted = set(names)
    for name in wanted:
        get(name)
    return tuple(name for name in MODALITIES if name in wanted)


@dataclasses.dataclass(frozen=True)
class Tokenization:
    """Per-modality band grouping overrides; modalities not named keep their default sets.

    Example: `Tokenization({"sentinel2_l2a": [SENTINEL2_L2A.storage_bands]})` puts all
    12 S2 bands into one token per patch and timestep (OlmoEarth v1.1).
    """

    band_groups: dict[str, tuple[tuple[str, ...], ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        normalized = {}
        for name, groups in self.band_groups.items():
            get(name).regroup(groups)  # validates names and coverage
            normalized[name] = tuple(tuple(group) for group in groups)
        object.__setattr__(self, "band_groups", normalized)

    def spec(self, name: str) -> ModalitySpec:
        base = get(name)
        groups = self.band_groups.get(name)
        return base.regroup(groups) if groups is not None else base

    def specs(self, names: Iterable[str]) -> tuple[ModalitySpec, ...]:
        return tuple(self.spec(name) for name in canonical_order(names))


DEFAULT_TOKENIZATION = Tokenization()

SINGLE_BANDSET_TOKENIZATION = Tokenization(
    {
        "sentinel2_l2a": (SENTINEL2_L2A.storage_bands,),
        "landsat": (LANDSAT.storage_bands,),
    }
)
"""OlmoEarth v1.1's grouping: one token per patch and timestep for S2 and for Landsat."""
