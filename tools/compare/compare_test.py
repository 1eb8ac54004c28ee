"""`compare` end to end: run folders in, Markdown + PNG + HTML report out."""

import json
from pathlib import Path

import yaml

from tools.compare import compare


def _run(project: Path, name: str, scale: float, knn: float, params: int, width: int) -> None:
    folder = project / name
    folder.mkdir(parents=True)
    lines = []
    for step in range(1, 21):
        record = {"step": step, "loss": scale * 5.0 / step, "patch_disc": scale * 4.0 / step}
        if step in (10, 20):
            record["eval/landcover/knn_accuracy"] = knn * step / 20
        lines.append(json.dumps(record))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    config = {"experiment": name, "model": {"encoder": {"width": width}}, "seed": 1}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "params.json").write_text(json.dumps({"trainable": params}))


def test_the_report_has_every_section_plot_and_an_html_page_with_embedded_plots(
    tmp_path: Path,
) -> None:
    project = tmp_path / "study"
    _run(project, "base", 1.0, 0.5, 1_000_000, 8)
    _run(project, "variant", 0.8, 0.6, 1_500_000, 16)
    out = tmp_path / "report"
    assert compare.main(["--runs", str(project), "--baseline", "base", "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    for heading in (
        "## Runs",
        "## Pretraining loss curves",
        "## Downstream task performance",
        "## Convergence speed",
        "## Parameter efficiency",
        "## Config diff against the baseline",
    ):
        assert heading in markdown
    assert "0.6000 (+0.1000)" in markdown  # variant's knn accuracy and its delta
    assert "model.encoder.width: 8 -> 16" in markdown
    assert "500.0k" in markdown  # added parameters
    for png in ("loss_curves", "downstream", "eval_curves", "convergence", "efficiency"):
        assert (out / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"({png}.png)" in markdown
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5


def test_an_unknown_baseline_exits_with_status_2(tmp_path: Path) -> None:
    project = tmp_path / "study"
    _run(project, "base", 1.0, 0.5, 10, 8)
    assert compare.main(["--runs", str(project), "--baseline", "nope"]) == 2


def test_source_names_the_runs_without_the_local_path(tmp_path: Path) -> None:
    project = tmp_path / "study"
    _run(project, "base", 1.0, 0.5, 10, 8)
    out = tmp_path / "report"
    label = "<run-root>/study"
    args = ["--runs", str(project), "--out", str(out), "--source", label]
    assert compare.main(args) == 0
    markdown = (out / "report.md").read_text()
    assert f"Read from `{label}`" in markdown
    assert str(tmp_path) not in markdown + (out / "report.html").read_text()
