"""Comparison numbers: smoothing, convergence, downstream deltas, efficiency, config diffs."""

import pytest

from tools.compare import analysis
from tools.compare.runs import Run


def _run(name: str, losses: list[float], params: int | None = None, **evals: float) -> Run:
    history = [{"step": 10 * (i + 1), "loss": loss} for i, loss in enumerate(losses)]
    history[-1].update({f"eval/landcover/{key}": value for key, value in evals.items()})
    counts = None if params is None else {"trainable": params, "total": params + 5}
    return Run(name, "folder", name, history, {"experiment": name}, counts)


def test_smoothing_is_a_trailing_mean_over_the_window() -> None:
    assert analysis.smooth([1.0, 3.0, 5.0, 7.0], window=2) == [1.0, 2.0, 4.0, 6.0]


def test_steps_to_reach_the_baselines_final_loss_measure_speed() -> None:
    baseline = _run("base", [5.0, 4.0, 3.0, 2.0])
    fast = _run("fast", [3.0, 2.0, 1.0, 1.0])
    slow = _run("slow", [6.0, 5.0, 4.0, 3.5])
    assert analysis.final_loss(baseline, window=1) == 2.0
    conv = analysis.convergence(fast, baseline, window=1)
    assert conv is not None and (conv.steps, conv.baseline_steps) == (20, 40)
    assert conv.relative == pytest.approx(0.5)
    never = analysis.convergence(slow, baseline, window=1)
    assert never is not None and never.steps is None and never.relative is None


def test_an_early_dip_below_the_target_does_not_count_as_convergence() -> None:
    lucky = _run("lucky", [1.5, 5.0, 1.9, 1.8])
    assert analysis.steps_to_reach(lucky, 2.0, window=1) == 30


def test_the_automatic_window_is_a_tenth_of_the_logged_values_but_at_least_five() -> None:
    assert analysis.auto_window([_run("short", [1.0] * 40)]) == 5
    assert analysis.auto_window([_run("long", [1.0] * 300)]) == 30


def test_downstream_deltas_are_against_the_baselines_latest_scores() -> None:
    baseline = _run("base", [1.0], knn_accuracy=0.5, seconds=9.0)
    other = _run("other", [1.0], knn_accuracy=0.7, lp_accuracy=0.4)
    deltas = analysis.downstream_deltas(other, baseline)
    assert deltas["eval/landcover/knn_accuracy"] == pytest.approx((0.7, 0.2))
    assert deltas["eval/landcover/lp_accuracy"] == (0.4, None)
    assert "eval/landcover/seconds" not in analysis.downstream(baseline)


def test_efficiency_is_gain_per_million_added_trainable_parameters() -> None:
    baseline = _run("base", [1.0], params=1_000_000, knn_accuracy=0.5)
    bigger = _run("big", [1.0], params=3_000_000, knn_accuracy=0.6)
    result = analysis.efficiency(bigger, baseline, "eval/landcover/knn_accuracy")
    assert result.added_parameters == 2_000_000
    assert result.gain_per_million == pytest.approx(0.05)
    unknown = analysis.efficiency(_run("x", [1.0]), baseline, "eval/landcover/knn_accuracy")
    assert unknown.added_parameters is None and unknown.gain_per_million is None


def test_config_diff_lists_changed_leaves_but_not_the_run_identity() -> None:
    base = {"experiment": "base", "run_name": "a", "model": {"encoder": {"_class_": "E", "w": 8}}}
    other = {"experiment": "v", "run_name": "b", "model": {"encoder": {"_class_": "F", "w": 8}}}
    other["trainer"] = {"max_duration": {"value": 3}}
    assert analysis.config_diff(base, other) == [
        ("model.encoder._class_", "E", "F"),
        ("trainer.max_duration.value", analysis.ABSENT, 3),
    ]


def test_the_baseline_is_found_by_run_name_then_by_experiment() -> None:
    runs = [_run("v1", [1.0]), _run("b", [1.0])]
    runs[1].config["experiment"] = "base"
    assert analysis.pick_baseline(runs, "base").name == "b"
    with pytest.raises(ValueError, match="no baseline run 'nope'"):
        analysis.pick_baseline(runs, "nope")
