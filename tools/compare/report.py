"""Writes the comparison: report.md + PNG plots + report.html (the plots embedded).

Plots use matplotlib's Agg canvas directly (no pyplot), so no display is needed and the
process-wide backend is untouched. Every number in the plots is also in a table.

    loss_curves.png   training loss (and its parts) of every run, raw faint and smoothed,
                      with the baseline's final loss as a dashed line
    downstream.png    latest downstream scores per run, and their deltas to the baseline
    eval_curves.png   the headline metric over training steps (runs evaluated in-loop)
    convergence.png   steps to reach (and stay at) the baseline's final loss
    efficiency.png    added parameters against the gain of the headline metric
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tools.compare import analysis
from tools.compare.runs import Run

LOSS_PARTS = ("loss", "patch_disc", "infonce")
DEFAULT_METRIC = "eval/landcover/knn_accuracy"


@dataclasses.dataclass
class Section:
    """A report section: Markdown body, HTML body, and images it shows (file names)."""

    title: str
    markdown: str
    html: str
    images: list[str] = dataclasses.field(default_factory=list)


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path)
    return path.name


def _colors(runs: Sequence[Run]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {run.name: palette(index % 10) for index, run in enumerate(runs)}


def plot_losses(runs: Sequence[Run], baseline: Run, out: Path, window: int) -> str | None:
    parts = [key for key in LOSS_PARTS if any(run.series(key)[0] for run in runs)]
    if not parts:
        return None
    colors = _colors(runs)
    figure = _figure(5.0 * len(parts), 4.2)
    for index, key in enumerate(parts):
        axes = figure.add_subplot(1, len(parts), index + 1)
        for run in runs:
            steps, values = run.series(key)
            if not steps:
                continue
            color = colors[run.name]
            axes.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            width = 2.2 if run is baseline else 1.4
            axes.plot(
                steps,
                analysis.smooth(values, window),
                color=color,
                linewidth=width,
                label=run.name + (" (baseline)" if run is baseline else ""),
            )
        target = analysis.final_loss(baseline, key, window)
        if target is not None:
            axes.axhline(target, color="black", linestyle="--", linewidth=0.8)
        axes.set_xlabel("step")
        axes.set_title(key)
        axes.grid(alpha=0.3)
        if index == 0:
            axes.legend(fontsize=8)
    return _save(figure, out / "loss_curves.png")


def plot_downstream(runs: Sequence[Run], baseline: Run, out: Path) -> str | None:
    metrics = sorted({key for run in runs for key in analysis.downstream(run)})
    if not metrics:
        return None
    colors = _colors(runs)
    figure = _figure(max(8.0, 1.1 * len(metrics) * max(1, len(runs)) / 2), 7.5)
    width = 0.8 / len(runs)
    labels = [key.removeprefix("eval/") for key in metrics]
    base_scores = analysis.downstream(baseline)
    panels = (
        ("score", lambda run, key: analysis.downstream(run).get(key)),
        ("delta to baseline", lambda run, key: _delta(run, key, base_scores)),
    )
    for panel, (title, value_of) in enumerate(panels):
        axes = figure.add_subplot(2, 1, panel + 1)
        for index, run in enumerate(runs):
            values = [value_of(run, key) for key in metrics]
            positions = [m + (index - (len(runs) - 1) / 2) * width for m in range(len(metrics))]
            axes.bar(
                positions,
                [v if v is not None else 0.0 for v in values],
                width,
                color=colors[run.name],
                label=run.name,
            )
        axes.axhline(0.0, color="black", linewidth=0.6)
        axes.set_xticks(range(len(metrics)))
        axes.set_xticklabels(labels if panel == 1 else [], rotation=30, ha="right", fontsize=8)
        axes.set_title(title)
        axes.grid(axis="y", alpha=0.3)
        if panel == 0:
            axes.legend(fontsize=8, ncol=min(4, len(runs)))
    return _save(figure, out / "downstream.png")


def _delta(run: Run, key: str, base_scores: dict[str, float]) -> float | None:
    value = analysis.downstream(run).get(key)
    return None if value is None or key not in base_scores else value - base_scores[key]


def plot_eval_curves(runs: Sequence[Run], metric: str, out: Path) -> str | None:
    if not any(len(run.series(metric)[0]) > 1 for run in runs):
        return None
    colors = _colors(runs)
    figure = _figure(7.0, 4.2)
    axes = figure.add_subplot(1, 1, 1)
    for run in runs:
        steps, values = run.series(metric)
        if steps:
            axes.plot(steps, values, marker="o", color=colors[run.name], label=run.name)
    axes.set_xlabel("step")
    axes.set_title(metric)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, out / "eval_curves.png")


def plot_convergence(rows: list[tuple[Run, analysis.Convergence | None]], out: Path) -> str | None:
    if not any(conv is not None for _, conv in rows):
        return None
    colors = _colors([run for run, _ in rows])
    figure = _figure(7.0, 3.8)
    axes = figure.add_subplot(1, 1, 1)
    for index, (run, conv) in enumerate(rows):
        if conv is None:
            continue
        reached = conv.steps is not None
        height = conv.steps if reached else run.final_step
        axes.bar(
            index,
            height,
            color=colors[run.name],
            hatch=None if reached else "//",
            alpha=1.0 if reached else 0.4,
        )
        axes.text(
            index,
            height,
            str(conv.steps) if reached else "not reached",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axes.set_xticks(range(len(rows)))
    axes.set_xticklabels([run.name for run, _ in rows], rotation=20, ha="right", fontsize=8)
    axes.set_ylabel("steps")
    axes.set_title("steps to reach (and stay at) the baseline's final loss")
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, out / "convergence.png")


def plot_efficiency(rows: list[tuple[Run, analysis.Efficiency]], out: Path) -> str | None:
    points = [
        (run, eff) for run, eff in rows if eff.added_parameters is not None and eff.gain is not None
    ]
    if not points:
        return None
    colors = _colors([run for run, _ in rows])
    figure = _figure(6.5, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    for run, eff in points:
        x = eff.added_parameters / 1e6  # type: ignore[operator]
        axes.scatter([x], [eff.gain], color=colors[run.name], s=60, zorder=3)
        axes.annotate(
            run.name, (x, eff.gain), textcoords="offset points", xytext=(5, 5), fontsize=8
        )
    axes.axhline(0.0, color="black", linewidth=0.6)
    axes.axvline(0.0, color="black", linewidth=0.6)
    axes.set_xlabel("added parameters (M)")
    axes.set_ylabel(f"gain in {rows[0][1].metric}")
    axes.set_title("parameter efficiency")
    axes.grid(alpha=0.3)
    return _save(figure, out / "efficiency.png")


# -- tables ------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return str(value)


def _signed(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _count(value: int | None) -> str:
    if value is None:
        return "n/a"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 1e6:
        return f"{sign}{value / 1e6:.3f}M"
    if value >= 1e3:
        return f"{sign}{value / 1e3:.1f}k"
    return f"{sign}{value}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _table_section(
    title: str, intro: str, header: list[str], rows: list[list[str]], images: list[str | None] = ()
) -> Section:
    shown = [image for image in images if image]
    markdown = "\n\n".join([intro, md_table(header, rows)] + [f"![{i}]({i})" for i in shown])
    body = f"<p>{html.escape(intro)}</p>" + html_table(header, rows)
    return Section(title, markdown, body, shown)


# -- the report --------------------------------------------------------------------------


@dataclasses.dataclass
class ReportPaths:
    markdown: Path
    html: Path
    images: list[Path]


def build_sections(
    runs: Sequence[Run], baseline: Run, out: Path, metric: str, window: int, source: str
) -> list[Section]:
    ordered = [baseline] + [run for run in runs if run is not baseline]
    sections = []

    overview_rows = []
    for run in ordered:
        loss = analysis.final_loss(run, window=window)
        overview_rows.append(
            [
                run.name + (" (baseline)" if run is baseline else ""),
                run.source,
                str(run.final_step),
                _fmt(loss),
                _count(analysis.counted_parameters(run)),
                run.params_note,
            ]
        )
    sections.append(
        _table_section(
            "Runs",
            f"Read from `{source}`; baseline `{baseline.name}`. Final loss is the mean of the "
            f"last {window} logged values; parameters are trainable (else total) counts.",
            ["run", "source", "steps", "final loss", "parameters", "parameter count source"],
            overview_rows,
        )
    )

    loss_png = plot_losses(ordered, baseline, out, window)
    eval_png = plot_eval_curves(ordered, metric, out)
    sections.append(
        Section(
            "Pretraining loss curves",
            "Faint: logged values; bold: trailing mean over "
            f"{window} values; dashed: the baseline's final loss."
            + (f"\n\n![loss_curves]({loss_png})" if loss_png else "\n\nNo run logged a loss."),
            f"<p>Faint: logged values; bold: trailing mean over {window} values; dashed: the "
            "baseline's final loss.</p>",
            [loss_png] if loss_png else [],
        )
    )

    metrics = sorted({key for run in ordered for key in analysis.downstream(run)})
    rows = []
    for key in metrics:
        row = [key]
        for run in ordered:
            deltas = analysis.downstream_deltas(run, baseline)
            if key not in deltas:
                row.append("n/a")
            elif run is baseline:
                row.append(_fmt(deltas[key][0]))
            else:
                row.append(f"{_fmt(deltas[key][0])} ({_signed(deltas[key][1])})")
        rows.append(row)
    downstream_png = plot_downstream(ordered, baseline, out)
    if rows:
        sections.append(
            _table_section(
                "Downstream task performance",
                "Latest score of each evaluation metric; in parentheses the difference to the "
                "baseline (higher is better for every metric here).",
                ["metric"] + [run.name for run in ordered],
                rows,
                [downstream_png, eval_png],
            )
        )
    else:
        sections.append(
            Section(
                "Downstream task performance",
                "No run has `eval/...` scores.",
                "<p>No run has eval scores.</p>",
            )
        )

    conv_rows = [(run, analysis.convergence(run, baseline, window)) for run in ordered]
    table = []
    for run, conv in conv_rows:
        if conv is None:
            table.append([run.name, "n/a", "n/a", "n/a"])
            continue
        table.append(
            [
                run.name,
                _fmt(conv.target),
                "not reached" if conv.steps is None else str(conv.steps),
                _fmt(conv.relative, 2) if conv.relative is not None else "n/a",
            ]
        )
    sections.append(
        _table_section(
            "Convergence speed",
            "The first step from which a run's smoothed loss stays at or below the baseline's "
            "final loss; relative is that step over the baseline's own (below 1: faster).",
            ["run", "target loss", "steps to reach", "relative to baseline"],
            table,
            [plot_convergence(conv_rows, out)],
        )
    )

    eff_rows = [(run, analysis.efficiency(run, baseline, metric)) for run in ordered]
    table = []
    for run, eff in eff_rows:
        table.append(
            [
                run.name,
                _count(eff.added_parameters),
                _signed(eff.gain),
                _signed(eff.gain_per_million),
            ]
        )
    sections.append(
        _table_section(
            "Parameter efficiency",
            f"Added parameters against the gain in `{metric}` over the baseline.",
            ["run", "added parameters", "metric gain", "gain per 1M added parameters"],
            table,
            [plot_efficiency(eff_rows, out)],
        )
    )

    diff_md, diff_html = [], []
    for run in ordered:
        if run is baseline:
            continue
        changes = analysis.config_diff(baseline.config, run.config)
        lines = [f"{path}: {_short(old)} -> {_short(new)}" for path, old, new in changes]
        text = "\n".join(lines) if lines else "(identical to the baseline)"
        diff_md.append(f"**{run.name}** ({len(changes)} field(s))\n\n```\n{text}\n```")
        heading = f"{html.escape(run.name)} ({len(changes)} field(s))"
        diff_html.append(f"<h3>{heading}</h3><pre>{html.escape(text)}</pre>")
    sections.append(
        Section(
            "Config diff against the baseline",
            "Identity fields (experiment, run and cluster names) are left out.\n\n"
            + "\n\n".join(diff_md),
            "<p>Identity fields (experiment, run and cluster names) are left out.</p>"
            + "".join(diff_html),
        )
    )
    return sections


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


HTML_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "font-size:13px;text-align:right}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}pre{background:#f6f6f6;padding:8px;overflow-x:auto}"
)


def write_report(
    runs: Sequence[Run],
    baseline: Run,
    out: Path,
    metric: str = DEFAULT_METRIC,
    window: int | None = None,
    source: str = "",
    title: str = "Run comparison",
) -> ReportPaths:
    """Writes report.md, report.html and the PNGs into `out` (window None: automatic)."""
    out.mkdir(parents=True, exist_ok=True)
    window = window or analysis.auto_window(list(runs))
    sections = build_sections(runs, baseline, out, metric, window, source)
    return write_pages(out, title, sections)


def write_pages(out: Path, title: str, sections: Sequence[Section]) -> ReportPaths:
    """report.md and report.html of `sections` in `out`, whose PNGs the sections already wrote
    there; the page embeds them, so it travels as one file."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    markdown = [f"# {title}", f"Generated {stamp} by `bazel run //tools:compare`."]
    body = [
        f"<h1>{html.escape(title)}</h1>"
        f"<p>Generated {stamp} by <code>bazel run //tools:compare</code>.</p>"
    ]
    images: list[Path] = []
    for section in sections:
        markdown.append(f"## {section.title}\n\n{section.markdown}")
        body.append(f"<h2>{html.escape(section.title)}</h2>{section.html}")
        for name in section.images:
            path = out / name
            images.append(path)
            encoded = base64.b64encode(path.read_bytes()).decode()
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">')
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text("\n\n".join(markdown) + "\n")
    html_path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{HTML_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return ReportPaths(markdown=md_path, html=html_path, images=images)
