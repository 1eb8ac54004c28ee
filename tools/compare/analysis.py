"""The numbers of a comparison: final losses, convergence, downstream deltas, efficiency.

Definitions (every function is against one baseline run):
    smoothed loss     trailing mean over the last `window` logged values (default: 10% of a
                      run's logged values, at least 5), so one noisy batch does not decide a
                      comparison (the recipe draws a new patch size and window every step, and
                      the loss of one step ranges over 1.2..4.8 at the nano size)
    final loss        the last smoothed value
    convergence       the first logged step from which a run's smoothed loss stays at or
                      below the baseline's final loss to the end of the run (None: it ends
                      above), and that step relative to the baseline's own (< 1: faster).
                      "Stays" keeps an early lucky dip from counting as convergence
    downstream delta  a run's latest `eval/...` score minus the baseline's
    efficiency        added parameters (trainable, else total) against the gain of the
                      headline metric; gain per million added parameters when it added any
    config diff       every leaf of the flattened config that differs, identity fields
                      (names of the experiment, the run and the cluster) left out
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.train.callbacks.loss_plot import MIN_WINDOW, smoothing_window, trailing_mean
from tools.compare.runs import EVAL_PREFIX, Run

LOSS_KEY = "loss"
SMOOTHING_WINDOW = MIN_WINDOW  # the run's own loss plot smooths the same way
IDENTITY_PATHS = (
    "experiment",
    "run_name",
    "cluster",
    "trainer.run.name",
    "trainer.callbacks.wandb.name",
    "trainer.wandb.name",  # run folders written before the callbacks moved into callbacks
)
"""Config paths that name a run rather than describe it; they differ by design."""
ABSENT = "<absent>"


def smooth(values: list[float], window: int = SMOOTHING_WINDOW) -> list[float]:
    """Trailing mean over up to `window` values (the first values average fewer)."""
    return trailing_mean(values, window)


def auto_window(runs: list[Run], key: str = LOSS_KEY) -> int:
    """10% of the median number of logged loss values, at least SMOOTHING_WINDOW."""
    counts = sorted(len(run.series(key)[0]) for run in runs)
    return smoothing_window(counts[len(counts) // 2] if counts else 0)


def final_loss(run: Run, key: str = LOSS_KEY, window: int = SMOOTHING_WINDOW) -> float | None:
    _, values = run.series(key)
    return smooth(values, window)[-1] if values else None


def steps_to_reach(
    run: Run, target: float, key: str = LOSS_KEY, window: int = SMOOTHING_WINDOW
) -> int | None:
    """First logged step from which the smoothed loss stays <= target to the end of the run;
    None when the run ends above the target."""
    steps, values = run.series(key)
    reached = None
    for step, value in zip(steps, smooth(values, window), strict=True):
        if value > target:
            reached = None
        elif reached is None:
            reached = step
    return reached


@dataclasses.dataclass
class Convergence:
    """A run's speed against the baseline's final loss."""

    target: float
    steps: int | None
    baseline_steps: int | None

    @property
    def relative(self) -> float | None:
        if self.steps is None or not self.baseline_steps:
            return None
        return self.steps / self.baseline_steps


def convergence(run: Run, baseline: Run, window: int = SMOOTHING_WINDOW) -> Convergence | None:
    target = final_loss(baseline, window=window)
    if target is None:
        return None
    return Convergence(
        target=target,
        steps=steps_to_reach(run, target, window=window),
        baseline_steps=steps_to_reach(baseline, target, window=window),
    )


def downstream(run: Run) -> dict[str, float]:
    """Latest value of every `eval/...` score (timings left out)."""
    out = {}
    for key in sorted(run.keys()):
        if key.startswith(EVAL_PREFIX) and not key.endswith("/seconds") and key != "eval/step":
            latest = run.latest(key)
            if latest is not None:
                out[key] = latest[1]
    return out


def downstream_deltas(run: Run, baseline: Run) -> dict[str, tuple[float, float | None]]:
    """key -> (run's score, run minus baseline or None when the baseline lacks it)."""
    base = downstream(baseline)
    return {
        key: (value, value - base[key] if key in base else None)
        for key, value in downstream(run).items()
    }


def counted_parameters(run: Run) -> int | None:
    if not run.params:
        return None
    for key in ("trainable", "total"):
        if key in run.params:
            return int(run.params[key])
    return int(sum(run.params.values()))


@dataclasses.dataclass
class Efficiency:
    """Added parameters against the gain of one metric."""

    metric: str
    added_parameters: int | None
    gain: float | None

    @property
    def gain_per_million(self) -> float | None:
        if self.added_parameters is None or self.gain is None or self.added_parameters <= 0:
            return None
        return self.gain / (self.added_parameters / 1e6)


def efficiency(run: Run, baseline: Run, metric: str) -> Efficiency:
    params, base_params = counted_parameters(run), counted_parameters(baseline)
    added = None if params is None or base_params is None else params - base_params
    score, base_score = run.latest(metric), baseline.latest(metric)
    gain = None if score is None or base_score is None else score[1] - base_score[1]
    return Efficiency(metric=metric, added_parameters=added, gain=gain)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`dotted.path -> leaf` of nested dicts (lists and scalars are leaves)."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def config_diff(
    baseline: dict[str, Any], other: dict[str, Any], ignore: tuple[str, ...] = IDENTITY_PATHS
) -> list[tuple[str, Any, Any]]:
    """(path, baseline value, other value) for every differing leaf, in `other`'s order."""
    flat_base, flat_other = flatten(baseline), flatten(other)
    paths = list(flat_other) + [path for path in flat_base if path not in flat_other]
    changes = []
    for path in paths:
        if any(path == skip or path.startswith(skip + ".") for skip in ignore):
            continue
        old, new = flat_base.get(path, ABSENT), flat_other.get(path, ABSENT)
        if old != new or type(old) is not type(new):
            changes.append((path, old, new))
    return changes


def pick_baseline(runs: list[Run], name: str) -> Run:
    """The run called `name`, else the one whose config says experiment `name`."""
    for run in runs:
        if run.name == name:
            return run
    for run in runs:
        if run.config.get("experiment") == name:
            return run
    raise ValueError(
        f"no baseline run {name!r} among {[run.name for run in runs]} (matched by run name, "
        "then by the config's experiment)"
    )
