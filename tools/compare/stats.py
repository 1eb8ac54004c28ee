"""The statistics of a study: intervals over seeds, paired deltas, Holm verdicts, power.

A study runs every variant (the baseline included) at the same few seeds, typically 3. This
module turns those per-seed numbers into statements that stay honest at such small counts.

Definitions:
    interval          mean of the per-seed values and its two-sided Student-t confidence
                      interval, mean ± t(1 - (1 - confidence) / 2, n - 1) * sd / sqrt(n), sd the
                      sample standard deviation (ddof 1). With 1 value there is no spread to
                      estimate: the interval is (-inf, +inf) and sd is nan
    paired delta      per seed (or per (seed, grid point)), variant minus baseline, over the
                      keys both have. A seed shifts every variant alike (same data order, same
                      initial weights), so differencing within a seed cancels that shared part
                      and the delta's spread is only what the variant changes
    p-value           two-sided one-sample t-test of "the mean paired delta is 0" (the paired
                      t-test); nan with fewer than 2 pairs
    family            every (variant != baseline, metric) test of one study, corrected together
                      with Holm's step-down procedure
    verdict           "better" / "worse" when Holm rejects "no difference" (the sign of the
                      mean delta and the metric's direction decide which), else "no detectable
                      difference" -- not "no difference": at 3 seeds only large effects show
    power             the probability that this test, at this number of seeds and at the
                      family-corrected alpha (alpha / family size, Holm's strictest step), detects
                      a true mean delta `effect` when the per-seed deltas have spread `sd`
                      (noncentral t). The predicted rate at which a procedure run again would say
                      "better"/"worse" for that effect
    seeds needed      the smallest number of seeds (>= 2) whose power reaches the target (80%)

Why Student-t intervals: at 3 seeds the sample sd is itself very uncertain, and t(0.975, 2) =
4.30 against the normal's 1.96 pays for that; a normal interval would cover the true mean in
about 81% of studies instead of 95%. A percentile bootstrap of 3 values is worse still: it
resamples only 10 distinct means, and as 1 resample in 27 repeats the smallest value, its 95%
interval is the observed [min, max], which covers the true mean in 75% of studies.

Why Holm: a study of 3 variants x 6 metrics asks 18 questions; at 5% each, about 60% of studies
of identical variants would report at least one "difference". Holm keeps that family-wise error
at or under alpha for any dependence between the tests (metrics of one run are correlated), and
rejects at least what Bonferroni does. The intervals stay per-test 95%, so an interval that just
excludes 0 can still carry "no detectable difference": the verdict is the corrected one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

BETTER = "better"
WORSE = "worse"
NO_DETECTABLE_DIFFERENCE = "no detectable difference"

# Metric names whose lower values are better: the training losses and their components.
_LOWER_IS_BETTER_PARTS = ("loss", "patch_disc", "infonce")
# Downstream scores (eval/<task>/<metric>) whose higher values are better.
_HIGHER_IS_BETTER_PARTS = ("accuracy", "acc", "miou", "f1", "auc", "precision", "recall")


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean over `n` values and its two-sided Student-t confidence interval [low, high].

    With n == 1 there is no spread to estimate: low/high are -inf/+inf and sd is nan. With a
    spread of 0 (identical values) low == high == mean.
    """

    mean: float
    low: float
    high: float
    n: int
    sd: float
    confidence: float = 0.95

    def half_width(self) -> float:
        """Half the interval's width (inf with 1 value)."""
        return (self.high - self.low) / 2

    def format(self, digits: int = 3) -> str:
        """ "0.312 ± 0.021": the mean and the half width, `digits` decimal places each."""
        return f"{self.mean:.{digits}f} ± {self.half_width():.{digits}f}"


def _finite_values(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} needs at least one value; got {list(values)!r}")
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{what} got a non-finite value in {array.tolist()}; drop the run that diverged "
            "or fix its metrics before comparing"
        )
    return array


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of `values` and its Student-t interval (see the module docstring)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    array = _finite_values(values, "t_interval")
    n = int(array.size)
    mean = float(array.mean())
    if n == 1:
        return Interval(mean, -math.inf, math.inf, 1, math.nan, confidence)
    sd = float(array.std(ddof=1))
    quantile = float(scipy_stats.t.ppf(1 - (1 - confidence) / 2, n - 1))
    half = quantile * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd, confidence)


def paired_deltas(
    variant: Mapping[Hashable, float], baseline: Mapping[Hashable, float]
) -> dict[Hashable, float]:
    """variant - baseline for every key (seed, or (seed, grid point)) present in both."""
    return {key: variant[key] - baseline[key] for key in variant if key in baseline}


def paired_t_pvalue(deltas: Sequence[float]) -> float:
    """Two-sided p-value of "the mean delta is 0"; nan with fewer than 2 deltas.

    With identical deltas (sd 0) the t statistic is 0/0 or ±inf: p is 1 when they are all 0 and
    0 otherwise, which is the limit of a vanishing spread.
    """
    array = _finite_values(deltas, "paired_t_pvalue") if len(deltas) else np.zeros(0)
    n = int(array.size)
    if n < 2:
        return math.nan
    mean = float(array.mean())
    sd = float(array.std(ddof=1))
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    statistic = mean / (sd / math.sqrt(n))
    return float(2 * scipy_stats.t.sf(abs(statistic), n - 1))


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected, in the input's order.

    Sorted ascending, the i-th smallest p (i from 0) is rejected while p <= alpha / (m - i),
    stopping at the first that is not. A nan p-value (a test that could not run, e.g. one seed)
    is never rejected and does not count in m: it asked nothing that could be wrong.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha}")
    tested = [(p, index) for index, p in enumerate(pvalues) if not math.isnan(p)]
    tested.sort()
    rejected = [False] * len(pvalues)
    m = len(tested)
    for step, (p, index) in enumerate(tested):
        if p > alpha / (m - step):
            break
        rejected[index] = True
    return rejected


def power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample (paired) t-test at `n` values to detect a mean `effect`.

    Under a true mean `effect` the t statistic follows a noncentral t with n - 1 degrees of
    freedom and noncentrality effect / sd * sqrt(n); power is its mass beyond ±t(1 - alpha/2).
    0 below 2 values (there is no test to pass); nan for a nan sd; with sd 0 the test decides
    exactly (1 for a non-zero effect, 0 for none, as paired_t_pvalue does).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha}")
    if n < 2:
        return 0.0
    if math.isnan(sd) or math.isnan(effect):
        return math.nan
    if sd == 0:
        return 1.0 if effect != 0 else 0.0
    return float(_power_array(abs(effect), sd, np.array([n]), alpha)[0])


def _power_array(effect: float, sd: float, n: np.ndarray, alpha: float) -> np.ndarray:
    degrees = n - 1
    critical = scipy_stats.t.ppf(1 - alpha / 2, degrees)
    noncentrality = effect / sd * np.sqrt(n)
    upper = scipy_stats.nct.sf(critical, degrees, noncentrality)
    lower = scipy_stats.nct.cdf(-critical, degrees, noncentrality)
    # scipy's noncentral t returns nan where a tail underflows (the lower tail at
    # noncentrality ~50 and 2 degrees of freedom; both tails near 1e15, as from deltas whose sd
    # is float noise). The effect is >= 0, so the lower tail is then ~0 and the upper one is the
    # side of the critical value the noncentrality lies on.
    lower = np.where(np.isnan(lower), 0.0, lower)
    upper = np.where(np.isnan(upper), (noncentrality > critical).astype(float), upper)
    return np.minimum(upper + lower, 1.0)


def seeds_needed(
    effect: float, sd: float, alpha: float = 0.05, target: float = 0.8, limit: int = 1000
) -> int | None:
    """Smallest n >= 2 whose power() reaches `target`; None when no n up to `limit` does, or when
    the effect is 0 or the sd is unknown (nan, e.g. from one seed)."""
    if not 0 < target < 1:
        raise ValueError(f"target power must be in (0, 1), e.g. 0.8; got {target}")
    if effect == 0 or math.isnan(effect) or math.isnan(sd):
        return None
    if sd == 0:
        return 2
    # The z-test (sd known) needs n = ((z(1 - alpha/2) + z(target)) * sd / effect)^2 and the
    # t-test, which also estimates sd, needs more, so the search starts just below that bound
    # and scans up in growing blocks: a few noncentral-t evaluations instead of `limit` of them
    # (compare_study asks once per metric and variant).
    z_sum = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(target)
    ratio = z_sum * sd / abs(effect)
    if ratio >= math.sqrt(limit + 2):  # beyond the limit already (and squaring may overflow)
        return None
    first = max(2, math.floor(ratio**2) - 1)
    block = 16
    while first <= limit:
        candidates = np.arange(first, min(limit, first + block - 1) + 1)
        reached = np.nonzero(_power_array(abs(effect), sd, candidates, alpha) >= target)[0]
        if reached.size:
            return int(candidates[reached[0]])
        first = int(candidates[-1]) + 1
        block *= 4
    return None


@dataclasses.dataclass(frozen=True)
class MetricComparison:
    """One variant against the baseline on one metric (see the module docstring)."""

    variant: str
    metric: str
    higher_is_better: bool
    variant_interval: Interval
    baseline_interval: Interval
    delta: Interval
    """Paired, variant - baseline, over the seeds both ran."""
    p_value: float
    rejected: bool
    """"No difference" rejected after Holm over the whole study."""
    verdict: str
    """"better" | "worse" | "no detectable difference"."""
    power: float
    """Power to detect the observed |mean delta| at this n and the family-corrected alpha."""
    seeds_for_80: int | None
    """Seeds needed for 80% power to detect `target_effect` at the observed sd of the deltas."""
    target_effect: float
    """min_effect[metric] when compare_study got one, else the observed |mean delta|."""


def higher_is_better(metric: str) -> bool:
    """Direction of a metric by its name: losses lower, downstream scores higher.

    "loss" and any name with "loss", "patch_disc" or "infonce" in its last part: lower is better.
    eval/<task>/<score> accuracies, mIoU, F1, AUC, precision, recall: higher is better.
    """
    last = metric.rsplit("/", 1)[-1].lower()
    if any(part in last for part in _LOWER_IS_BETTER_PARTS):
        return False
    if metric.startswith("eval/") and any(part in last for part in _HIGHER_IS_BETTER_PARTS):
        return True
    raise ValueError(
        f"no known direction for metric {metric!r}; pass compare_study a higher_is_better "
        "mapping or function that names it"
    )


def compare_study(
    values: Mapping[str, Mapping[str, Mapping[Hashable, float]]],
    baseline: str,
    higher_is_better: Mapping[str, bool] | Callable[[str], bool],
    alpha: float = 0.05,
    min_effect: Mapping[str, float] | None = None,
) -> list[MetricComparison]:
    """Every variant against `baseline` on every metric both have, Holm-corrected together.

    values[variant][metric][seed] -> value, the baseline included as a variant; a seed key may
    be any hashable (e.g. (seed, grid label)) and pairs with the same key of the baseline.
    Returns one MetricComparison per (variant != baseline, metric), variants in `values`' order,
    metrics sorted by name.
    """
    if baseline not in values:
        raise ValueError(
            f"baseline {baseline!r} has no values; the study's variants are {sorted(values)}"
        )
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha}")
    min_effect = dict(min_effect or {})
    for metric, effect in min_effect.items():
        if not effect > 0:
            raise ValueError(f"min_effect[{metric!r}] must be > 0; got {effect}")
    direction = _direction_lookup(higher_is_better)

    base_values = values[baseline]
    tests = []  # (variant, metric, variant interval, baseline interval, delta interval, p)
    for variant, metrics in values.items():
        if variant == baseline:
            continue
        for metric in sorted(set(metrics) & set(base_values)):
            deltas = paired_deltas(metrics[metric], base_values[metric])
            if not deltas:
                raise ValueError(
                    f"variant {variant!r} and baseline {baseline!r} share no seed for "
                    f"{metric!r} ({sorted(map(str, metrics[metric]))} against "
                    f"{sorted(map(str, base_values[metric]))}); compare runs of the same seeds"
                )
            delta_values = list(deltas.values())
            tests.append(
                (
                    variant,
                    metric,
                    t_interval(list(metrics[metric].values())),
                    t_interval(list(base_values[metric].values())),
                    t_interval(delta_values),
                    paired_t_pvalue(delta_values),
                )
            )

    rejected = holm([test[-1] for test in tests], alpha)
    # Holm's first (strictest) step tests at alpha / m, m the tests that could run: power and
    # seeds needed at that alpha predict what the procedure detects when one effect is real.
    family = max(1, sum(not math.isnan(test[-1]) for test in tests))
    family_alpha = alpha / family
    comparisons = []
    for (variant, metric, variant_iv, baseline_iv, delta, p_value), is_rejected in zip(
        tests, rejected, strict=True
    ):
        better_up = direction(metric)
        if not is_rejected:
            verdict = NO_DETECTABLE_DIFFERENCE
        elif (delta.mean > 0) == better_up:
            verdict = BETTER
        else:
            verdict = WORSE
        target = min_effect.get(metric, abs(delta.mean))
        comparisons.append(
            MetricComparison(
                variant=variant,
                metric=metric,
                higher_is_better=better_up,
                variant_interval=variant_iv,
                baseline_interval=baseline_iv,
                delta=delta,
                p_value=p_value,
                rejected=is_rejected,
                verdict=verdict,
                power=power(abs(delta.mean), delta.sd, delta.n, family_alpha),
                seeds_for_80=seeds_needed(target, delta.sd, family_alpha),
                target_effect=target,
            )
        )
    return comparisons


def _direction_lookup(
    higher_is_better: Mapping[str, bool] | Callable[[str], bool],
) -> Callable[[str], bool]:
    if callable(higher_is_better):
        return higher_is_better
    table = dict(higher_is_better)

    def lookup(metric: str) -> bool:
        if metric not in table:
            raise ValueError(
                f"higher_is_better names no direction for metric {metric!r}; add it "
                f"(it names {sorted(table)})"
            )
        return table[metric]

    return lookup
