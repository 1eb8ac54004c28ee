"""Data pipeline CPU time per sample, ours against the reference, on the same HDF5 files.

    bazel run //tools/bench:data -- [--h5-dir DIR] [--batches 16] [--batch-size 8]

One sample's cost is what a loader worker spends on it: read the H5 file, fill missing
timesteps and modalities, pick the budgeted window (2250 tokens) and crop, normalize, then, per
batch, stack and mask the batch twice with `modality_cross_random` (v1: ratios 0.5 / 0.5, the
six maps decode-only). Both pipelines get the same requests: --batches batches of
--batch-size consecutive samples, each batch with a patch size drawn from 1..8 and h = w drawn
from the values the loader allows for it (models/data/loader.py), one thread (a worker's).
- ours: `EarthDataset[GetItemArgs]` then `collate_two_views` (models/data);
- reference: `OlmoEarthDataset[GetItemArgs]` then its `collate_double_masked_batched` with
  `ModalityCrossRandomMaskingStrategy` (no transform: the same work as ours).
Printed: CPU seconds per sample (process time, so other jobs on the machine do not count),
split into the dataset part and the collate + masking part, the batches interleaved (ours,
reference, ours, ...) after one warm-up batch each, and the ratio ours / reference.

The default files are synthetic samples (models/data/synthetic.py, 12 months) in the format of the
official OlmoEarth pretraining data: 128 x 128 px, zstd level 3 (64 samples, generated once into
the synthetic cache, about a minute). Reading zstd needs the hdf5plugin package; without it the
default falls back to the embedded gzip dataset (128 samples of 64 x 64 px), where gzip
decompression alone is ~45% of the reference's time per sample. The reference's data package
needs h5py, hdf5plugin, pandas and universal-pathlib; its module-level imports of cartopy,
matplotlib, rasterio, pyproj (plots, GeoTIFF conversion) and torchvision (flip/rotate
augmentations, unused here) are satisfied by inert stand-ins when those packages are absent.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from absl import flags

from launcher.cli import command
from models.data import h5_format, synthetic
from models.data.collate import collate_two_views
from models.data.crop import DEFAULT_TOKEN_BUDGET
from models.data.dataset import DatasetConfig, EarthDataset, GetItemArgs
from models.data.loader import allowed_patches_per_side
from models.masking.masking import masking_config_from_name
from models.modalities import modalities
from tools.bench import measure
from tools.bench.reference import load_reference

REFERENCE_OPTIONAL_MODULES = (
    "cartopy",
    "cartopy.crs",
    "cartopy.feature",
    "matplotlib",
    "matplotlib.pyplot",
    "rasterio",
    "pyproj",
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.v2",
    "torchvision.transforms.v2.functional",
)
"""Imported at module level by the reference's data package for plots, GeoTIFF conversion and
augmentations; the H5 read, crop, normalize and masking path never calls them."""


class _StandIn(types.ModuleType):
    """An importable module whose every public attribute is an inert class."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


def _install_stand_ins() -> list[str]:
    """Stand-ins for the absent optional modules; returns their names."""
    absent = []
    for name in REFERENCE_OPTIONAL_MODULES:
        top = name.split(".")[0]
        if name in sys.modules or (top not in absent and importlib.util.find_spec(top)):
            continue
        absent.append(name)
        sys.modules[name] = _StandIn(name)
    for name in absent:
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])
    return absent


def load_reference_data() -> tuple[types.SimpleNamespace | None, str]:
    """The reference's dataset, collate and masking modules, or None and the reason."""
    reference_batch, why = load_reference()
    if reference_batch is None:
        return None, why
    missing = [
        name
        for name in ("h5py", "hdf5plugin", "pandas", "upath")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        return None, f"the reference's data package needs {missing} in @reference"
    stand_ins = _install_stand_ins()
    try:
        namespace = types.SimpleNamespace(
            dataset=importlib.import_module("olmoearth_pretrain.data.dataset"),
            collate=importlib.import_module("olmoearth_pretrain.data.collate"),
            masking=importlib.import_module("olmoearth_pretrain.train.masking"),
            stand_ins=stand_ins,
        )
    except ImportError as error:
        return None, f"{type(error).__name__}: {error}"
    return namespace, ""


OFFICIAL_FORMAT_SAMPLES = 64
OFFICIAL_FORMAT_SIZE = 128
"""The official pretraining data: 128 x 128 px sub-tiles, zstd level 3 (reference notes 6.1)."""


def official_format_dataset(num_samples: int = OFFICIAL_FORMAT_SAMPLES) -> Path:
    """Synthetic samples in the official file format, generated once into the cache.

    Written to a temporary sibling and renamed into place, so a reader never sees half of it.
    """
    config = synthetic.SyntheticEarthConfig(
        size=OFFICIAL_FORMAT_SIZE,
        compression=h5_format.CompressionConfig(algorithm="zstd", level=3),
    )
    final = synthetic.cache_root() / f"bench-zstd3-{OFFICIAL_FORMAT_SIZE}px-{num_samples}"
    relative = h5_format.dataset_dir(
        "", synthetic.SUPPORTED_MODALITIES, num_samples, config.compression, config.size
    )
    if (final / relative / h5_format.METADATA_FILENAME).is_file():
        return final / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        print(f"generating {num_samples} official-format samples into {final} ...", flush=True)
        synthetic.write_synthetic_dataset(scratch, num_samples, synthetic.DEFAULT_SEED, config)
        try:
            os.rename(scratch, final)
        except OSError:
            if not (final / relative / h5_format.METADATA_FILENAME).is_file():
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return final / relative


def default_h5_dir() -> tuple[Path, str]:
    """The official-format set when zstd is readable, else the embedded gzip set."""
    if importlib.util.find_spec("hdf5plugin") is not None:
        return official_format_dataset(), "official format: 128 px, zstd level 3"
    return (
        synthetic.ensure_default_dataset(),
        "embedded gzip set, 64 px (hdf5plugin is not installed, so zstd files are unreadable)",
    )


@dataclasses.dataclass(frozen=True)
class Request:
    """One batch: its patch size, window and samples."""

    patch_size: int
    patches_per_side: int
    indices: tuple[int, ...]


def draw_requests(
    dataset: EarthDataset, num_batches: int, batch_size: int, seed: int, token_budget: int
) -> list[Request]:
    """Batches as the loader draws them: P uniform in 1..8, h uniform among allowed values."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))
    requests = []
    for b in range(num_batches):
        patch_size = int(rng.integers(1, 9))
        allowed = allowed_patches_per_side(dataset, patch_size, tuple(range(1, 13)), token_budget)
        patches_per_side = int(allowed[rng.integers(len(allowed))])
        start = b * batch_size
        indices = tuple(int(order[(start + i) % len(order)]) for i in range(batch_size))
        requests.append(Request(patch_size, patches_per_side, indices))
    return requests


class Pipeline:
    """One implementation; `run(request)` returns (dataset CPU s, collate + masking CPU s)."""

    name = ""

    def run(self, request: Request, seed: int) -> tuple[float, float]:
        raise NotImplementedError


class OurPipeline(Pipeline):
    name = "ours"

    def __init__(self, h5_dir: Path, token_budget: int) -> None:
        self.dataset = DatasetConfig(h5_dir=str(h5_dir)).build()
        self.masking = masking_config_from_name("modality_cross_random").build()
        self.token_budget = token_budget

    def run(self, request: Request, seed: int) -> tuple[float, float]:
        start = time.process_time()
        items = [
            self.dataset[
                GetItemArgs(
                    index,
                    request.patch_size,
                    request.patches_per_side,
                    self.token_budget,
                    seed + index,
                )
            ]
            for index in request.indices
        ]
        loaded = time.process_time()
        collate_two_views(items, self.masking, torch.Generator().manual_seed(seed))
        return loaded - start, time.process_time() - loaded


class ReferencePipeline(Pipeline):
    name = "reference"

    def __init__(self, reference, h5_dir: Path, token_budget: int) -> None:
        from upath import UPath

        names = list(modalities.TRAINING_MODALITIES)
        self.reference = reference
        self.dataset = reference.dataset.OlmoEarthDataset(
            h5py_dir=UPath(h5_dir), training_modalities=names, dtype=np.float32, normalize=True
        )
        self.dataset.prepare()
        self.masking = reference.masking.ModalityCrossRandomMaskingStrategy(
            encode_ratio=0.5,
            decode_ratio=0.5,
            allow_encoding_decoding_same_bandset=True,
            min_encoded_bandsets=2,
            only_decode_modalities=[name for name in names if modalities.get(name).decode_only],
        )
        self.token_budget = token_budget

    def run(self, request: Request, seed: int) -> tuple[float, float]:
        torch.manual_seed(seed)  # the reference draws its masks from the global generators
        np.random.seed(seed)
        start = time.process_time()
        get = self.reference.dataset.GetItemArgs
        items = [
            self.dataset[
                get(
                    idx=index,
                    patch_size=request.patch_size,
                    sampled_hw_p=request.patches_per_side,
                    token_budget=self.token_budget,
                )
            ]
            for index in request.indices
        ]
        loaded = time.process_time()
        self.reference.collate.collate_double_masked_batched(items, None, self.masking, None)
        return loaded - start, time.process_time() - loaded


def measure_pipelines(
    pipelines: list[Pipeline], requests: list[Request], seed: int
) -> dict[str, list[tuple[float, float]]]:
    """Per pipeline, (dataset, collate) CPU seconds of every request after one warm-up."""
    for pipeline in pipelines:
        pipeline.run(requests[0], seed)
    seconds: dict[str, list[tuple[float, float]]] = {p.name: [] for p in pipelines}
    for number, request in enumerate(requests):
        for pipeline in pipelines:
            seconds[pipeline.name].append(pipeline.run(request, seed + number))
    return seconds


def summarize(seconds: list[tuple[float, float]], requests: list[Request]) -> dict[str, float]:
    """CPU ms per sample: mean over all samples (total / samples), per part and in total,
    and the median over batches of the per-sample total."""
    samples = sum(len(request.indices) for request in requests)
    per_batch = [
        (load + collate) / len(request.indices)
        for (load, collate), request in zip(seconds, requests, strict=True)
    ]
    return {
        "dataset": 1e3 * sum(load for load, _ in seconds) / samples,
        "collate": 1e3 * sum(collate for _, collate in seconds) / samples,
        "total": 1e3 * sum(load + collate for load, collate in seconds) / samples,
        "median": 1e3 * statistics.median(per_batch),
    }


FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "h5-dir", None, "default: synthetic samples in the official format", flag_values=FLAGS
)
flags.DEFINE_integer("batches", 16, "batches per pipeline", flag_values=FLAGS, lower_bound=1)
flags.DEFINE_integer("batch-size", 8, "samples per batch", flag_values=FLAGS, lower_bound=1)
flags.DEFINE_integer(
    "token-budget", DEFAULT_TOKEN_BUDGET, "tokens per sample", flag_values=FLAGS, lower_bound=1
)
flags.DEFINE_boolean("no-reference", False, "time ours only", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "seed of the requests and masks", flag_values=FLAGS)


def run(args: types.SimpleNamespace) -> None:
    torch.set_num_threads(1)  # a loader worker's setting (models/data/loader.py)
    # The reference first: under Bazel its environment also brings hdf5plugin (zstd files).
    reference, why = (None, "--no-reference") if args.no_reference else load_reference_data()
    if args.h5_dir:
        h5_dir, what = Path(args.h5_dir), "--h5-dir"
    else:
        h5_dir, what = default_h5_dir()
    pipelines: list[Pipeline] = [OurPipeline(h5_dir, args.token_budget)]
    if reference is not None:
        pipelines.append(ReferencePipeline(reference, h5_dir, args.token_budget))
    requests = draw_requests(
        pipelines[0].dataset, args.batches, args.batch_size, args.seed, args.token_budget
    )
    print(
        f"data: {h5_dir} ({what}; {len(pipelines[0].dataset)} samples, "
        f"{pipelines[0].dataset.image_size}px), {args.batches} batches of {args.batch_size}, "
        f"budget {args.token_budget}, 1 thread"
    )
    print(
        "requests (P, h): " + ", ".join(f"({r.patch_size}, {r.patches_per_side})" for r in requests)
    )
    if reference is None:
        print(f"reference: not measured ({why})")
    elif reference.stand_ins:
        print(f"reference: inert stand-ins for {', '.join(reference.stand_ins)}")
    seconds = measure_pipelines(pipelines, requests, args.seed)
    summaries = {name: summarize(values, requests) for name, values in seconds.items()}
    rows = [
        [
            name,
            f"{s['dataset']:.2f}",
            f"{s['collate']:.2f}",
            f"{s['total']:.2f}",
            f"{s['median']:.2f}",
        ]
        for name, s in summaries.items()
    ]
    print()
    print(
        measure.format_table(
            [
                "pipeline",
                "read+crop+normalize ms",
                "collate+mask x2 ms",
                "total ms/sample",
                "median over batches",
            ],
            rows,
        )
    )
    if "reference" in summaries:
        ours, theirs = summaries["ours"], summaries["reference"]
        ratio: Callable[[str], str] = lambda key: f"{ours[key] / theirs[key]:.2f}"  # noqa: E731
        print(
            f"\nours / reference CPU time per sample (< 1: ours cheaper): total {ratio('total')}, "
            f"dataset {ratio('dataset')}, collate + masking {ratio('collate')}"
        )


COMMAND = command.Command("data", FLAGS, run)
main = COMMAND.main


if __name__ == "__main__":
    COMMAND.run_app()
