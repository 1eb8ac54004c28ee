"""The experiment's default dataset (the data loader section is models.data.masked_loader).

The embedded default dataset (models.data.synthetic) is generated on first use into the
user's cache. Configs name it by its path; `default_dataset_dir()` gives that path
without generating anything (dry_run must not write 100 MB), and
`ensure_dataset(config)` generates it right before training when the config uses it.
"""

from __future__ import annotations

from pathlib import Path

from models.data import h5_format, synthetic


def default_dataset_dir(
    cache_dir: str | None = None,
    num_samples: int = synthetic.DEFAULT_NUM_SAMPLES,
    seed: int = synthetic.DEFAULT_SEED,
) -> Path:
    """Where `synthetic.ensure_default_dataset` puts (or finds) the default dataset.

    Mirrors ensure_default_dataset's naming without generating; data_test.py checks that
    the two agree, so a change to the generator's layout fails a test instead of a run.
    """
    config = synthetic.SyntheticEarthConfig(seed=seed)
    root = synthetic.cache_root(cache_dir) / f"{synthetic.DATASET_VERSION}-{seed}-{num_samples}"
    relative = h5_format.dataset_dir(
        "", synthetic.SUPPORTED_MODALITIES, num_samples, config.compression, config.size, 1
    )
    return root / relative


def uses_default_dataset(h5_dir: str) -> bool:
    return Path(h5_dir) == default_dataset_dir()


def ensure_dataset(h5_dir: str) -> bool:
    """Generate the default dataset if `h5_dir` is it and it is not there yet.

    Returns:
        True when it was generated now (the caller may say so).
    """
    if not uses_default_dataset(h5_dir):
        return False
    if (Path(h5_dir) / h5_format.METADATA_FILENAME).is_file():
        return False
    produced = synthetic.ensure_default_dataset()
    if Path(produced) != Path(h5_dir):
        raise RuntimeError(
            f"the default dataset was generated at {produced}, not at {h5_dir}: "
            "experiments/framework/data.py's default_dataset_dir() is out of date"
        )
    return True
