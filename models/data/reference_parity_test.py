"""Our dataset reads our H5 files exactly as the reference's OlmoEarthDataset (0.1.2) does.

Same files (written by our synthetic generator), the whole tile and every step (no
budget, so no random crop): every modality, every value after normalization and the
timestamps must be identical. The token budget must pick the same T for every window.
Runs only where the reference and its data dependencies (h5py, hdf5plugin, pandas,
universal-pathlib) are importable; elsewhere every test is collected and skipped:
    PYTHONPATH=/work/main /work/refvenv/bin/python -m pytest models/data/reference_parity_test.py
The reference's data package imports cartopy, matplotlib, rasterio and pyproj at module
level for plots and GeoTIFF conversion, which the H5 read path never calls; where they
are not installed, empty stand-in modules are used while importing it.
"""

import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest

from models.data import crop, synthetic
from models.data.dataset import DatasetConfig, GetItemArgs
from models.modalities import modalities
from models.testing import reference_env

_PLOT_AND_GEOTIFF_ONLY = (
    "cartopy",
    "cartopy.crs",
    "cartopy.feature",
    "matplotlib",
    "matplotlib.pyplot",
    "rasterio",
    "pyproj",
)


class _StandIn(types.ModuleType):
    """A module whose every public attribute is an inert class (for annotations)."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


@pytest.fixture(scope="module")
def ref_dataset():
    reference_env.import_reference()
    for name in ("h5py", "hdf5plugin", "pandas", "upath", "olmo_core"):
        pytest.importorskip(name)
    with pytest.MonkeyPatch.context() as patch:
        absent = [
            n for n in _PLOT_AND_GEOTIFF_ONLY if importlib.util.find_spec(n.split(".")[0]) is None
        ]
        for name in absent:
            patch.setitem(sys.modules, name, _StandIn(name))
        for name in _PLOT_AND_GEOTIFF_ONLY:
            parent, _, child = name.rpartition(".")
            if parent and isinstance(sys.modules.get(name), _StandIn):
                patch.setattr(sys.modules[parent], child, sys.modules[name], raising=False)
        return importlib.import_module("olmoearth_pretrain.data.dataset")


@pytest.fixture(scope="module")
def h5_dir(tmp_path_factory):
    config = synthetic.SyntheticEarthConfig(size=16)
    return synthetic.write_synthetic_dataset(tmp_path_factory.mktemp("parity"), 6, 11, config)


def test_whole_tile_instances_equal_the_references(ref_dataset, h5_dir):
    from upath import UPath

    names = list(modalities.TRAINING_MODALITIES)
    reference = ref_dataset.OlmoEarthDataset(
        h5py_dir=UPath(h5_dir), training_modalities=names, dtype=np.float32, normalize=True
    )
    reference.prepare()
    ours = DatasetConfig(h5_dir=str(h5_dir)).build()
    assert len(reference) == len(ours) == 6
    for index in range(6):
        args = ref_dataset.GetItemArgs(idx=index, patch_size=4, sampled_hw_p=4, token_budget=None)
        _, expected = reference[args]
        item = ours[GetItemArgs(index, patch_size=4, patches_per_side=4, token_budget=None)]
        for name in names:
            theirs = getattr(expected, name)
            assert theirs.shape == item.data[name].shape, name
            np.testing.assert_array_equal(theirs, item.data[name], err_msg=name)
        np.testing.assert_array_equal(expected.timestamps, item.timestamps)


def test_token_budget_picks_the_references_timestep_count(ref_dataset, h5_dir):
    from upath import UPath

    names = list(modalities.TRAINING_MODALITIES)
    reference = ref_dataset.OlmoEarthDataset(
        h5py_dir=UPath(h5_dir), training_modalities=names, dtype=np.float32, normalize=False
    )
    reference.prepare()
    _, sample = reference[ref_dataset.GetItemArgs(idx=0, patch_size=4, sampled_hw_p=4)]
    specs = modalities.DEFAULT_TOKENIZATION.specs(names)
    for patches_per_side in range(1, 20):
        for budget in (300, 1500, 2250, 5000):
            try:
                theirs = ref_dataset._get_max_t_within_token_budget(
                    sample, patches_per_side, budget
                )
            except ValueError:
                theirs = None
            try:
                mine = crop.max_timesteps_within_budget(specs, patches_per_side, budget, 12)
            except ValueError:
                mine = None
            assert mine == theirs, (patches_per_side, budget)
