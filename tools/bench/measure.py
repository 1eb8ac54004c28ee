"""Measurement helpers shared by the benchmarks: timing, FLOPs, matmul peak, peak memory.

Timing: every candidate gets `warmup` untimed calls, then `repeats` timed calls; the
candidates are *interleaved* (ours, reference, ours, reference, ...) so that a burst of load
from other processes on a shared machine hits both alike, and each reports the median.

FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one call, counting matmuls,
convolutions and attention (2 FLOPs per multiply-add). Torch's table has no entry for the CPU
attention kernel (`_scaled_dot_product_flash_attention_for_cpu`), so we add it with torch's
own attention formulas; element-wise work (norms, GELU, softmax, the optimizer) is not
counted, as usual for model FLOPs.

Peak memory: CUDA uses the caching allocator's peak (`max_memory_allocated`). The CPU
allocator keeps no statistics, and the process RSS high-water mark mixes in glibc's caching,
so on CPU we replay torch's allocator events: `torch.profiler` with `profile_memory=True`
records every CPU allocation and free made by torch, and the running sum of those events,
at its maximum, is the most bytes torch held at once *on top of* what was allocated before
the call (parameters, optimizer state, the batch). Allocations by OpenMP worker threads are
not reported to the profiler; torch allocates tensors on the calling thread, so that misses
little.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch.utils import flop_counter

# -- timing ----------------------------------------------------------------------------------


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What to call before reading the clock: waits for queued GPU work; a no-op on CPU."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@dataclasses.dataclass
class Timings:
    """Seconds per call of one candidate, after `warmup` untimed calls.

    wall: elapsed time. cpu: CPU time of the whole process (every thread) over the call. On a
    machine shared with other jobs, wall time includes the time the scheduler gave to them,
    while CPU time counts only our own work, so comparisons of CPU time hold up under load
    (with one thread CPU time equals wall time on an idle machine; with n threads up to n x).
    """

    wall: list[float]
    cpu: list[float]
    warmup: int

    @property
    def median(self) -> float:
        """Median wall-clock seconds."""
        return _median(self.wall)

    @property
    def median_cpu(self) -> float:
        """Median CPU seconds."""
        return _median(self.cpu)

    @property
    def spread(self) -> float:
        """(max - min) / median of the wall times: how noisy the machine was."""
        return (max(self.wall) - min(self.wall)) / self.median


def _median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no timed calls: repeats must be >= 1")
    return statistics.median(values)


def time_interleaved(
    candidates: Mapping[str, Callable[[], object]],
    *,
    warmup: int,
    repeats: int,
    synchronize: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.process_time,
) -> dict[str, Timings]:
    """Times each candidate `repeats` times after `warmup` calls, in round-robin order.

    Args:
        candidates: name -> a call to time (its result is discarded).
        warmup: untimed calls per candidate first (allocator, caches, lazy init).
        repeats: timed calls per candidate (>= 1).
        synchronize: called before each clock read (GPU: wait for the queue).
        clock, cpu_clock: wall and process CPU seconds; injectable for tests.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1; got {warmup} and {repeats}")
    for _ in range(warmup):
        for call in candidates.values():
            call()
    synchronize()
    wall: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, call in candidates.items():
            synchronize()
            start, start_cpu = clock(), cpu_clock()
            call()
            synchronize()
            wall[name].append(clock() - start)
            cpu[name].append(cpu_clock() - start_cpu)
    return {name: Timings(wall[name], cpu[name], warmup) for name in candidates}


# -- FLOPs -----------------------------------------------------------------------------------


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward_flops(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
):
    return flop_counter.sdpa_backward_flop_count(
        grad_out_shape, query_shape, key_shape, value_shape
    )


def _fused_linear_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs):
    """oneDNN's linear (+ pointwise epilogue): input [..., K] x weight [N, K]."""
    return 2 * math.prod(input_shape) * weight_shape[0]


def _extra_flop_formulas() -> dict:
    aten = torch.ops.aten
    formulas = {}
    try:  # models/nn/onednn_linear.py runs it for bf16 inference on CPU
        formulas[torch.ops.mkldnn._linear_pointwise] = _fused_linear_flops
    except (AttributeError, RuntimeError):
        pass
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None:
        formulas[forward] = _cpu_attention_flops
    if backward is not None:
        formulas[backward] = _cpu_attention_backward_flops
    return formulas


def count_flops(call: Callable[[], object]) -> int:
    """Matmul, convolution and attention FLOPs of one `call()` (forward and backward)."""
    with flop_counter.FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas()) as fc:
        call()
    return int(fc.get_total_flops())


# -- matmul peak -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Peak:
    """GFLOP/s of a large matmul, per wall-clock second and per CPU second of the process."""

    wall: float
    cpu: float


PEAK_MATMUL_SIZE = 2048
"""Side of the square matmul that measures the peak: large enough for MKL and cuBLAS to reach
their plateau (4096 measured within a few % of it on CPU) at ~0.2 s per call on one core."""


def matmul_call(
    dtype: torch.dtype, device: torch.device, size: int = PEAK_MATMUL_SIZE
) -> tuple[Callable[[], object], int]:
    """A `size`^3 matmul to time as a candidate next to the workload, and its FLOPs.

    Timing it interleaved with the workload's calls (`time_interleaved`) measures the peak
    under the same load as the workload, which matters on a shared machine.
    """
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=generator, device=device).to(dtype)
    b = torch.randn(size, size, generator=generator, device=device).to(dtype)
    return (lambda: torch.mm(a, b)), 2 * size**3


def peak_of(timings: Timings, flops: int) -> Peak:
    """GFLOP/s of a matmul candidate's median call, per wall second and per CPU second."""
    return Peak(wall=flops / timings.median / 1e9, cpu=flops / timings.median_cpu / 1e9)


# -- peak memory -----------------------------------------------------------------------------


def _cpu_peak_bytes(call: Callable[[], object]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = [
        event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"
    ]
    return peak_of_allocation_deltas(
        [event.nbytes() for event in sorted(events, key=lambda event: event.start_ns())]
    )


def peak_of_allocation_deltas(deltas: Sequence[int]) -> int:
    """Largest running sum of allocation (+) and free (-) byte counts, starting from 0.

    Frees of memory allocated before the window make the sum dip below 0; the peak is
    measured from the start of the window, so those never count.
    """
    live, peak = 0, 0
    for delta in deltas:
        live += delta
        peak = max(peak, live)
    return peak


def peak_memory_bytes(call: Callable[[], object], device: torch.device) -> int:
    """Most bytes torch held during `call()` beyond what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        call()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    return _cpu_peak_bytes(call)


def resident_bytes(*modules_or_tensors: object) -> int:
    """Bytes of the parameters, buffers and optimizer state that outlive a step."""
    total = 0
    seen: set[int] = set()

    def add(tensor: torch.Tensor) -> None:
        nonlocal total
        key = tensor.untyped_storage().data_ptr()
        if key and key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()

    for item in modules_or_tensors:
        if isinstance(item, torch.nn.Module):
            for tensor in [*item.parameters(), *item.buffers()]:
                add(tensor)
        elif isinstance(item, torch.optim.Optimizer):
            for state in item.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        add(value)
        elif isinstance(item, torch.Tensor):
            add(item)
        else:
            raise TypeError(f"resident_bytes takes modules, optimizers and tensors, not {item!r}")
    return total


# -- output ----------------------------------------------------------------------------------


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable in a terminal and pasteable into notes)."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in cells:
        lines.append(
            "| " + " | ".join(value.rjust(w) for value, w in zip(row, widths, strict=True)) + " |"
        )
    return "\n".join(lines)


def ratio(ours: float, theirs: float) -> str:
    """`ours / theirs` as text, or "n/a" without a reference number."""
    if not theirs or theirs != theirs:  # 0 or NaN
        return "n/a"
    return f"{ours / theirs:.2f}x"
