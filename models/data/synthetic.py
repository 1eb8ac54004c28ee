"""A structured synthetic Earth in the OlmoEarth H5 format: the embedded default dataset.

Each sample is a `size` x `size` tile at 10 m with `timesteps` monthly steps, built so that
a model has real structure to learn and evaluations have labels to check:
    land cover   ESA WorldCover classes on irregular regions (Voronoi cells with wavy edges),
                 drawn from a latitude biome (boreal, temperate, dry, tropical, mountain),
                 biased by terrain (water and wetland low, snow only high) and by the
                 classes of neighbouring regions (crop next to grass and built-up, wetland
                 next to water, ...). The WorldCover map is the label map, and the metadata
                 csv holds each sample's majority class.
    Sentinel-2   per-class green and dormant spectra (models.data.spectra) mixed by a
                 seasonal greenness: vegetation greens up toward the local mid-summer (July
                 in the north, January in the south; weaker in the tropics), so NDVI peaks
                 in summer. Clouds are smooth bright blobs; sensor noise is small.
    Landsat      the same surfaces at Landsat wavelengths in Collection 2 digital numbers,
                 with its own clouds, a thermal signal from latitude, elevation, season and
                 class, and a cirrus band that sees clouds; thermal and cirrus values are
                 placed with the real per-band statistics (norm_stats/computed.json).
    Sentinel-1   per-class VV/VH backscatter in dB, rising with greenness, with speckle.
    maps         SRTM elevation, canopy height, CDL (only in the continental US box),
                 WorldCereal crop types and an OpenStreetMap raster, all from the classes.
    gaps         missing timesteps (Landsat most, S1 least) and missing modalities.
Everything is drawn from `np.random.default_rng([seed, index])`: the same seed gives
byte-identical arrays, and any sample can be regenerated alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.config.configurable import Configurable
from models.data import fields, h5_format, spectra
from models.data.h5_format import CompressionConfig, SampleRecord
from models.data.normalize import COMPUTED_FILENAME, DEFAULT_STATS_DIR
from models.modalities import modalities

logger = logging.getLogger(__name__)

DATASET_VERSION = "v1"
"""Bump whenever the generator's output changes, so cached copies are regenerated."""

DEFAULT_NUM_SAMPLES = 128
DEFAULT_SEED = 0
SUPPORTED_MODALITIES = modalities.TRAINING_MODALITIES
MAJORITY_CLASS_COLUMN = "majority_worldcover_class"

_CLASS_INDEX = {code: i for i, code in enumerate(modalities.WORLDCOVER_CLASSES)}
TREE, SHRUB, GRASS, CROP, BUILT, BARE, SNOW, WATER, WETLAND, MANGROVE, MOSS = range(11)

BIOMES = ("boreal", "temperate", "dry", "tropical", "mountain")
# Class priors per biome, WorldCover order:
#   tree shrub grass crop built bare snow water wetland mangrove moss
_PRIORS = {
    "boreal": (0.34, 0.12, 0.08, 0.03, 0.02, 0.04, 0.03, 0.14, 0.10, 0.00, 0.10),
    "temperate": (0.22, 0.05, 0.17, 0.30, 0.10, 0.02, 0.00, 0.08, 0.04, 0.00, 0.02),
    "dry": (0.04, 0.25, 0.16, 0.12, 0.06, 0.30, 0.00, 0.04, 0.02, 0.00, 0.01),
    "tropical": (0.38, 0.10, 0.10, 0.16, 0.05, 0.02, 0.00, 0.07, 0.05, 0.06, 0.01),
    "mountain": (0.17, 0.13, 0.19, 0.02, 0.01, 0.22, 0.10, 0.05, 0.02, 0.00, 0.09),
}
# (base elevation range m, relief range m) per biome.
_TERRAIN = {
    "boreal": ((0, 500), (20, 300)),
    "temperate": ((0, 600), (10, 300)),
    "dry": ((0, 1200), (20, 400)),
    "tropical": ((0, 400), (5, 300)),
    "mountain": ((1800, 3500), (400, 1500)),
}


def _compatibility() -> np.ndarray:
    """`[11, 11]` how much more likely class b is next to class a (symmetric, 1 = neutral)."""
    matrix = np.ones((11, 11))
    np.fill_diagonal(matrix, 3.0)  # regions of one class merge into larger patches
    pairs = {
        (TREE, SHRUB): 2.0,
        (SHRUB, GRASS): 2.0,
        (GRASS, CROP): 2.0,
        (CROP, BUILT): 2.0,
        (GRASS, BUILT): 1.5,
        (WATER, WETLAND): 3.0,
        (WETLAND, MANGROVE): 2.0,
        (WATER, MANGROVE): 2.0,
        (SNOW, BARE): 3.0,
        (SNOW, MOSS): 2.0,
        (BARE, SHRUB): 2.0,
        (MOSS, SHRUB): 2.0,
        (SNOW, CROP): 0.1,
        (SNOW, BUILT): 0.1,
        (SNOW, MANGROVE): 0.05,
        (MOSS, MANGROVE): 0.05,
        (BARE, WETLAND): 0.3,
        (BUILT, MANGROVE): 0.3,
    }
    for (a, b), value in pairs.items():
        matrix[a, b] = matrix[b, a] = value
    return matrix


_LOG_COMPATIBILITY = np.log(_compatibility())


@dataclasses.dataclass(kw_only=True)
class SyntheticEarthConfig(Configurable["SyntheticEarth"]):
    """Configuration of the synthetic Earth generator.

    Attributes:
        seed: fixes every sample (sample i uses the stream `[seed, i]`).
        size: pixels per side (10 m each): 64 px = 640 m.
        timesteps: monthly steps per sample, 1..12.
        cloudy_step_probability: per sample, the chance that a step is cloudy is drawn from
            this range (S2 and Landsat draw their clouds separately).
        missing_step_probability: chance that a stored step is absent, per modality; one
            multitemporal modality per sample keeps every step (the reference converter only
            keeps samples with one complete year).
        missing_modality_probability: chance that a modality is absent from a sample; CDL is
            also absent outside the continental US, and OpenStreetMap where it would be empty.
        compression: of the written files.
    """

    seed: int = DEFAULT_SEED
    size: int = 64
    timesteps: int = modalities.MAX_TIMESTEPS
    cloudy_step_probability: tuple[float, float] = (0.1, 0.5)
    missing_step_probability: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"sentinel2_l2a": 0.1, "sentinel1": 0.1, "landsat": 0.3}
    )
    missing_modality_probability: dict[str, float] = dataclasses.field(
        default_factory=lambda: {
            "sentinel2_l2a": 0.03,
            "sentinel1": 0.1,
            "landsat": 0.15,
            "srtm": 0.02,
            "wri_canopy_height_map": 0.05,
            "worldcereal": 0.3,
        }
    )
    compression: CompressionConfig = dataclasses.field(
        default_factory=lambda: CompressionConfig(algorithm="gzip", level=4, shuffle=True)
    )

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"SyntheticEarthConfig.size is {self.size}; must be >= 8 pixels")
        if not 1 <= self.timesteps <= modalities.MAX_TIMESTEPS:
            raise ValueError(
                f"SyntheticEarthConfig.timesteps is {self.timesteps}; "
                f"allowed 1..{modalities.MAX_TIMESTEPS}"
            )
        low, high = self.cloudy_step_probability
        if not 0 <= low <= high <= 1:
            raise ValueError(
                f"SyntheticEarthConfig.cloudy_step_probability is {self.cloudy_step_probability}; "
                "need 0 <= low <= high <= 1"
            )
        for field_name in ("missing_step_probability", "missing_modality_probability"):
            for name, probability in getattr(self, field_name).items():
                if name not in SUPPORTED_MODALITIES or not 0 <= probability <= 1:
                    raise ValueError(
                        f"SyntheticEarthConfig.{field_name}[{name!r}] = {probability}; keys "
                        f"must be in {list(SUPPORTED_MODALITIES)} and values in [0, 1]"
                    )

    def build(self) -> SyntheticEarth:
        return SyntheticEarth(self)


@dataclasses.dataclass
class SyntheticSample:
    """A generated sample plus what the generator knows about it.

    Attributes:
        record: what goes into the H5 file.
        labels: `[H, W]` WorldCover codes (the same as the worldcover modality).
        majority_class: the most frequent WorldCover code (ties: the smaller code).
        biome: the biome the classes were drawn from.
        s2_cloud_fraction: `[T]` fraction of S2 pixels with any cloud (opacity > 1%), per step.
    """

    record: SampleRecord
    labels: np.ndarray
    majority_class: int
    biome: str
    s2_cloud_fraction: np.ndarray


def _load_landsat_stats() -> dict[str, tuple[float, float]]:
    path = DEFAULT_STATS_DIR / COMPUTED_FILENAME
    with open(path) as handle:
        table = json.load(handle)["landsat"]
    return {
        band: (float(table[band]["mean"]), float(table[band]["std"]))
        for band in ("B9", "B10", "B11")
    }


def _season(months: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """1 at the peak month, 0 six months away (a raised cosine over the year)."""
    return 0.5 * (1.0 + np.cos(2.0 * np.pi * (months - peak) / 12.0))


class SyntheticEarth:
    """Generates samples of the synthetic Earth; see the module docstring."""

    def __init__(self, config: SyntheticEarthConfig) -> None:
        self.config = config
        self.green = spectra.s2_table("s2_green")  # [11, 12]
        self.dormant = spectra.s2_table("s2_dormant")
        self.cloud = spectra.cloud_s2()  # [12]
        self.landsat_stats = _load_landsat_stats()
        profiles = spectra.PROFILES
        self.green_base = np.asarray([p.green_base for p in profiles])
        self.green_amplitude = np.asarray([p.green_amplitude for p in profiles])
        self.s1_db = np.asarray([p.s1_db for p in profiles])  # [11, 2]
        self.s1_gain = np.asarray([p.s1_green_gain_db for p in profiles])
        self.temperature_offset = np.asarray([p.temperature_offset_k for p in profiles])
        self.canopy_range = np.asarray([p.canopy_height_m for p in profiles])
        self.cdl_codes = np.asarray([p.cdl_code for p in profiles])

    # --- geography -------------------------------------------------------------------

    @staticmethod
    def _location(rng: np.random.Generator) -> tuple[float, float, bool]:
        """(lat, lon, inside the continental US); a quarter of samples fall in the US box."""
        if rng.random() < 0.25:
            return float(rng.uniform(30, 48)), float(rng.uniform(-122, -75)), True
        lat, lon = float(rng.uniform(-45, 68)), float(rng.uniform(-180, 180))
        return lat, lon, (25 <= lat <= 49 and -125 <= lon <= -67)

    @staticmethod
    def _biome(rng: np.random.Generator, lat: float) -> str:
        if rng.random() < 0.1:
            return "mountain"
        latitude = abs(lat)
        if latitude >= 55:
            return "boreal"
        if latitude >= 35:
            return "temperate"
        if latitude >= 15:
            return "dry" if rng.random() < 0.6 else "temperate"
        return "tropical"

    def _assign_classes(
        self,
        rng: np.random.Generator,
        biome: str,
        relative_height: np.ndarray,
        elevation: np.ndarray,
        adjacency: np.ndarray,
    ) -> np.ndarray:
        """A WorldCover class index per region: prior x terrain x neighbours, in random order."""
        num_regions = len(relative_height)
        log_prior = np.log(np.asarray(_PRIORS[biome]) + 1e-9)
        classes = np.full(num_regions, -1)
        for region in rng.permutation(num_regions):
            logits = log_prior.copy()
            rel, z = relative_height[region] - 0.5, elevation[region]  # rel: -0.5 low .. 0.5 high
            logits[WATER] -= 4.0 * rel  # water and wetland collect in the lowest regions
            logits[WETLAND] -= 3.0 * rel
            logits[MANGROVE] += 2.0 if z < 30 else -20.0  # coastal tidal flats only
            snow_line = 400.0 if biome == "boreal" else 2500.0
            logits[SNOW] += np.clip((z - snow_line) / 300.0, -20.0, 1.0) + 2.0 * rel
            logits[MOSS] += 1.5 * rel
            logits[BARE] += 1.0 * rel
            logits[CROP] -= 1.0 * rel
            logits[BUILT] -= 1.0 * rel
            neighbours = classes[adjacency[region] & (classes >= 0)]
            if neighbours.size:
                logits += _LOG_COMPATIBILITY[neighbours].mean(axis=0)
            probabilities = np.exp(logits - logits.max())
            classes[region] = rng.choice(11, p=probabilities / probabilities.sum())
        return classes

    # --- clouds ----------------------------------------------------------------------

    @staticmethod
    def _cloud_opacity(
        rng: np.random.Generator, size: int, steps: int, probability: float
    ) -> np.ndarray:
        """`[H, W, T]` cloud opacity in [0, 1]: smooth blobs covering 5-90% of a cloudy step."""
        opacity = np.zeros((size, size, steps))
        for t in range(steps):
            if rng.random() >= probability:
                continue
            cover = rng.uniform(0.05, 0.9)
            field = fields.smooth_noise(rng, size, size / 6) + 0.35 * fields.smooth_noise(
                rng, size, size / 20
            )
            threshold = np.quantile(field, 1.0 - cover)
            opacity[:, :, t] = np.clip((field - threshold) / 0.5, 0, 1) * rng.uniform(0.7, 1.0)
        return opacity

    # --- one sample ------------------------------------------------------------------

    def sample(self, index: int) -> SyntheticSample:
        config = self.config
        rng = np.random.default_rng([config.seed, index])
        size, steps = config.size, config.timesteps
        lat, lon, in_us = self._location(rng)
        biome = self._biome(rng, lat)

        (base_low, base_high), (relief_low, relief_high) = _TERRAIN[biome]
        terrain = 0.8 * fields.unit_field(rng, size, size / 4) + 0.2 * fields.unit_field(
            rng, size, size / 12
        )
        coastal = biome == "tropical" and rng.random() < 0.3
        base = rng.uniform(0, 5) if coastal else rng.uniform(base_low, base_high)
        relief = rng.uniform(2, 40) if coastal else rng.uniform(relief_low, relief_high)
        elevation = base + relief * terrain

        num_regions = max(4, int(round(rng.integers(8, 18) * (size / 64) ** 2)))
        regions = fields.warped_voronoi(rng, size, num_regions, warp_px=size / 10)
        counts = np.bincount(regions.ravel(), minlength=num_regions)
        occupied = np.maximum(counts, 1)
        relative_height = np.bincount(regions.ravel(), terrain.ravel(), num_regions) / occupied
        region_elevation = np.bincount(regions.ravel(), elevation.ravel(), num_regions) / occupied
        adjacency = fields.region_adjacency(regions, num_regions)
        region_class = self._assign_classes(
            rng, biome, relative_height, region_elevation, adjacency
        )
        class_map = region_class[regions]  # [H, W] class index 0..10
        labels = np.asarray(modalities.WORLDCOVER_CLASSES)[class_map]
        for region in np.flatnonzero((region_class == WATER) & (counts > 0)):
            inside = regions == region
            elevation[inside] = elevation[inside].min()  # lakes are flat

        # Per-region character: brightness, greenness offset, crop type, irrigation, height.
        brightness = rng.uniform(0.9, 1.1, num_regions)
        green_offset = rng.normal(0.0, 0.05, num_regions)
        crop_type = rng.integers(len(spectra.CROP_TYPES), size=num_regions)
        irrigated = rng.random(num_regions) < 0.3
        low, high = self.canopy_range[region_class].T
        region_height = rng.uniform(low, high)

        start_month = int(rng.integers(12))
        year = int(rng.integers(2017, 2024))
        offsets = start_month + np.arange(steps)
        months = offsets % 12
        timestamps = np.stack([np.ones(steps, int), months, year + offsets // 12], axis=-1).astype(
            np.int32
        )

        # Phenology: greenness per region and step, then per pixel.
        peak_month = 6 if lat >= 0 else 0
        strength = 0.3 + 0.7 * min(abs(lat) / 40.0, 1.0)
        shift = np.where(
            region_class == CROP,
            np.asarray([c.peak_shift_months for c in spectra.CROP_TYPES])[crop_type],
            0,
        )
        season = _season(months[None, :], peak_month + shift[:, None])  # [K, T]
        season = np.where((region_class == CROP)[:, None], season**2, season)  # crops: short peak
        is_vegetation = self.green_amplitude[region_class] > 0
        region_green = np.clip(
            self.green_base[region_class, None]
            + self.green_amplitude[region_class, None] * strength * season
            + np.where(is_vegetation, green_offset, 0.0)[:, None],
            0.0,
            1.0,
        )
        greenness = np.clip(
            region_green[regions] + 0.05 * fields.smooth_noise(rng, size, 3)[..., None], 0, 1
        )

        texture = brightness[regions] * (1.0 + 0.04 * fields.smooth_noise(rng, size, 2.0))
        green, dormant = self.green[class_map], self.dormant[class_map]  # [H, W, 12]
        surface = dormant[:, :, None, :] + greenness[..., None] * (green - dormant)[:, :, None, :]
        surface *= texture[:, :, None, None]  # [H, W, T, 12] reflectance x 10^4

        cloudy = rng.uniform(*config.cloudy_step_probability)
        s2_cloud = self._cloud_opacity(rng, size, steps, cloudy)[..., None]
        s2 = (1 - s2_cloud) * surface + s2_cloud * self.cloud
        s2 += rng.normal(0.0, 1.0, s2.shape) * (10.0 + 0.005 * s2)  # sensor noise ~0.5%
        s2 = np.clip(np.round(s2), 0, 65535).astype(np.uint16)

        landsat = self._landsat(rng, surface, class_map, elevation, months, peak_month, lat, cloudy)
        sentinel1 = self._sentinel1(rng, class_map, greenness)

        maps = self._maps(
            rng,
            labels,
            class_map,
            regions,
            region_class,
            region_height,
            crop_type,
            irrigated,
            adjacency,
            elevation,
            biome,
            in_us,
        )
        modality_data = {"sentinel2_l2a": s2, "sentinel1": sentinel1, "landsat": landsat, **maps}
        record = self._drop_missing(rng, modality_data, timestamps, lat, lon)
        majority = int(
            modalities.WORLDCOVER_CLASSES[
                int(np.argmax(np.bincount(class_map.ravel(), minlength=11)))
            ]
        )
        return SyntheticSample(
            record=record,
            labels=labels,
            majority_class=majority,
            biome=biome,
            s2_cloud_fraction=(s2_cloud[..., 0] > 0.01).mean(axis=(0, 1)),
        )

    def _landsat(
        self,
        rng: np.random.Generator,
        surface: np.ndarray,
        class_map: np.ndarray,
        elevation: np.ndarray,
        months: np.ndarray,
        peak_month: int,
        lat: float,
        cloudy: float,
    ) -> np.ndarray:
        """`[H, W, T, 11]` uint16 in storage order B8, B1..B7, B9, B10, B11."""
        size, steps = surface.shape[0], surface.shape[2]
        opacity = self._cloud_opacity(rng, size, steps, cloudy)[..., None]
        optical = spectra.s2_to_landsat_reflectance(surface)
        optical = (1 - opacity) * optical + opacity * spectra.s2_to_landsat_reflectance(self.cloud)
        optical += rng.normal(0.0, 1.0, optical.shape) * (10.0 + 0.005 * optical)
        optical_dn = spectra.landsat_dn(optical)
        # Surface temperature: colder poleward, uphill, in winter and under cloud tops.
        seasonal_k = (2.0 + 0.25 * abs(lat)) * (2.0 * _season(months, peak_month) - 1.0)
        temperature = (
            300.0
            - 0.35 * abs(lat)
            - 0.0065 * elevation[..., None]
            + seasonal_k
            + self.temperature_offset[class_map][..., None]
        )
        temperature = temperature[..., None] - 25.0 * opacity  # [H, W, T, 1]
        z = (temperature - 285.0) / 12.0  # ~ -2..2 over the globe
        mean9, std9 = self.landsat_stats["B9"]
        cirrus = (
            mean9 - 1.4 * std9 + opacity * 3.0 * std9 + rng.normal(0, 0.02 * std9, opacity.shape)
        )
        thermal = [
            mean + std * z for mean, std in (self.landsat_stats["B10"], self.landsat_stats["B11"])
        ]
        bands = np.concatenate([optical_dn, cirrus, *thermal], axis=-1)
        return np.clip(np.round(bands), 0, 65535).astype(np.uint16)

    def _sentinel1(
        self, rng: np.random.Generator, class_map: np.ndarray, greenness: np.ndarray
    ) -> np.ndarray:
        """`[H, W, T, 2]` float32 (vv, vh) in dB with 4.4-look speckle."""
        backscatter = (
            self.s1_db[class_map][:, :, None, :]
            + greenness[..., None] * self.s1_gain[class_map][:, :, None, :]
        )
        water = (class_map == WATER)[:, :, None, None]
        wind = rng.uniform(0.0, 4.0, (1, 1, backscatter.shape[2], 1))  # wind roughens water
        backscatter = backscatter + water * wind
        looks = 4.4  # equivalent number of looks of S1 GRD
        speckle = 10.0 * np.log10(rng.gamma(looks, 1.0 / looks, backscatter.shape))
        return (backscatter + speckle).astype(np.float32)

    def _maps(
        self,
        rng: np.random.Generator,
        labels: np.ndarray,
        class_map: np.ndarray,
        regions: np.ndarray,
        region_class: np.ndarray,
        region_height: np.ndarray,
        crop_type: np.ndarray,
        irrigated: np.ndarray,
        adjacency: np.ndarray,
        elevation: np.ndarray,
        biome: str,
        in_us: bool,
    ) -> dict[str, np.ndarray]:
        """The static maps, `[H, W, 1, C]` each, derived from the land cover."""
        size = labels.shape[0]
        height = region_height[regions] * (1.0 + 0.15 * fields.smooth_noise(rng, size, 2.0))

        cdl_region = self.cdl_codes[region_class].copy()
        crop_cdl = np.asarray([c.cdl_code for c in spectra.CROP_TYPES])
        cdl_region = np.where(region_class == CROP, crop_cdl[crop_type], cdl_region)
        if biome == "boreal":
            cdl_region = np.where(region_class == TREE, 142, cdl_region)  # evergreen forest

        cereal_region = np.zeros((len(region_class), 8), dtype=np.uint8)
        for region in np.flatnonzero(region_class == CROP):
            crop = spectra.CROP_TYPES[crop_type[region]]
            cereal_region[region, 0] = 100  # temporary crops
            if crop.worldcereal is not None:
                cereal_region[region, crop.worldcereal] = 100
            if crop.irrigation_band is not None and irrigated[region]:
                cereal_region[region, crop.irrigation_band] = 100
            if crop.name == "maize" and biome == "tropical":  # a second maize season
                cereal_region[region, 4] = 100
                cereal_region[region, 3] = 100 if irrigated[region] else 0

        maps = {
            "worldcover": labels.astype(np.uint8),
            "srtm": np.round(elevation).astype(np.int16),
            "openstreetmap_raster": self._openstreetmap(
                rng, class_map, regions, region_class, adjacency
            ),
            "wri_canopy_height_map": np.clip(np.round(height), 0, 255).astype(np.uint8),
            "worldcereal": cereal_region[regions],
        }
        if in_us:
            maps["cdl"] = cdl_region[regions].astype(np.uint8)
        return {name: array.reshape(size, size, 1, -1) for name, array in maps.items()}

    @staticmethod
    def _openstreetmap(
        rng: np.random.Generator,
        class_map: np.ndarray,
        regions: np.ndarray,
        region_class: np.ndarray,
        adjacency: np.ndarray,
    ) -> np.ndarray:
        """`[H, W, 30]` uint8 0/1 rasterized OSM categories drawn where they belong."""
        size = class_map.shape[0]
        category = {name: i for i, name in enumerate(modalities.OPENSTREETMAP_RASTER.storage_bands)}
        osm = np.zeros((size, size, len(category)), dtype=np.uint8)
        built, water = class_map == BUILT, class_map == WATER
        crop, grass = class_map == CROP, class_map == GRASS

        blocks = rng.random((size // 2 + 1, size // 2 + 1)) < 0.55  # 20 m building footprints
        osm[..., category["building"]] = (
            built & np.kron(blocks, np.ones((2, 2), bool))[:size, :size]
        )
        roads = np.zeros((size, size), dtype=bool)
        for _ in range(
            int(rng.integers(1, 4)) if (built | crop).any() else int(rng.integers(0, 2))
        ):
            roads |= fields.line_mask(rng, size)
        osm[..., category["highway"]] = roads & ~water
        osm[..., category["parking"]] = built & (rng.random((size, size)) < 0.03)
        osm[..., category["storage_tank"]] = built & (rng.random((size, size)) < 0.004)
        osm[..., category["works"]] = built & (rng.random((size, size)) < 0.004)
        parks = (region_class == GRASS) & adjacency[:, region_class == BUILT].any(axis=1)
        parks &= rng.random(len(region_class)) < 0.5
        osm[..., category["leisure"]] = parks[regions]
        if water.any():
            osm[..., category["river"]] = fields.line_mask(rng, size, 2.0) & (
                water | (class_map == WETLAND)
            )
        if rng.random() < 0.3:
            line = fields.line_mask(rng, size)
            rows, cols = np.indices((size, size))
            osm[..., category["power_tower"]] = line & ((rows + cols) % 6 == 0)
        osm[..., category["generator_wind"]] = (crop | grass) & (rng.random((size, size)) < 0.001)
        return osm

    def _drop_missing(
        self,
        rng: np.random.Generator,
        data: dict[str, np.ndarray],
        timestamps: np.ndarray,
        lat: float,
        lon: float,
    ) -> SampleRecord:
        """Removes absent modalities and steps; returns the record in the stored layout."""
        config = self.config
        steps = timestamps.shape[0]
        absent = {
            name
            for name in SUPPORTED_MODALITIES
            if rng.random() < config.missing_modality_probability.get(name, 0.0)
        }
        absent.discard("worldcover")  # the label map is always there
        series = ("sentinel1", "sentinel2_l2a", "landsat")
        if all(name in absent for name in series):
            absent.discard("sentinel2_l2a")
        if not data["openstreetmap_raster"].any():
            absent.add("openstreetmap_raster")  # the reference drops all-zero OSM rasters
        anchor = next(name for name in series if name not in absent)
        kept: dict[str, np.ndarray] = {}
        present: dict[str, np.ndarray] = {}
        for name in modalities.canonical_order(data):
            if name in absent:
                continue
            if name in series:
                mask = rng.random(steps) >= config.missing_step_probability.get(name, 0.0)
                if name == anchor:
                    mask[:] = True
                if not mask.any():
                    mask[rng.integers(steps)] = True
                present[name] = mask
                kept[name] = np.ascontiguousarray(data[name][:, :, mask])
            else:
                kept[name] = data[name]
        return SampleRecord(
            modalities=kept,
            timestamps=timestamps,
            latlon=np.asarray([lat, lon], dtype=np.float32),
            present_timesteps=present,
        )


def write_synthetic_dataset(
    out: str | os.PathLike[str],
    n: int,
    seed: int,
    config: SyntheticEarthConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Writes `n` samples under `out` in the reference layout; returns the sample directory.

    Args:
        out: the tile path; the samples go to
            `out/h5py_data_w_missing_timesteps[_<compression>]_<size>_x_1/<modalities>/<n>/`.
        n: number of samples.
        seed: generator seed (overrides `config.seed`).
        config: everything else (size, timesteps, compression, ...).
        progress: called with (samples written, n) after each sample.
    """
    if n < 1:
        raise ValueError(f"n is {n}; write at least one sample")
    config = dataclasses.replace(config or SyntheticEarthConfig(), seed=seed)
    earth = config.build()
    writer = h5_format.H5DatasetWriter(
        out, SUPPORTED_MODALITIES, n, config.compression, tile_size=config.size, num_subtiles=1
    )
    for index in range(n):
        sample = earth.sample(index)
        writer.write(index, sample.record, extra={MAJORITY_CLASS_COLUMN: sample.majority_class})
        if progress is not None:
            progress(index + 1, n)
    return writer.finish()


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where synthetic datasets are cached: `<cache_dir>/terra-lab/synthetic`, with
    `cache_dir` defaulting to `${XDG_CACHE_HOME:-~/.cache}`."""
    if cache_dir is None:
        cache_dir = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_dir) / "terra-lab" / "synthetic"


def ensure_default_dataset(
    cache_dir: str | os.PathLike[str] | None = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: int = DEFAULT_SEED,
) -> Path:
    """The embedded default dataset's sample directory, generated on first use.

    It lives in `cache_root(cache_dir)/<DATASET_VERSION>-<seed>-<num_samples>/`. It is
    written into a temporary sibling directory and renamed into place, so a reader never
    sees a partial dataset; when two processes race, the first rename wins and the other's
    copy is discarded.
    """
    root = cache_root(cache_dir)
    final = root / f"{DATASET_VERSION}-{seed}-{num_samples}"
    config = SyntheticEarthConfig(seed=seed)
    relative = h5_format.dataset_dir(
        "", SUPPORTED_MODALITIES, num_samples, config.compression, config.size, 1
    )
    if (final / relative / h5_format.METADATA_FILENAME).is_file():
        return final / relative
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        logger.info(
            "generating the default synthetic dataset (%d samples) into %s", num_samples, final
        )
        started = time.monotonic()
        write_synthetic_dataset(scratch, num_samples, seed, config)
        try:
            os.rename(scratch, final)
        except OSError:
            if not (final / relative / h5_format.METADATA_FILENAME).is_file():
                raise
            logger.info("another process generated %s first; using its copy", final)
        else:
            logger.info("generated %s in %.1f s", final, time.monotonic() - started)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return final / relative
