"""Benchmark measurement helpers: interleaved timing, FLOP counting, peaks, memory, output."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from models.nn import onednn_linear, precision
from tools.bench import measure


def test_candidates_are_timed_round_robin_after_untimed_warmup():
    calls = []
    ticks = itertools.count()
    timings = measure.time_interleaved(
        {"ours": lambda: calls.append("ours"), "theirs": lambda: calls.append("theirs")},
        warmup=1,
        repeats=3,
        clock=lambda: float(next(ticks)),
        cpu_clock=lambda: 0.0,
    )
    assert calls == ["ours", "theirs"] * 4
    # Each timed call reads the clock twice in a row: 1 tick per call, warm-up never read.
    assert timings["ours"].wall == [1.0, 1.0, 1.0] and timings["ours"].warmup == 1
    assert timings["theirs"].median == 1.0 and timings["theirs"].median_cpu == 0.0


def test_median_ignores_one_slow_outlier_and_spread_shows_it():
    timings = measure.Timings(wall=[1.0, 9.0, 1.2], cpu=[1.0, 1.1, 1.2], warmup=1)
    assert timings.median == 1.2 and timings.median_cpu == 1.1
    assert timings.spread == pytest.approx((9.0 - 1.0) / 1.2)


def test_zero_repeats_are_refused():
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure.time_interleaved({"a": lambda: None}, warmup=0, repeats=0)


def test_a_linear_layer_costs_two_flops_per_multiply_add_forward_and_twice_that_backward():
    layer = torch.nn.Linear(16, 32, bias=True)
    x = torch.randn(8, 16, requires_grad=True)

    def step():
        layer(x).sum().backward()

    multiply_adds = 8 * 16 * 32
    assert measure.count_flops(step) == 2 * multiply_adds * 3  # forward, grad input, grad weight


def test_the_fused_onednn_linear_counts_as_the_linear_it_replaces():
    if not onednn_linear.available():
        pytest.skip("this PyTorch has no oneDNN fused linear")
    layer = torch.nn.Linear(16, 32)
    x = torch.randn(3, 8, 16)

    def fused():
        with precision.inference_precision(layer, "bf16", "cpu"):
            assert onednn_linear.applies(x, layer)
            onednn_linear.linear(x, layer, "gelu")

    assert measure.count_flops(fused) == 2 * 3 * 8 * 16 * 32


def test_cpu_attention_is_counted_with_torchs_attention_formulas():
    q = torch.randn(2, 4, 10, 8, requires_grad=True)

    def forward_only():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, q, q)

    def forward_backward():
        F.scaled_dot_product_attention(q, q, q).sum().backward()

    scores_and_values = 2 * (2 * 2 * 4 * 10 * 10 * 8)  # two bmm-shaped products
    assert measure.count_flops(forward_only) == scores_and_values
    assert measure.count_flops(forward_backward) == scores_and_values * 3.5


def test_peak_of_allocation_deltas_starts_at_zero_and_follows_the_running_sum():
    assert measure.peak_of_allocation_deltas([]) == 0
    assert measure.peak_of_allocation_deltas([-5, 3, 4, -7, 2]) == 2
    assert measure.peak_of_allocation_deltas([10, -4, 8, -14]) == 14


def test_cpu_peak_memory_sees_a_temporary_allocated_inside_the_call():
    def call():
        temporary = torch.ones(1 << 20)  # 4 MiB, freed on return
        return float(temporary.sum())

    peak = measure.peak_memory_bytes(call, torch.device("cpu"))
    assert 4 << 20 <= peak < 8 << 20


def test_resident_bytes_count_parameters_and_optimizer_state_once():
    layer = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(layer.parameters())
    layer(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    parameters = (16 + 4) * 4
    # AdamW keeps exp_avg and exp_avg_sq per parameter, plus a scalar step each.
    assert measure.resident_bytes(layer) == parameters
    assert measure.resident_bytes(layer, optimizer) == parameters * 3 + 2 * 4
    assert measure.resident_bytes(layer, layer.weight) == parameters  # shared storage once


def test_peak_from_a_matmul_candidate_uses_its_median_call():
    timings = measure.Timings(wall=[2.0, 1.0, 4.0], cpu=[1.0, 1.0, 1.0], warmup=0)
    peak = measure.peak_of(timings, flops=int(8e9))
    assert peak.wall == pytest.approx(4.0) and peak.cpu == pytest.approx(8.0)


def test_table_aligns_columns_and_ratio_handles_a_missing_reference():
    table = measure.format_table(["P", "impl"], [[1, "ours"], [8, "reference"]])
    lines = table.splitlines()
    assert lines[0] == "| P | impl      |"
    assert lines[2] == "| 1 |      ours |" and len({len(line) for line in lines}) == 1
    assert measure.ratio(3.0, 2.0) == "1.50x"
    assert measure.ratio(3.0, 0.0) == "n/a"
