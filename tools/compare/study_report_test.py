"""The study report: manifest and run folders in, intervals, paired deltas and verdicts out."""

import dataclasses
import json
from pathlib import Path

import pytest

from tools.compare import analysis, compare, runs, stats, study_report
from tools.compare.synthetic_study import KNN, MIOU, write_study

BASE = "base"
BETTER = "base_encoder_per_mod_proj"  # planted: +0.05 knn accuracy, 5% lower loss
SAME = "base_decoder_per_mod_proj"  # identical to the baseline but for noise


def _study(tmp_path: Path, **options) -> Path:
    variants = {
        BASE: (1.0, {KNN: 0.50, MIOU: 0.30}),
        BETTER: (0.95, {KNN: 0.55, MIOU: 0.30}),
        SAME: (1.0, {KNN: 0.50, MIOU: 0.30}),
    }
    return write_study(tmp_path / "runs", variants, **options)


def _row(rows: list[stats.MetricComparison], variant: str, metric: str) -> stats.MetricComparison:
    (row,) = [r for r in rows if (r.variant, r.metric) == (variant, metric)]
    return row


def test_final_values_are_the_smoothed_final_loss_and_latest_scores_of_each_run(
    tmp_path: Path,
) -> None:
    manifest = _study(tmp_path)
    study = study_report.load_study(manifest)
    run = runs.load_folder(manifest.parents[2] / f"{BETTER}_s1")
    window = analysis.auto_window([r.run for r in study.runs])
    assert study.window == window == 5  # 40 logged losses: the minimum window
    (loaded,) = [r for r in study.runs if r.name == f"{BETTER}_s1"]
    assert loaded.final == {
        "loss": pytest.approx(analysis.final_loss(run, window=window)),
        KNN: run.latest(KNN)[1],
        MIOU: run.latest(MIOU)[1],
    }  # the timing eval/landcover/seconds is no metric
    assert study.metrics() == ["loss", KNN, MIOU]
    assert set(study.values("")[BETTER][KNN]) == {0, 1, 2}


def test_a_planted_effect_is_better_and_an_identical_variant_is_no_detectable_difference(
    tmp_path: Path,
) -> None:
    study = study_report.load_study(_study(tmp_path))
    point = study_report.compare_grid_point(study, "")
    rows = point.comparisons
    assert len(rows) == 6  # 2 variants x (loss + 2 scores), Holm over all six
    knn = _row(rows, BETTER, KNN)
    assert knn.verdict == stats.BETTER and knn.delta.low > 0
    assert knn.delta.mean == pytest.approx(0.05, abs=0.005)
    loss = _row(rows, BETTER, "loss")
    assert loss.verdict == stats.BETTER and loss.delta.high < 0  # lower loss is better
    for metric in ("loss", KNN, MIOU):
        assert _row(rows, SAME, metric).verdict == stats.NO_DETECTABLE_DIFFERENCE
    assert [(r.variant, r.metric) for r in rows[:3]] == [
        (BETTER, "loss"),
        (BETTER, KNN),
        (BETTER, MIOU),
    ]  # the report's order: variants as declared, the loss first


def test_the_report_holds_header_runs_intervals_deltas_verdicts_plots_and_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _study(tmp_path)
    assert compare.main(["--study", str(manifest)]) == 0
    out = manifest.parent / "compare"  # default: next to the manifest
    printed = capsys.readouterr().out
    assert str(out / "report.md") in printed and str(out / "report.html") in printed
    markdown = (out / "report.md").read_text()
    for fact in (
        "| hypothesis | per-modality projections help the encoder |",
        "| commit | 0123456789abcdef0123456789abcdef01234567 |",
        "| cluster | local |",
        "| seeds | 0, 1, 2 |",
        "| launched | 2026-12-03T15:00:00+00:00 |",
        "## Per variant",
        "## Against base",
    ):
        assert fact in markdown
    assert markdown.count("| ok |") == 9  # one runs-table row per run
    study = study_report.load_study(manifest)
    base = study.values("")[BASE]
    cells = [stats.t_interval(list(base[m].values())).format(4) for m in ("loss", KNN, MIOU)]
    assert f"| base (baseline) | {' | '.join(cells)} |" in markdown
    knn = _row(study_report.compare_grid_point(study, "").comparisons, BETTER, KNN)
    assert (
        f"| {BETTER} | landcover/knn_accuracy | higher | {knn.delta.mean:+.4f} | "
        f"[{knn.delta.low:+.4f}, {knn.delta.high:+.4f}] |" in markdown
    )
    assert f"Better than base beyond noise: {BETTER} on final loss" in markdown
    assert "With 3 seeds an interval is ±4.30 standard errors wide" in markdown
    assert f"{SAME} on landcover/knn_accuracy (" in markdown  # its seeds-needed estimate
    for png in ("intervals", "deltas", "loss_bands"):
        assert (out / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"({png}.png)" in markdown
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3


def test_a_run_without_metrics_is_listed_as_missing_and_left_out_of_the_statistics(
    tmp_path: Path,
) -> None:
    manifest = _study(tmp_path, skip=[f"{SAME}_s2"])
    (manifest.parents[2] / f"{BETTER}_s0" / "metrics.jsonl").unlink()  # a run that died early
    out = tmp_path / "report"
    assert compare.main(["--study", str(manifest), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert f"| {SAME}_s2 | {SAME} | 2 | - | - | n/a | missing: no run folder at" in markdown
    assert f"| {BETTER}_s0 | {BETTER} | 0 | - | - | n/a | missing: " in markdown
    assert "9 runs, 7 with metrics, 2 missing" in markdown
    study = study_report.load_study(manifest)
    rows = study_report.compare_grid_point(study, "").comparisons
    assert _row(rows, SAME, KNN).delta.n == 2 and _row(rows, BETTER, KNN).delta.n == 2
    assert "(n=2)" in markdown  # the interval over fewer seeds says so
    assert "Missing runs leave some values with 2 seed(s)" in markdown


def test_every_grid_point_gets_its_own_comparison_and_plots(tmp_path: Path) -> None:
    manifest = _study(tmp_path, grid={"train_module.optimizer.lr": [1e-4, 2e-4]})
    out = tmp_path / "report"
    assert compare.main(["--study", str(manifest), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    for label in ("lr0.0001", "lr0.0002"):
        assert f"## Per variant at {label}" in markdown
        assert f"## Against base at {label}" in markdown
        assert (out / f"deltas_{label}.png").is_file()
    assert markdown.count("| ok |") == 18
    study = study_report.load_study(manifest)
    point = study_report.compare_grid_point(study, "lr0.0002")
    assert all(row.delta.n == 3 for row in point.comparisons)  # paired within the grid point


def test_min_effect_sets_the_delta_the_seeds_needed_are_computed_for(tmp_path: Path) -> None:
    manifest = _study(tmp_path)
    study = study_report.load_study(manifest)
    effects = study_report.parse_min_effect(f"{KNN}=0.001, loss=0.02")
    assert effects == {KNN: 0.001, "loss": 0.02}
    rows = study_report.compare_grid_point(study, "", min_effect=effects).comparisons
    same = _row(rows, SAME, KNN)
    assert same.target_effect == 0.001
    family_alpha = 0.05 / 6
    assert same.seeds_for_80 == stats.seeds_needed(0.001, same.delta.sd, family_alpha)
    out = tmp_path / "report"
    argv = ["--study", str(manifest), "--out", str(out), "--min-effect", f"{KNN}=0.001"]
    assert compare.main(argv) == 0
    assert f"| 0.0010 | {same.seeds_for_80} |" in (out / "report.md").read_text()


def test_a_moved_run_root_is_read_from_the_manifests_project_folder(tmp_path: Path) -> None:
    manifest = _study(tmp_path)
    moved = tmp_path / "elsewhere"
    manifest.parents[3].rename(moved)  # the run root copied to another machine
    study = study_report.load_study(moved / manifest.relative_to(tmp_path / "runs"))
    assert all(run.run is not None for run in study.runs)


@pytest.mark.parametrize(
    "setup, argv, message",
    [
        (None, ["--study", "{root}/nope/study.json"], "no study manifest at"),
        ("not json", ["--study", "{manifest}"], "is not JSON"),
        ({"format": 2}, ["--study", "{manifest}"], "has manifest format 2"),
        ({"format": 1, "study": "s"}, ["--study", "{manifest}"], "lacks baseline, variants"),
        (None, ["--study", "{manifest}", "--min-effect", "knn"], "is not metric=positive"),
        (None, ["--study", "{manifest}", "--min-effect", "eval/x=0.1"], "names eval/x, which"),
        (None, ["--study", "{manifest}", "--runs", "{root}"], "give either --runs"),
        (None, [], "give either --runs"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup, argv, message
) -> None:
    manifest = _study(tmp_path)
    if setup is not None:
        manifest.write_text(setup if isinstance(setup, str) else json.dumps(setup))
    argv = [a.format(root=tmp_path, manifest=manifest) for a in argv]
    assert compare.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error


def test_a_score_without_a_known_direction_gets_intervals_but_no_verdict(tmp_path: Path) -> None:
    mystery = "eval/landcover/mystery_score"
    variants = {
        BASE: (1.0, {KNN: 0.50, mystery: 3.0}),
        BETTER: (0.95, {KNN: 0.55, mystery: 4.0}),
    }
    manifest = write_study(tmp_path / "runs", variants)
    study = study_report.load_study(manifest)
    point = study_report.compare_grid_point(study, "")
    assert point.undirected == [mystery]
    assert {row.metric for row in point.comparisons} == {"loss", KNN}
    out = tmp_path / "report"
    assert compare.main(["--study", str(manifest), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "| landcover/mystery_score |" in markdown  # a column of the per-variant table
    assert f"Not compared (no known direction for a verdict): {mystery}" in markdown


def test_a_study_whose_baseline_has_no_finished_run_still_reports_what_it_has(
    tmp_path: Path,
) -> None:
    manifest = _study(tmp_path, skip=[f"{BASE}_s{seed}" for seed in (0, 1, 2)])
    out = tmp_path / "report"
    assert compare.main(["--study", str(manifest), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "9 runs, 6 with metrics, 3 missing" in markdown
    assert "No variant could be compared with base." in markdown
    assert "No comparison could run." in markdown


def test_the_words_name_the_closest_calls_and_leave_the_rest_to_the_table(tmp_path: Path) -> None:
    study = study_report.load_study(_study(tmp_path))
    point = study_report.compare_grid_point(study, "")
    unclear = [r for r in point.comparisons if r.verdict == stats.NO_DETECTABLE_DIFFERENCE]
    assert len(unclear) == 4  # SAME on 3 metrics, BETTER on miou
    words = " ".join(study_report.summary(study, [point]))
    assert "the fewest seeds needed for 80% power" in words
    assert "the other" not in words  # 4 fit in the summary's five

    # 12 unclear calls, as a study of several variants and many metrics has.
    many = dataclasses.replace(point, comparisons=point.comparisons * 3)
    words = " ".join(study_report.summary(study, [many]))
    assert words.count(" seeds for a delta of ") == study_report.SUMMARY_CLOSEST
    assert "the other 7 need more (the table has each)" in words
