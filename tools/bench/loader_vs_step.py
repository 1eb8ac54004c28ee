"""Does the data pipeline keep up with training? Loader samples/s beside step samples/s.

    bazel run //tools/bench:loader_vs_step -- [--workers 0,2] [--batches 8] [--batch-size 8]
        [--size nano] [--threads 2]

Both sides use the v1 recipe's data path on the embedded synthetic dataset: budgeted crops
(2250 tokens), patch size drawn from 1..8 and patches per side per batch, normalization and
two `modality_cross_random` views built in the loader's workers. The step side is the full
two-view LatentMIM training step (forward, target, losses, backward, AdamW) of the given
model size on batches fetched beforehand, so neither measurement includes the other. The
loader is fast enough when its samples/s exceed the step's: then workers never starve the
model; below 1x, add workers (each worker costs a core the step would otherwise use).
"""

from __future__ import annotations

import statistics
import time
import types

import torch
from absl import app, flags

from launcher.cli import command
from models.data.dataset import DatasetConfig
from models.data.loader import DataLoaderConfig
from models.data.synthetic import ensure_default_dataset
from models.latent_mim.latent_mim import LatentMIMConfig
from models.masking.masking import masking_config_from_name
from models.modalities import modalities
from models.train import distributed
from models.train.optim import AdamWConfig, CosineWithWarmupConfig
from models.train.train_module import TrainModuleConfig


def loader_samples_per_second(dataset, masking, batch_size: int, workers: int, batches: int):
    """Median samples/s over `batches` batches after one warm-up batch (worker start-up)."""
    loader = DataLoaderConfig(global_batch_size=batch_size, num_workers=workers, seed=0).build(
        dataset, masking
    )
    iterator = iter(loader)
    next(iterator)
    times, fetched = [], []
    for _ in range(batches):
        start = time.perf_counter()
        fetched.append(next(iterator))
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times), fetched


def step_samples_per_second(size: str, fetched, batch_size: int):
    model = LatentMIMConfig.from_size(size, modalities=modalities.TRAINING_MODALITIES).build()
    module = TrainModuleConfig(
        optimizer=AdamWConfig(),
        scheduler=CosineWithWarmupConfig(warmup_steps=10),
        microbatch_size=batch_size,
    ).build(
        model,
        max_steps=len(fetched) + 1,
        env=distributed.DistributedEnv(),
        global_batch_size=batch_size,
    )
    module.train_batch(fetched[0], step=1)  # warm-up
    times = []
    for step, batch in enumerate(fetched[1:], start=2):
        start = time.perf_counter()
        module.train_batch(batch, step=step)
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


FLAGS = flags.FlagValues()
flags.DEFINE_list("workers", ["0", "2"], "comma-separated worker counts", flag_values=FLAGS)
flags.DEFINE_integer("batches", 8, "timed batches", flag_values=FLAGS, lower_bound=1)
flags.DEFINE_integer("batch-size", 8, "samples per batch", flag_values=FLAGS, lower_bound=1)
flags.DEFINE_string("size", "nano", "model size of the training step", flag_values=FLAGS)
flags.DEFINE_integer("threads", 2, "torch threads", flag_values=FLAGS, lower_bound=1)


def worker_counts(workers: list[str]) -> list[int]:
    if not workers or not all(w.strip().isdigit() for w in workers):
        raise app.UsageError(
            f"--workers takes comma-separated counts >= 0, e.g. --workers 0,2; got {workers}"
        )
    return [int(w) for w in workers]


def run(args: types.SimpleNamespace) -> int:
    counts = worker_counts(args.workers)
    torch.set_num_threads(args.threads)
    data_dir = ensure_default_dataset()
    dataset = DatasetConfig(h5_dir=str(data_dir)).build()
    masking = masking_config_from_name("modality_cross_random").build()
    print(f"dataset {data_dir} ({len(dataset)} samples), batch {args.batch_size}", flush=True)
    results, fetched = {}, None
    for workers in counts:
        rate, batches = loader_samples_per_second(
            dataset, masking, args.batch_size, workers, args.batches
        )
        results[workers] = rate
        fetched = fetched or batches
        print(f"loader, {workers} workers: {rate:8.1f} samples/s", flush=True)
    step_rate = step_samples_per_second(args.size, fetched, args.batch_size)
    print(f"training step ({args.size}, {args.threads} threads): {step_rate:8.1f} samples/s")
    for workers, rate in results.items():
        verdict = "keeps up" if rate >= step_rate else "STARVES the model"
        print(f"  {workers} workers: loader / step = {rate / step_rate:5.2f}x -> {verdict}")
    return 0


COMMAND = command.Command("loader_vs_step", FLAGS, run)
main = COMMAND.main


if __name__ == "__main__":
    COMMAND.run_app()
