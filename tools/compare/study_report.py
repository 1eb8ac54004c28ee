"""The report of a study: `compare --study <run_root>/<project>/_studies/<study>/study.json`.

A study (experiments/studies) runs a baseline and its variants at the same seeds, optionally at
every point of a hyperparameter grid, and records them in a manifest, study.json. This module
reads the manifest, each run's folder (tools/compare/runs.py), and per run its final values:

    final loss        analysis.final_loss: the trailing mean of the last logged losses, one
                      window for the whole study (analysis.auto_window over its runs)
    downstream        analysis.downstream: the latest value of every `eval/...` score, in-loop
                      or from the offline evaluator's records

and writes, per grid point, the statistics of tools/compare/stats.py: each variant's mean and
95% Student-t interval over seeds, the seed-paired delta against the baseline with its
interval, the Holm-corrected verdict, the power and the seeds needed for 80% power. As
report.md with PNGs next to it and report.html with the PNGs embedded:

    intervals*.png    per metric, each variant's per-seed values, mean and interval
    deltas*.png       per metric, each variant's paired deltas, their mean and interval, zero
    loss_bands*.png   loss curves: the mean over seeds of the smoothed loss, with its interval

A run whose folder is absent or holds no metrics is listed as missing and left out of the
statistics; the report says so rather than failing, so a half-finished study can be read.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scipy import stats as scipy_stats

from tools.compare import analysis, report, runs, stats
from tools.compare.report import Section
from tools.compare.runs import Run

MANIFEST_FORMAT = 1
MANIFEST_KEYS = ("study", "baseline", "variants", "seeds", "runs")
RUN_KEYS = ("name", "variant", "seed")
LOSS_METRIC = analysis.LOSS_KEY
LOSS_LABEL = "final loss"
CONFIDENCE = 0.95
DIGITS = 4  # the run comparison's tables show 4 decimals too (report._fmt)
MISSING = "missing"
SUMMARY_CLOSEST = 5  # comparisons the plain-words summary names; the table has all


class StudyError(ValueError):
    """A manifest or option that cannot be reported on; the message names the fix."""


@dataclasses.dataclass
class StudyRun:
    """One run of the manifest and what its folder gave.

    Attributes:
        name, variant, seed, grid_label: as the manifest lists the run.
        folder: the run folder read (or looked for).
        run: the loaded run; None when the folder is missing or holds no metrics.
        problem: why `run` is None.
        final: metric -> final value (LOSS_METRIC and every downstream score).
    """

    name: str
    variant: str
    seed: int
    grid_label: str
    folder: Path
    run: Run | None
    problem: str = ""
    final: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def status(self) -> str:
        return f"{MISSING}: {self.problem}" if self.run is None else "ok"


@dataclasses.dataclass
class Study:
    """The manifest, its runs and the smoothing window their final losses used."""

    manifest: dict[str, Any]
    path: Path
    runs: list[StudyRun]
    window: int

    @property
    def name(self) -> str:
        return str(self.manifest["study"])

    @property
    def baseline(self) -> str:
        return str(self.manifest["baseline"])

    @property
    def variants(self) -> list[str]:
        """The baseline first, then the other variants in the manifest's order."""
        others = [v for v in self.manifest["variants"] if v != self.baseline]
        return [self.baseline, *others]

    @property
    def seeds(self) -> list[int]:
        return [int(seed) for seed in self.manifest["seeds"]]

    def grid_labels(self) -> list[str]:
        """Grid point labels in the manifest's run order ("" for a study without a grid)."""
        labels: list[str] = []
        for run in self.runs:
            if run.grid_label not in labels:
                labels.append(run.grid_label)
        return labels or [""]

    def metrics(self) -> list[str]:
        """LOSS_METRIC first, then every downstream score any run has, sorted."""
        found = {metric for run in self.runs for metric in run.final}
        return [LOSS_METRIC] * (LOSS_METRIC in found) + sorted(found - {LOSS_METRIC})

    def values(self, grid_label: str) -> dict[str, dict[str, dict[int, float]]]:
        """values[variant][metric][seed] at one grid point, the shape stats.compare_study
        takes; variants in report order, each present even without a loaded run."""
        table: dict[str, dict[str, dict[int, float]]] = {v: {} for v in self.variants}
        for run in self.runs:
            if run.grid_label != grid_label:
                continue
            for metric, value in run.final.items():
                table.setdefault(run.variant, {}).setdefault(metric, {})[run.seed] = value
        return table


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path`, checked for what the report needs."""
    fix = (
        "pass the study.json that the study's `launch` wrote under "
        "<run_root>/<project>/_studies/<study>/"
    )
    if not path.is_file():
        raise StudyError(f"no study manifest at {path}; {fix}")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise StudyError(f"{path} is not JSON ({error}); {fix}") from None
    if not isinstance(manifest, dict):
        raise StudyError(f"{path} holds no JSON object; {fix}")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise StudyError(
            f"{path} has manifest format {manifest.get('format')!r}, this report reads format "
            f"{MANIFEST_FORMAT}; regenerate it with the study's launch at this commit"
        )
    absent = [key for key in MANIFEST_KEYS if key not in manifest]
    if absent:
        raise StudyError(f"{path} lacks {', '.join(absent)}; {fix}")
    for index, entry in enumerate(manifest["runs"]):
        lacking = [key for key in RUN_KEYS if not isinstance(entry, dict) or key not in entry]
        if lacking:
            raise StudyError(f"{path}: runs[{index}] lacks {', '.join(lacking)}; {fix}")
    if manifest["baseline"] not in manifest["variants"]:
        raise StudyError(
            f"{path}: baseline {manifest['baseline']!r} is not among the variants "
            f"{manifest['variants']}; {fix}"
        )
    return manifest


def run_folder(entry: Mapping[str, Any], manifest_path: Path) -> Path:
    """The run's folder: the manifest's run_dir, else the run's name in the project folder that
    holds `_studies/<study>/study.json` (a run root copied or mounted elsewhere)."""
    project_dir = manifest_path.resolve().parent.parent.parent
    recorded = Path(str(entry.get("run_dir") or project_dir / entry["name"]))
    if recorded.is_dir():
        return recorded
    beside = project_dir / str(entry["name"])
    return beside if beside.is_dir() else recorded


def final_values(run: Run, window: int) -> dict[str, float]:
    """LOSS_METRIC (smoothed, analysis.final_loss) and the latest downstream scores."""
    values = dict(analysis.downstream(run))
    loss = analysis.final_loss(run, window=window)
    if loss is not None:
        values[LOSS_METRIC] = loss
    return values


def load_study(manifest_path: Path) -> Study:
    """The manifest and every run it lists; unreadable runs are kept as missing."""
    manifest = read_manifest(manifest_path)
    study_runs = []
    for entry in manifest["runs"]:
        folder = run_folder(entry, manifest_path)
        loaded, problem = None, ""
        if not folder.is_dir():
            problem = f"no run folder at {folder}"
        else:
            try:
                loaded = runs.load_folder(folder)
            except (FileNotFoundError, ValueError) as error:
                problem = str(error)
        study_runs.append(
            StudyRun(
                name=str(entry["name"]),
                variant=str(entry["variant"]),
                seed=int(entry["seed"]),
                grid_label=str(entry.get("grid_label") or ""),
                folder=folder,
                run=loaded,
                problem=problem,
            )
        )
    window = analysis.auto_window([run.run for run in study_runs if run.run is not None])
    for study_run in study_runs:
        if study_run.run is not None:
            study_run.final = final_values(study_run.run, window)
    return Study(manifest=manifest, path=manifest_path, runs=study_runs, window=window)


def parse_min_effect(text: str | None) -> dict[str, float]:
    """`metric=0.01,eval/x/knn_accuracy=0.02` -> {metric: effect}; "" or None -> {}."""
    effects: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        metric, equals, number = item.strip().rpartition("=")
        try:
            effect = float(number) if equals and metric else math.nan
        except ValueError:
            effect = math.nan
        if not effect > 0:
            raise StudyError(
                f"--min-effect: {item.strip()!r} is not metric=positive number "
                "(e.g. loss=0.02,eval/landcover/knn_accuracy=0.01)"
            )
        effects[metric] = effect
    return effects


@dataclasses.dataclass
class GridComparison:
    """The statistics at one grid point.

    Attributes:
        label: the grid point ("" without a grid).
        values: values[variant][metric][seed].
        comparisons: stats.compare_study's rows (Holm over this grid point's tests).
        undirected: metrics left out of the comparisons: no known direction (stats).
        unpaired: (variant, metric) left out: no seed in common with the baseline.
    """

    label: str
    values: dict[str, dict[str, dict[int, float]]]
    comparisons: list[stats.MetricComparison]
    undirected: list[str]
    unpaired: list[tuple[str, str]]


def _direction(metric: str) -> bool | None:
    try:
        return stats.higher_is_better(metric)
    except ValueError:
        return None


def compare_grid_point(
    study: Study, label: str, alpha: float = 0.05, min_effect: Mapping[str, float] | None = None
) -> GridComparison:
    """stats.compare_study over the variants at one grid point, paired by seed."""
    values = study.values(label)
    undirected = sorted({m for m in study.metrics() if _direction(m) is None})
    unpaired = []
    tested: dict[str, dict[str, dict[int, float]]] = {}
    base = values.get(study.baseline, {})
    for variant, metrics in values.items():
        kept = {}
        for metric, seeds in metrics.items():
            if metric in undirected:
                continue
            if variant != study.baseline and not set(seeds) & set(base.get(metric, {})):
                unpaired.append((variant, metric))
                continue
            kept[metric] = seeds
        tested[variant] = kept
    comparisons = []
    if base:
        comparisons = stats.compare_study(
            tested, study.baseline, stats.higher_is_better, alpha, min_effect
        )
    metric_order = study.metrics()
    comparisons.sort(
        key=lambda row: (study.variants.index(row.variant), metric_order.index(row.metric))
    )
    return GridComparison(label, values, comparisons, undirected, unpaired)


# -- plots -------------------------------------------------------------------------------


def metric_label(metric: str) -> str:
    return LOSS_LABEL if metric == LOSS_METRIC else metric.removeprefix("eval/")


def _direction_label(metric: str) -> str:
    direction = _direction(metric)
    return (
        "" if direction is None else (" (higher is better)" if direction else " (lower is better)")
    )


def _panels(count: int, width: float, height: float) -> tuple[Any, list[Any]]:
    columns = min(3, count)
    rows = math.ceil(count / columns)
    figure = report._figure(width * columns, height * rows)
    return figure, [figure.add_subplot(rows, columns, i + 1) for i in range(count)]


def _suffix(label: str) -> str:
    """A file name part for a grid label ("" without a grid)."""
    return "_" + re.sub(r"[^A-Za-z0-9.+-]+", "_", label) if label else ""


def plot_intervals(study: Study, point: GridComparison, out: Path) -> str | None:
    """Per metric: each variant's per-seed values (dots), mean (diamond) and 95% interval."""
    metrics = [m for m in study.metrics() if any(m in v for v in point.values.values())]
    if not metrics:
        return None
    variants = study.variants
    figure, axes_list = _panels(len(metrics), 4.6, 0.45 * len(variants) + 1.6)
    for axes, metric in zip(axes_list, metrics, strict=True):
        for row, variant in enumerate(variants):
            seeds = point.values.get(variant, {}).get(metric, {})
            if not seeds:
                continue
            axes.scatter(list(seeds.values()), [row] * len(seeds), s=14, alpha=0.6, color="C0")
            interval = stats.t_interval(list(seeds.values()), CONFIDENCE)
            if interval.n > 1:
                axes.plot([interval.low, interval.high], [row, row], color="black", linewidth=1.5)
            axes.scatter([interval.mean], [row], marker="D", s=30, color="black", zorder=3)
        base = point.values.get(study.baseline, {}).get(metric)
        if base:
            mean = sum(base.values()) / len(base)
            axes.axvline(mean, color="gray", linestyle=":", linewidth=0.9)
        axes.set_yticks(range(len(variants)))
        axes.set_yticklabels(variants, fontsize=7)
        axes.invert_yaxis()
        axes.set_title(metric_label(metric) + _direction_label(metric), fontsize=9)
        axes.grid(axis="x", alpha=0.3)
    return report._save(figure, out / f"intervals{_suffix(point.label)}.png")


_VERDICT_COLORS = {
    stats.BETTER: "tab:green",
    stats.WORSE: "tab:red",
    stats.NO_DETECTABLE_DIFFERENCE: "tab:gray",
}


def plot_deltas(study: Study, point: GridComparison, out: Path) -> str | None:
    """Per metric: each variant's per-seed paired deltas, their mean and 95% interval, and 0."""
    by_metric: dict[str, list[stats.MetricComparison]] = {}
    for row in point.comparisons:
        by_metric.setdefault(row.metric, []).append(row)
    if not by_metric:
        return None
    metrics = [m for m in study.metrics() if m in by_metric]
    others = [v for v in study.variants if v != study.baseline]
    figure, axes_list = _panels(len(metrics), 4.6, 0.45 * len(others) + 1.6)
    base = point.values.get(study.baseline, {})
    for axes, metric in zip(axes_list, metrics, strict=True):
        for row in by_metric[metric]:
            y = others.index(row.variant)
            own = point.values[row.variant][metric]
            paired = stats.paired_deltas(own, base[metric])
            color = _VERDICT_COLORS[row.verdict]
            axes.scatter(list(paired.values()), [y] * len(paired), s=14, alpha=0.5, color=color)
            if row.delta.n > 1:
                axes.plot([row.delta.low, row.delta.high], [y, y], color=color, linewidth=1.8)
            axes.scatter([row.delta.mean], [y], marker="D", s=30, color=color, zorder=3)
        axes.axvline(0.0, color="black", linewidth=0.8)
        axes.set_yticks(range(len(others)))
        axes.set_yticklabels(others, fontsize=7)
        axes.set_ylim(len(others) - 0.5, -0.5)
        title = f"{metric_label(metric)}{_direction_label(metric)}\nvariant - {study.baseline}"
        axes.set_title(title, fontsize=9)
        axes.grid(axis="x", alpha=0.3)
    return report._save(figure, out / f"deltas{_suffix(point.label)}.png")


def loss_band(
    loaded: Sequence[Run], window: int
) -> tuple[list[int], list[float], list[float], list[float]] | None:
    """(steps, mean, low, high) of the smoothed loss over runs, at the steps all of them logged;
    low == high == mean with one run (no spread to estimate)."""
    curves = []
    for run in loaded:
        steps, values = run.series(LOSS_METRIC)
        if steps:
            curves.append(dict(zip(steps, analysis.smooth(values, window), strict=True)))
    if not curves:
        return None
    common = sorted(set.intersection(*(set(curve) for curve in curves)))
    if not common:
        return None
    mean, low, high = [], [], []
    for step in common:
        interval = stats.t_interval([curve[step] for curve in curves], CONFIDENCE)
        mean.append(interval.mean)
        low.append(interval.low if interval.n > 1 else interval.mean)
        high.append(interval.high if interval.n > 1 else interval.mean)
    return common, mean, low, high


def plot_loss_bands(study: Study, label: str, out: Path) -> str | None:
    """Per variant: the mean over seeds of the smoothed loss and its 95% interval band."""
    figure = report._figure(8.0, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    drawn = False
    for index, variant in enumerate(study.variants):
        loaded = [
            run.run
            for run in study.runs
            if run.variant == variant and run.grid_label == label and run.run is not None
        ]
        band = loss_band(loaded, study.window)
        if band is None:
            continue
        steps, mean, low, high = band
        color = f"C{index % 10}"
        name = variant + (" (baseline)" if variant == study.baseline else "")
        axes.plot(steps, mean, color=color, linewidth=1.6, label=f"{name}, {len(loaded)} seeds")
        axes.fill_between(steps, low, high, color=color, alpha=0.18, linewidth=0)
        drawn = True
    if not drawn:
        return None
    axes.set_xlabel("step")
    axes.set_ylabel(f"loss (trailing mean over {study.window})")
    axes.set_title("loss: mean over seeds, 95% interval band")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return report._save(figure, out / f"loss_bands{_suffix(label)}.png")


# -- tables and words ---------------------------------------------------------------------


def _cell(interval: stats.Interval, seeds: int) -> str:
    text = interval.format(DIGITS)
    return text if interval.n >= seeds else f"{text} (n={interval.n})"


def _bounds(interval: stats.Interval) -> str:
    if interval.n < 2:
        return "n/a (1 seed)"
    return f"[{interval.low:+.{DIGITS}f}, {interval.high:+.{DIGITS}f}]"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def _seeds(row: stats.MetricComparison) -> str:
    if row.seeds_for_80 is None:
        return "n/a" if math.isnan(row.delta.sd) or row.target_effect == 0 else "> 1000"
    return str(row.seeds_for_80)


def _table(header: list[str], rows: list[list[str]]) -> tuple[str, str]:
    return report.md_table(header, rows), report.html_table(header, rows)


def _image(name: str | None) -> str:
    return f"\n\n![{name}]({name})" if name else ""


def header_section(study: Study, comparisons_of: Sequence[GridComparison]) -> Section:
    manifest = study.manifest
    grid = manifest.get("grid") or {}
    facts = [
        ("study", study.name),
        ("hypothesis", str(manifest.get("hypothesis") or "n/a")),
        ("baseline", study.baseline),
        ("variants", ", ".join(study.variants)),
        ("seeds", ", ".join(map(str, study.seeds))),
        ("grid", json.dumps(grid) if grid else "none"),
        ("project", str(manifest.get("project") or "n/a")),
        ("cluster", str(manifest.get("cluster") or "n/a")),
        ("commit", str(manifest.get("commit") or "n/a")),
        ("image", str(manifest.get("image") or "n/a")),
        ("launched", str(manifest.get("launched") or "n/a")),
    ]
    missing = [run for run in study.runs if run.run is None]
    counts = (
        f"{len(study.runs)} runs, {len(study.runs) - len(missing)} with metrics"
        + (f", {len(missing)} {MISSING}" if missing else "")
        + f". Final loss: trailing mean of the last {study.window} logged losses; downstream: "
        "the latest value of each eval/ score."
    )
    md_facts, html_facts = _table(["", "value"], [[key, value] for key, value in facts])
    run_rows = [
        [
            run.name,
            run.variant,
            str(run.seed),
            run.grid_label or "-",
            str(run.run.final_step) if run.run is not None else "-",
            report._fmt(run.final.get(LOSS_METRIC)),
            run.status,
        ]
        for run in study.runs
    ]
    header = ["run", "variant", "seed", "grid point", "steps", LOSS_LABEL, "status"]
    md_runs, html_runs = _table(header, run_rows)
    words = summary(study, comparisons_of)
    markdown = "\n\n".join([md_facts, *words, "### Runs", counts, md_runs])
    body = (
        html_facts
        + "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in words)
        + f"<h3>Runs</h3><p>{html.escape(counts)}</p>{html_runs}"
    )
    return Section(f"Study {study.name}", markdown, body)


def grid_sections(study: Study, point: GridComparison, out: Path) -> list[Section]:
    where = f" at {point.label}" if point.label else ""
    seeds = len(study.seeds)
    metrics = study.metrics()
    rows = []
    for variant in study.variants:
        row = [variant + (" (baseline)" if variant == study.baseline else "")]
        for metric in metrics:
            found = point.values.get(variant, {}).get(metric)
            row.append(_cell(stats.t_interval(list(found.values())), seeds) if found else "n/a")
        rows.append(row)
    header = ["variant"] + [metric_label(m) + _direction_label(m) for m in metrics]
    md_table, html_table = _table(header, rows)
    intervals_png = plot_intervals(study, point, out)
    loss_png = plot_loss_bands(study, point.label, out)
    intro = (
        f"Mean ± half-width of the {CONFIDENCE:.0%} Student-t interval over seeds "
        f"(n = seeds with a value, {seeds} unless shown). Plot: per-seed values (dots), mean "
        "(diamond), interval (bar), the baseline's mean dotted; then the loss curves' mean "
        "over seeds with its interval band."
    )
    per_variant = Section(
        f"Per variant{where}",
        intro + "\n\n" + md_table + _image(intervals_png) + _image(loss_png),
        f"<p>{html.escape(intro)}</p>{html_table}",
        [name for name in (intervals_png, loss_png) if name],
    )

    delta_rows = [
        [
            row.variant,
            metric_label(row.metric),
            "higher" if row.higher_is_better else "lower",
            f"{row.delta.mean:+.{DIGITS}f}",
            _bounds(row.delta),
            _p(row.p_value),
            row.verdict,
            f"{row.power:.0%}" if not math.isnan(row.power) else "n/a",
            f"{row.target_effect:.{DIGITS}f}",
            _seeds(row),
        ]
        for row in point.comparisons
    ]
    header = [
        "variant",
        "metric",
        "better is",
        f"delta vs {study.baseline}",
        f"{CONFIDENCE:.0%} interval",
        "p (paired t)",
        "verdict (Holm)",
        "power",
        "target delta",
        "seeds for 80% power",
    ]
    md_table, html_table = _table(header, delta_rows)
    deltas_png = plot_deltas(study, point, out)
    tests = sum(not math.isnan(row.p_value) for row in point.comparisons)
    intro = (
        f"Variant minus {study.baseline}, paired by seed (the same seed gives every variant "
        f"the same data order and initial weights). p: paired t-test; the verdict applies "
        f"Holm's correction over the {tests} tests here at 5% family-wise error, so an "
        "interval that just excludes 0 can still read 'no detectable difference'. Power: the "
        "chance this many seeds detect the observed delta; seeds for 80% power: to detect the "
        "target delta (--min-effect, else the observed one) at the observed spread of the "
        "deltas. Plot: green better, red worse, gray no detectable difference."
    )
    notes = []
    if point.undirected:
        notes.append(
            "Not compared (no known direction for a verdict): " + ", ".join(point.undirected)
        )
    if point.unpaired:
        pairs = ", ".join(f"{v} on {metric_label(m)}" for v, m in point.unpaired)
        notes.append(f"Not compared (no seed in common with {study.baseline}): {pairs}")
    note = ("\n\n" + "\n\n".join(notes)) if notes else ""
    against = Section(
        f"Against {study.baseline}{where}",
        intro
        + note
        + "\n\n"
        + (md_table if delta_rows else "No comparison could run.")
        + _image(deltas_png),
        f"<p>{html.escape(intro)}</p>"
        + "".join(f"<p>{html.escape(text)}</p>" for text in notes)
        + (html_table if delta_rows else "<p>No comparison could run.</p>"),
        [deltas_png] if deltas_png else [],
    )
    return [per_variant, against]


def _listing(rows: Sequence[stats.MetricComparison]) -> str:
    return "; ".join(
        f"{row.variant} on {metric_label(row.metric)} ({row.delta.mean:+.{DIGITS}f}, "
        f"interval {_bounds(row.delta)})"
        for row in rows
    )


def summary(study: Study, points: Sequence[GridComparison]) -> list[str]:
    """The findings in plain words, a paragraph per grid point and one on the seed count: what
    is beyond noise, what is not, and how many seeds would show it."""
    paragraphs = []
    for point in points:
        sentences = []
        where = f"At {point.label}, " if point.label else ""
        better = [row for row in point.comparisons if row.verdict == stats.BETTER]
        worse = [row for row in point.comparisons if row.verdict == stats.WORSE]
        unclear = [
            row for row in point.comparisons if row.verdict == stats.NO_DETECTABLE_DIFFERENCE
        ]
        if not point.comparisons:
            sentences.append(f"{where}no variant could be compared with {study.baseline}.")
        if better:
            sentences.append(
                f"{where}better than {study.baseline} beyond noise: {_listing(better)}."
            )
        if worse:
            sentences.append(f"{where}worse than {study.baseline} beyond noise: {_listing(worse)}.")
        if not better and not worse:
            sentences.append(
                f"{where}no variant differs from {study.baseline} beyond noise on any metric."
            )
        if unclear:
            # The closest calls first: the comparisons a few more seeds could settle. A study
            # of 3 variants x 10 metrics has 30; the table lists every one.
            closest = sorted(unclear, key=lambda row: row.seeds_for_80 or math.inf)
            needs = [
                f"{row.variant} on {metric_label(row.metric)} ({_seeds(row)} seeds for a delta "
                f"of {row.target_effect:.{DIGITS}f})"
                for row in closest[:SUMMARY_CLOSEST]
            ]
            rest = len(unclear) - len(needs)
            sentences.append(
                f"No detectable difference for {len(unclear)} of {len(point.comparisons)} "
                f"comparisons; the fewest seeds needed for 80% power: {'; '.join(needs)}"
                + (f"; the other {rest} need more (the table has each)." if rest else ".")
            )
        paragraphs.append(_capitalized(sentences))
    sentences = []
    seeds = len(study.seeds)
    counts = {len(found) for p in points for v in p.values.values() for found in v.values()}
    fewest = min(counts, default=seeds)
    if seeds >= 2:
        sentences.append(
            f"With {seeds} seeds an interval is ±{_t_quantile(seeds):.2f} standard errors wide "
            f"(the Student-t quantile at {seeds - 1} degrees of freedom, against 1.96 for many "
            "seeds), so these intervals are wide and only large effects are detectable; 'no "
            "detectable difference' is not evidence of no difference."
        )
    if fewest < seeds:
        sentences.append(
            f"Missing runs leave some values with {fewest} seed(s): "
            + (
                f"±{_t_quantile(fewest):.2f} standard errors, wider still."
                if fewest >= 2
                else "no interval and no test at all."
            )
        )
    paragraphs.append(_capitalized(sentences))
    return [paragraph for paragraph in paragraphs if paragraph]


def _capitalized(sentences: Sequence[str]) -> str:
    return " ".join(sentence[:1].upper() + sentence[1:] for sentence in sentences)


def _t_quantile(seeds: int) -> float:
    """The two-sided Student-t multiplier of a CONFIDENCE interval over `seeds` values."""
    return float(scipy_stats.t.ppf(1 - (1 - CONFIDENCE) / 2, seeds - 1))


def write_study_report(
    manifest_path: Path,
    out: Path,
    alpha: float = 0.05,
    min_effect: Mapping[str, float] | None = None,
) -> report.ReportPaths:
    """Writes report.md, report.html (plots embedded) and the PNGs of a study into `out`."""
    study = load_study(manifest_path)
    unknown = sorted(set(min_effect or {}) - set(study.metrics()))
    if unknown:
        raise StudyError(
            f"--min-effect names {', '.join(unknown)}, which no run of {study.name} has; its "
            f"metrics are {', '.join(study.metrics()) or 'none'}"
        )
    out.mkdir(parents=True, exist_ok=True)
    points = [compare_grid_point(study, label, alpha, min_effect) for label in study.grid_labels()]
    sections = [header_section(study, points)]
    for point in points:
        sections += grid_sections(study, point, out)
    title = f"Study {study.name}: {len(study.variants) - 1} variants against {study.baseline}"
    return report.write_pages(out, title, sections)
