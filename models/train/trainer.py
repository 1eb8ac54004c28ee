"""The training loop: steps, duration, the run folder lock, resume, and callbacks around them.

The trainer owns the loop and the run's bookkeeping; everything else is delegated:
the step itself to a train module (`train_batch(batch, step) -> metrics`), batches to a
data loader, and logging / checkpointing / plotting to callbacks (callbacks/), which the
trainer builds from `TrainerConfig.callbacks` and calls in phase order (callbacks/callback.py).

`Trainer.fit` is: open the run folder (rank 0 creates and locks it) -> callbacks' `open_run`
(the run identity vets the folder) -> resume from the newest checkpoint that loads ->
callbacks' `pre_train` -> the steps -> callbacks' `post_train`.

Steps are counted from 1: `trainer.step` is the number of completed optimizer steps, so a
checkpoint `step_<N>` holds the state after N updates and a resumed run continues with
step N + 1 on the batch that would have followed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from models.config import serialization
from models.config.configurable import Configurable
from models.train import checkpoint, dcp_checkpoint, distributed, rng
from models.train.callbacks.callback import Callback, Metrics, in_phase_order
from models.train.callbacks.defaults import default_callbacks
from models.train.run_dir import RunDirConfig, RunDirectory, RunLock

logger = logging.getLogger(__name__)

_END = object()
DURATION_UNITS = ("steps", "epochs")


@dataclasses.dataclass
class Duration:
    """How long to train: `value` optimizer steps or `value` passes over the dataset."""

    value: int
    unit: str = "steps"

    def __post_init__(self) -> None:
        if self.unit not in DURATION_UNITS:
            raise ValueError(f"Duration.unit must be one of {DURATION_UNITS}, got {self.unit!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value < 1:
            raise ValueError(f"Duration.value must be an integer >= 1, got {self.value!r}")

    @classmethod
    def steps(cls, value: int) -> Duration:
        return cls(value, "steps")

    @classmethod
    def epochs(cls, value: int) -> Duration:
        return cls(value, "epochs")

    def to_steps(self, steps_per_epoch: int) -> int:
        return self.value if self.unit == "steps" else self.value * steps_per_epoch


class TrainModule(Protocol):
    """What the trainer needs from a train module.

    A module that also has a `model` (nn.Module) and an `optimizer` is checkpointed
    sharded (`Trainer.checkpoint_parts`): its `state_dict(model_and_optimizer=False)` gives
    the rest of its state, and `load_state_dict` takes that rest alone.
    """

    def train_batch(self, batch: Any, step: int) -> Metrics: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class DataLoader(Protocol):
    """What the trainer needs from a data loader.

    Iterating yields this rank's batches for the rest of the current epoch (from the
    restored position after `load_state_dict`), then the next iteration starts the next
    epoch. `len()` is the number of batches (= optimizer steps) in one epoch.
    """

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclasses.dataclass(kw_only=True)
class TrainerConfig(Configurable["Trainer"]):
    """The loop and its callbacks.

    Attributes:
        run: where the run folder is (also the W&B project and run name).
        max_duration: total training length; epochs count batches of the data loader
            (default: 300 epochs).
        seed: seeds every generator before the model is built (the entry point does it).
        log_interval: write metrics (jsonl, W&B, progress line) every this many steps.
        deterministic: `torch.use_deterministic_algorithms(True)` (bit-exact resume on
            CPU; slower on GPU).
        resume: before training, load the newest checkpoint of the run folder that loads.
        callbacks: every callback of the run, as configs by name (default:
            callbacks/defaults.py's `default_callbacks()`): each value has `build() ->
            Callback` and may have `enabled` (False: not built). The names are the override
            paths (`--trainer.callbacks.evaluator.interval=500`); a layer above training adds
            its own here (models/eval's evaluator) without models/train importing it. To
            change one, start from the defaults: `callbacks={**default_callbacks(),
            "checkpointer": CheckpointerConfig(interval=10)}`.
    """

    run: RunDirConfig
    max_duration: Duration = dataclasses.field(default_factory=lambda: Duration.epochs(300))
    seed: int = rng.DEFAULT_MODEL_SEED
    log_interval: int = 1
    deterministic: bool = False
    resume: bool = True
    callbacks: dict[str, Any] = dataclasses.field(default_factory=default_callbacks)

    def __post_init__(self) -> None:
        self.callbacks = dict(self.callbacks)
        self._validate()

    def _validate(self) -> None:
        for name, callback in self.callbacks.items():
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"TrainerConfig.callbacks names must be non-empty strings, got {name!r}"
                )
            if not callable(getattr(callback, "build", None)):
                raise ValueError(
                    f"TrainerConfig.callbacks[{name!r}] is a {type(callback).__name__}, which has "
                    "no build(): give a callback config (e.g. models.eval.callback."
                    "EvaluatorCallbackConfig)"
                )
        if self.log_interval < 1:
            raise ValueError(f"TrainerConfig.log_interval must be >= 1, got {self.log_interval}")
        if not isinstance(self.max_duration, Duration):
            raise ValueError(
                f"TrainerConfig.max_duration must be a Duration, got {self.max_duration!r}"
            )

    @classmethod
    def upgrade_retired_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
        """A config.yaml written before the callbacks moved into `callbacks` (fields
        checkpointer, progress, wandb, save_config, plot_loss; the checkpointer's resume),
        as today's fields, so the run folders of earlier runs still load."""
        retired = {"checkpointer", "progress", "wandb", "save_config", "plot_loss"}
        if not retired & set(data):
            return data
        data = dict(data)
        callbacks = serialization.to_dict(default_callbacks())
        for name in ("checkpointer", "progress", "wandb"):
            if name in data:
                callbacks[name] = dict(data.pop(name))
        if "resume" in callbacks["checkpointer"]:
            data.setdefault("resume", callbacks["checkpointer"].pop("resume"))
        for flag, name in (("save_config", "config_saver"), ("plot_loss", "loss_plot")):
            if flag in data:
                callbacks[name] = {**callbacks[name], "enabled": data.pop(flag)}
        data["callbacks"] = {**callbacks, **(data.get("callbacks") or {})}
        return data

    def build(
        self,
        train_module: TrainModule,
        data_loader: DataLoader,
        env: distributed.DistributedEnv | None = None,
        callbacks: Sequence[Callback] = (),
        run_config: Any = None,
    ) -> Trainer:
        """The trainer with the enabled callbacks of `self.callbacks`, then `callbacks`.

        Args:
            train_module: runs one optimizer step per batch.
            data_loader: this rank's batches.
            env: rank and world size (default: read from the environment).
            callbacks: extra callbacks (test hooks, a command's own records, ...); they
                run after the configured ones of their phase.
            run_config: the whole experiment config for config.yaml and W&B
                (default: this trainer config).
        """
        configured = [
            callback.build()
            for callback in self.callbacks.values()
            if getattr(callback, "enabled", True)
        ]
        return Trainer(
            config=self,
            train_module=train_module,
            data_loader=data_loader,
            run_dir=self.run.build(),
            env=env or distributed.DistributedEnv.from_environ(),
            callbacks=[*configured, *callbacks],
            run_config=self if run_config is None else run_config,
        )


class Trainer:
    """Runs `train_module.train_batch` over the data loader until `max_steps`.

    It is the `TrainerView` its callbacks read (callbacks/callback.py).
    """

    def __init__(
        self,
        config: TrainerConfig,
        train_module: TrainModule,
        data_loader: DataLoader,
        run_dir: RunDirectory,
        env: distributed.DistributedEnv,
        callbacks: Iterable[Callback],
        run_config: Any,
    ) -> None:
        self.config = config
        self.train_module = train_module
        self.data_loader = data_loader
        self.run_dir = run_dir
        self.env = env
        self.run_config = run_config
        self.steps_per_epoch = len(data_loader)
        if self.steps_per_epoch < 1:
            raise ValueError(
                "the data loader yields no batch per epoch: the dataset has fewer samples "
                "than one global batch"
            )
        self.max_steps = config.max_duration.to_steps(self.steps_per_epoch)
        self.step = 0
        self.resumed_from: Path | None = None
        self.callbacks = in_phase_order(list(callbacks))
        for callback in self.callbacks:
            callback.attach(self)
        self._lock: RunLock | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes into the run folder."""
        return self.env.is_main

    @property
    def log_interval(self) -> int:
        return self.config.log_interval

    @property
    def run_project(self) -> str:
        return self.config.run.project

    @property
    def run_name(self) -> str:
        return self.config.run.name

    def is_log_step(self, step: int) -> bool:
        return step % self.config.log_interval == 0 or step == self.max_steps

    def fit(self) -> None:
        """Open the run folder, resume, then train to `max_steps` (module docstring)."""
        if self.is_main:
            self.run_dir.create()
            self._lock = self.run_dir.lock().acquire()
        try:
            for callback in self.callbacks:
                callback.open_run()
            if self.config.resume:
                self.resume()
            self._run()
        except BaseException as error:
            for callback in self.callbacks:
                try:
                    callback.on_error(error)
                except Exception:  # cleanup must not hide the original error
                    logger.exception("callback %s failed in on_error", type(callback).__name__)
            raise
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    # -- resume --------------------------------------------------------------------------

    def resume(self) -> Path | None:
        """Load the newest checkpoint of the run folder that loads, on every rank.

        Rank 0 deletes leftovers of interrupted writes, picks the checkpoint and tells the
        others, so all ranks load the same one (of a sharded checkpoint, rank 0 checks the
        shard files' sizes and index, and every rank then reads the slices it holds). One
        that does not load (a damaged or planted file, a garbage meta.json) is skipped with a
        warning naming it and why, and the next older one is tried; the run resumes from the
        newest that loads and says that it fell back. When checkpoints exist but none loads,
        every rank stops with one error naming them rather than start over from step 0 on top
        of them. The skipped ones stay (for inspection) until the run writes that step again,
        which replaces them.

        Returns:
            The checkpoint resumed from (also `self.resumed_from`); None: none exists, the
            run starts at step 0.
        """
        directory = self.run_dir.checkpoints_dir
        choice: tuple[str | None, str | None] = (None, None)  # (checkpoint, error)
        parts = None
        if self.is_main:
            for leftover in checkpoint.remove_incomplete(directory):
                logger.warning("removed an incomplete checkpoint: %s", leftover)
            parts, choice = _newest_loadable(directory)
        latest, error = distributed.broadcast_object(choice)
        if error is not None:
            raise RuntimeError(error)  # on every rank: none waits for the others
        if latest is None:
            return None
        if parts is None:  # the other ranks; rank 0 loaded it while choosing
            parts = checkpoint.load_resumable(Path(latest))
        try:
            self.load_checkpoint_parts(parts)
        except Exception as error:  # e.g. a model config that does not match the weights
            error.add_note(f"while resuming from {latest}")
            raise
        self.resumed_from = Path(latest)
        logger.info("resumed from %s (step %d)", latest, self.step)
        return self.resumed_from

    def _batches(self) -> Iterator[Any]:
        """Batches across epochs, fetched with the random generators isolated.

        A pass may be empty once: a run resumed from a checkpoint taken after an epoch's
        last batch first finishes that (exhausted) epoch.
        """
        empty_passes = 0
        while True:
            iterator = iter(self.data_loader)
            fetched = False
            while True:
                with rng.isolated():
                    batch = next(iterator, _END)
                if batch is _END:
                    break
                fetched, empty_passes = True, 0
                yield batch
            if not fetched:
                empty_passes += 1
                if empty_passes > 1:
                    raise RuntimeError(
                        f"the data loader yielded no batch at step {self.step}: it must start "
                        "a new epoch each time it is iterated"
                    )

    def _run(self) -> None:
        """pre_train, the steps, post_train."""
        for callback in self.callbacks:
            callback.pre_train()
        last_time = time.perf_counter()
        if self.step < self.max_steps:
            for batch in self._batches():
                step = self.step + 1
                for callback in self.callbacks:
                    callback.pre_step(step)
                metrics = dict(self.train_module.train_batch(batch, step))
                self.step = step
                now = time.perf_counter()
                metrics.update(self._throughput(metrics, now - last_time))
                last_time = now
                for callback in self.callbacks:
                    callback.post_step(step, metrics)
                if self.step >= self.max_steps:
                    break
        for callback in self.callbacks:
            callback.post_train()

    def _throughput(self, metrics: Metrics, seconds: float) -> Metrics:
        seconds = max(seconds, 1e-9)
        extra = {
            "step": float(self.step),
            "epoch": self.step / self.steps_per_epoch,
            "step_time_s": seconds,
        }
        if "samples" in metrics:
            extra["samples_per_s"] = metrics["samples"] / seconds
        if "tokens" in metrics:
            extra["tokens_per_s"] = metrics["tokens"] / seconds
        return extra

    # -- checkpoint state ----------------------------------------------------------------

    def checkpoint_parts(self) -> dict[str, Any]:
        """Everything a resume needs, as checkpoint parts. Collective: call on every rank.

        A train module with a `model` and an `optimizer` hands them over as a
        `checkpoint.ShardedState` (part `checkpoint.SHARDED_DIR`): every rank writes its
        shard of their state (`checkpoint.save_sharded`). Otherwise (a module that only has
        `state_dict`) its `model` and `optim` entries are plain parts. The rest is the plain
        part `trainer`: step, world size, parallelism, the module's other state (scheduler,
        tokens seen), and every rank's data-loader and RNG state, gathered to every rank in
        rank order (each rank draws its own drop-path masks and reads its own shard).

        Plain parts hold only tensors and plain values (`checkpoint.check_plain`), so that a
        resume loads them with `torch.load(weights_only=True)`.
        """
        parts: dict[str, Any] = {}
        sharded = _sharded_state(self.train_module)
        if sharded is not None:
            # Nothing is gathered: each rank writes its own shards of these two.
            module_state = dict(self.train_module.state_dict(model_and_optimizer=False))
            parts[checkpoint.SHARDED_DIR] = sharded
        else:
            module_state = dict(self.train_module.state_dict())
            for name in checkpoint.SHARDED_PARTS:
                if name in module_state:
                    parts[name] = module_state.pop(name)
        parts["trainer"] = {
            "step": self.step,
            "world_size": self.env.world_size,
            "parallelism": _parallelism(self.train_module),
            "train_module": module_state,
            "data_loader": distributed.all_gather_object(self.data_loader.state_dict()),
            "rng": distributed.all_gather_object(rng.capture_rng_state()),
        }
        # Checked on every rank (rank 0 alone writes them): state a weights_only load would
        # refuse fails the save on all ranks at once, not rank 0 with the others waiting.
        for name, part in parts.items():
            if name != checkpoint.SHARDED_DIR:
                checkpoint.check_plain(part, name)
        return parts

    def load_checkpoint_parts(self, parts: dict[str, Any]) -> None:
        """Restore what `checkpoint_parts` captured (on every rank; collective for a
        sharded checkpoint, whose model and optimizer state each rank reads its slices of).

        On another world size than the writer's, the model, optimizer, schedule and the
        data position (global: epoch and batches consumed) continue exactly; the per-rank
        RNG states cannot be mapped onto other ranks, so every rank takes rank 0's (as
        every rank starts a run from the same seed) and drop-path masks drawn after the
        resume differ from any run of either size. A warning says so.
        """
        state = parts["trainer"]
        module_state = dict(state["train_module"])
        shards = parts.get(checkpoint.SHARDED_DIR)
        sharded = _sharded_state(self.train_module)
        if shards is not None and sharded is None:
            raise ValueError(
                f"the checkpoint's model and optimizer state is sharded ({shards.path}) and "
                f"this {type(self.train_module).__name__} has no `model` and `optimizer` to "
                "restore it into"
            )
        whole = {name: parts[name] for name in checkpoint.SHARDED_PARTS if name in parts}
        if sharded is None:
            module_state.update(whole)
        self.train_module.load_state_dict(module_state)
        if shards is not None:
            shards.restore(sharded.model, sharded.optimizer)
        elif sharded is not None and whole:
            # A plain (format 2) checkpoint: the whole state, loaded on every rank, into a
            # model that may be sharded now (FSDP after DDP).
            dcp_checkpoint.restore_whole(
                sharded.model, sharded.optimizer, whole["model"], whole.get("optim")
            )
        same_layout = state["world_size"] == self.env.world_size
        if not same_layout:
            logger.warning(
                "checkpoint was written by %d ranks, resuming on %d: the model, optimizer, "
                "schedule and data position continue exactly; the RNG states are taken from "
                "rank 0 for every rank, so random draws after this step (drop path) differ "
                "from an uninterrupted run",
                state["world_size"],
                self.env.world_size,
            )
        saved_parallelism = state.get("parallelism")
        mine = _parallelism(self.train_module)
        if saved_parallelism is not None and saved_parallelism != mine:
            logger.info(
                "checkpoint was written with parallelism %s, resuming with %s (resharded)",
                saved_parallelism,
                mine,
            )
        rank = self.env.rank if same_layout else 0
        self.data_loader.load_state_dict(state["data_loader"][rank])
        rng.restore_rng_state(state["rng"][rank])
        self.step = int(state["step"])

    def notify_checkpoint(self, step: int, path: Path) -> None:
        for callback in self.callbacks:
            callback.on_checkpoint(step, path)


def _sharded_state(train_module: Any) -> checkpoint.ShardedState | None:
    """The module's model and optimizer for a sharded checkpoint; None when it has none
    (a module that keeps its state behind `state_dict` alone is checkpointed whole)."""
    model = getattr(train_module, "model", None)
    optimizer = getattr(train_module, "optimizer", None)
    if isinstance(model, nn.Module) and isinstance(optimizer, torch.optim.Optimizer):
        return checkpoint.ShardedState(model, optimizer)
    return None


def _parallelism(train_module: Any) -> str:
    """How the module spreads over ranks (TrainModuleConfig.parallelism; data-parallel
    replicas before that field existed)."""
    return str(getattr(getattr(train_module, "config", None), "parallelism", "ddp"))


def _newest_loadable(directory: Path) -> tuple[dict | None, tuple[str | None, str | None]]:
    """(parts, (path, error)) of the newest checkpoint in `directory` that loads, trying older
    ones when newer ones fail; the error when there are checkpoints and none loads."""
    failures = []
    for _, path in reversed(checkpoint.list_finished(directory)):
        try:
            parts = checkpoint.load_resumable(path)
        except checkpoint.UnreadableCheckpointError as error:
            logger.warning(
                "cannot resume from %s: %s; trying the checkpoint before it", path, error.reason
            )
            failures.append(f"{path.name}: {error.reason}")
            continue
        if failures:
            logger.warning(
                "resuming from %s, an older checkpoint than the newest, because %d newer "
                "one(s) did not load (see above); training repeats the steps after it",
                path,
                len(failures),
            )
        return parts, (str(path), None)
    if not failures:
        return None, (None, None)
    error = (
        f"no checkpoint in {directory} loads, so this run cannot resume:\n  "
        + "\n  ".join(failures)
        + "\nMove these step_<N> folders out of that folder (or delete them) to start the "
        "run over from step 0, or put back a good copy of one to resume from it."
    )
    return None, (None, error)
