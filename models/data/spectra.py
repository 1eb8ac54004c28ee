"""Per-land-cover-class signatures for the synthetic Earth.

One `ClassProfile` per ESA WorldCover class: Sentinel-2 surface reflectance of the green
and the dormant state (reflectance x 10^4, the L2A digital-number scale), phenology, C-band
backscatter, a surface-temperature offset, canopy height and the matching USDA CDL code.
Spectra are written in wavelength order (B01 443 nm ... B12 2190 nm) and read from
typical library spectra: green vegetation is dark in red (~3%) and bright in NIR (30-40%);
water is dark beyond 700 nm; snow is bright in the visible and dark in SWIR.
Every green/dormant value except snow's lies inside mean +- 2 std of the real OlmoEarth S2
statistics (norm_stats/computed.json), i.e. normalizes into [0, 1]; snow, like cloud tops,
exceeds 1 in the visible, as it does in real data (normalization does not clip).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from models.modalities import modalities

S2_WAVELENGTH_ORDER = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B11",
    "B12",
)

CLOUD_S2 = (7000, 7200, 7300, 7400, 7400, 7400, 7400, 7400, 7400, 3500, 5200, 3800)
"""Thick cloud top: bright and flat through the NIR, darker in the SWIR and at 945 nm."""


@dataclasses.dataclass(frozen=True)
class ClassProfile:
    """How one WorldCover class looks.

    Attributes:
        code: WorldCover class code.
        name: class name.
        s2_green / s2_dormant: reflectance x 10^4 at peak greenness / out of season, in
            `S2_WAVELENGTH_ORDER`; the pixel is `dormant + g * (green - dormant)` with the
            greenness g in [0, 1].
        green_base, green_amplitude: g = base + amplitude * season(month) (clipped to 0..1).
        s1_db: (vv, vh) backscatter in dB when dormant.
        s1_green_gain_db: (vv, vh) added at full greenness (volume scattering of leaves).
        temperature_offset_k: surface temperature relative to the local mean, Kelvin.
        canopy_height_m: (low, high) range of canopy height.
        cdl_code: USDA Cropland Data Layer code (cropland gets its crop type's code).
    """

    code: int
    name: str
    s2_green: tuple[int, ...]
    s2_dormant: tuple[int, ...]
    green_base: float
    green_amplitude: float
    s1_db: tuple[float, float]
    s1_green_gain_db: tuple[float, float]
    temperature_offset_k: float
    canopy_height_m: tuple[float, float]
    cdl_code: int

    @property
    def is_vegetation(self) -> bool:
        return self.green_amplitude > 0


_BUILT = (1200, 1300, 1450, 1600, 1700, 1850, 1950, 2050, 2100, 800, 2300, 2000)
_BARE = (1100, 1400, 1900, 2500, 2800, 3000, 3150, 3250, 3350, 1200, 4000, 3500)
_SNOW = (8500, 8700, 8600, 8400, 8200, 8000, 7800, 7500, 7400, 3000, 1100, 800)
_WATER = (650, 600, 550, 350, 280, 180, 150, 120, 110, 50, 60, 40)

PROFILES: tuple[ClassProfile, ...] = (
    ClassProfile(
        10,
        "tree cover",
        s2_green=(250, 300, 550, 280, 900, 2300, 2900, 3100, 3200, 1000, 1500, 700),
        s2_dormant=(450, 550, 750, 850, 1200, 1700, 1900, 2100, 2200, 700, 2400, 1600),
        green_base=0.55,
        green_amplitude=0.45,
        s1_db=(-8.0, -14.0),
        s1_green_gain_db=(0.5, 1.0),
        temperature_offset_k=-2.0,
        canopy_height_m=(10.0, 30.0),
        cdl_code=141,
    ),
    ClassProfile(
        20,
        "shrubland",
        s2_green=(350, 400, 700, 500, 1100, 2000, 2400, 2600, 2700, 900, 2000, 1100),
        s2_dormant=(600, 750, 1000, 1250, 1500, 1800, 1950, 2100, 2200, 800, 3000, 2300),
        green_base=0.3,
        green_amplitude=0.5,
        s1_db=(-10.0, -17.0),
        s1_green_gain_db=(1.0, 1.5),
        temperature_offset_k=1.0,
        canopy_height_m=(1.0, 3.0),
        cdl_code=152,
    ),
    ClassProfile(
        30,
        "grassland",
        s2_green=(300, 350, 750, 400, 1100, 2600, 3200, 3400, 3500, 1100, 2100, 1000),
        s2_dormant=(650, 800, 1100, 1350, 1600, 1900, 2050, 2150, 2250, 800, 3100, 2500),
        green_base=0.15,
        green_amplitude=0.8,
        s1_db=(-12.0, -19.0),
        s1_green_gain_db=(1.5, 2.5),
        temperature_offset_k=0.0,
        canopy_height_m=(0.0, 0.0),
        cdl_code=176,
    ),
    ClassProfile(
        40,
        "cropland",
        s2_green=(280, 320, 700, 300, 1000, 2900, 3700, 4000, 4100, 1300, 2000, 900),
        s2_dormant=(800, 1000, 1350, 1700, 1950, 2150, 2300, 2400, 2500, 900, 3200, 2700),
        green_base=0.0,
        green_amplitude=1.0,
        s1_db=(-13.0, -21.0),
        s1_green_gain_db=(3.0, 5.0),
        temperature_offset_k=0.0,
        canopy_height_m=(0.0, 1.0),
        cdl_code=1,
    ),
    ClassProfile(
        50,
        "built-up",
        s2_green=_BUILT,
        s2_dormant=_BUILT,
        green_base=0.0,
        green_amplitude=0.0,
        s1_db=(-4.0, -11.0),
        s1_green_gain_db=(0.0, 0.0),
        temperature_offset_k=4.0,
        canopy_height_m=(0.0, 0.0),
        cdl_code=122,
    ),
    ClassProfile(
        60,
        "bare / sparse vegetation",
        s2_green=_BARE,
        s2_dormant=_BARE,
        green_base=0.0,
        green_amplitude=0.0,
        s1_db=(-15.0, -24.0),
        s1_green_gain_db=(0.0, 0.0),
        temperature_offset_k=5.0,
        canopy_height_m=(0.0, 0.0),
        cdl_code=131,
    ),
    ClassProfile(
        70,
        "snow and ice",
        s2_green=_SNOW,
        s2_dormant=_SNOW,
        green_base=0.0,
        green_amplitude=0.0,
        s1_db=(-13.0, -21.0),
        s1_green_gain_db=(0.0, 0.0),
        temperature_offset_k=-12.0,
        canopy_height_m=(0.0, 0.0),
        cdl_code=112,
    ),
    ClassProfile(
        80,
        "permanent water bodies",
        s2_green=_WATER,
        s2_dormant=_WATER,
        green_base=0.0,
        green_amplitude=0.0,
        s1_db=(-21.0, -28.0),
        s1_green_gain_db=(0.0, 0.0),
        temperature_offset_k=-3.0,
        canopy_height_m=(0.0, 0.0),
        cdl_code=111,
    ),
    ClassProfile(
        90,
        "herbaceous wetland",
        s2_green=(300, 350, 650, 400, 900, 1900, 2300, 2500, 2550, 800, 1300, 600),
        s2_dormant=(500, 550, 700, 750, 850, 1000, 1100, 1150, 1200, 400, 1400, 900),
        green_base=0.2,
        green_amplitude=0.7,
        s1_db=(-10.0, -17.0),
        s1_green_gain_db=(1.5, 2.0),
        temperature_offset_k=-2.0,
        canopy_height_m=(0.0, 1.0),
        cdl_code=195,
    ),
    ClassProfile(
        95,
        "mangroves",
        s2_green=(250, 300, 500, 250, 800, 1900, 2400, 2600, 2650, 800, 1100, 500),
        s2_dormant=(300, 350, 550, 350, 850, 1600, 1900, 2000, 2050, 650, 1300, 650),
        green_base=0.75,
        green_amplitude=0.25,
        s1_db=(-7.5, -13.5),
        s1_green_gain_db=(0.5, 0.5),
        temperature_offset_k=-2.0,
        canopy_height_m=(6.0, 18.0),
        cdl_code=190,
    ),
    ClassProfile(
        100,
        "moss and lichen",
        s2_green=(400, 450, 700, 600, 1100, 1900, 2200, 2400, 2450, 900, 2200, 1400),
        s2_dormant=(600, 700, 900, 1000, 1250, 1500, 1600, 1700, 1750, 700, 2500, 1900),
        green_base=0.1,
        green_amplitude=0.6,
        s1_db=(-13.0, -20.0),
        s1_green_gain_db=(1.0, 1.5),
        temperature_offset_k=-3.0,
        canopy_height_m=(0.0, 0.0),
        cdl_code=176,
    ),
)

VEGETATION_CODES = tuple(profile.code for profile in PROFILES if profile.is_vegetation)


@dataclasses.dataclass(frozen=True)
class CropType:
    """A crop grown on cropland regions: its season and its labels in CDL and WorldCereal.

    Attributes:
        peak_shift_months: peak greenness relative to the local mid-summer month.
        cdl_code: USDA CDL code.
        worldcereal: index into the WorldCereal products of the crop's classification band
            (irrigated fields also set the matching irrigation band).
    """

    name: str
    peak_shift_months: int
    cdl_code: int
    worldcereal: int | None
    irrigation_band: int | None


CROP_TYPES = (
    CropType("maize", 1, 1, worldcereal=2, irrigation_band=1),
    CropType("soybeans", 1, 5, worldcereal=None, irrigation_band=None),
    CropType("winter wheat", -2, 24, worldcereal=7, irrigation_band=6),
    CropType("spring barley", -1, 21, worldcereal=5, irrigation_band=None),
)
"""WorldCereal bands (registry order): 0 temporary crops, 1 maize-main irrigation, 2 maize
main, 3 maize-second irrigation, 4 maize second, 5 spring cereals, 6 winter-cereal
irrigation, 7 winter cereals."""


def _storage_order(wavelength_ordered: np.ndarray) -> np.ndarray:
    position = {band: i for i, band in enumerate(S2_WAVELENGTH_ORDER)}
    order = [position[band] for band in modalities.SENTINEL2_L2A.storage_bands]
    return wavelength_ordered[..., order]


def s2_table(attribute: str) -> np.ndarray:
    """`[11, 12]` float: `s2_green` or `s2_dormant` of every class, S2 storage band order."""
    return _storage_order(np.asarray([getattr(p, attribute) for p in PROFILES], dtype=np.float64))


def cloud_s2() -> np.ndarray:
    """`[12]` cloud-top reflectance x 10^4 in S2 storage band order."""
    return _storage_order(np.asarray(CLOUD_S2, dtype=np.float64))


def s2_to_landsat_reflectance(s2_storage: np.ndarray) -> np.ndarray:
    """Landsat 8/9 OLI reflectance `[..., 8]` (B8, B1..B7) from S2 reflectance `[..., 12]`.

    Matching centre wavelengths: B1 coastal <- B01, B2 blue <- B02, B3 green <- B03, B4 red
    <- B04, B5 NIR (865 nm) <- B8A, B6 SWIR1 <- B11, B7 SWIR2 <- B12; the panchromatic B8
    (500-680 nm) is the mean of blue, green and red.
    """
    index = {band: i for i, band in enumerate(modalities.SENTINEL2_L2A.storage_bands)}
    pick = [index[band] for band in ("B01", "B02", "B03", "B04", "B8A", "B11", "B12")]
    optical = s2_storage[..., pick]
    pan = s2_storage[..., [index["B02"], index["B03"], index["B04"]]].mean(axis=-1, keepdims=True)
    return np.concatenate([pan, optical], axis=-1)


LANDSAT_REFLECTANCE_SCALE = 2.75e-5
LANDSAT_REFLECTANCE_OFFSET = -0.2
"""Landsat Collection 2 Level-2 scaling: reflectance = DN * 2.75e-5 - 0.2. With it, the
OlmoEarth Landsat means (~10,000-14,000 DN) are reflectances of 0.08-0.2, as for S2."""


def landsat_dn(reflectance_1e4: np.ndarray) -> np.ndarray:
    """Landsat Collection 2 digital numbers from reflectance x 10^4."""
    return (reflectance_1e4 / 1e4 - LANDSAT_REFLECTANCE_OFFSET) / LANDSAT_REFLECTANCE_SCALE
