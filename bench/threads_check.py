"""Is any config slower at 2 threads than at 1? Passes alternate 1, 2, 1, 2, 1, 2 threads, so a
machine that drifts over the minutes of `xpgrad bench mlp` (whose 2-thread pass runs after the
1-thread one) shows up as noise, not as a thread effect.

    python bench/threads_check.py            # configs a, a_notes, b, c; per-op chain too
"""

from __future__ import annotations

import statistics
import sys

from xpgrad import bench_mlp


def main(configs: str = "a,a_notes,b,c", repeats: str = "3") -> int:
    print(
        "xpgrad steps/s (per-op: us/op), and NumPy's in the same paired rounds, alternating thread counts; "
        "9 rounds per pass"
    )
    for key in configs.split(","):
        cfg = bench_mlp.CONFIGS[key]
        speeds, numpy_speeds = {1: [], 2: []}, {1: [], 2: []}
        for _ in range(int(repeats)):
            for threads in (1, 2):
                with bench_mlp.pinned_threads(threads):
                    steps = {"numpy": bench_mlp.numpy_step_fn(cfg), "xpgrad": bench_mlp.xpgrad_step_fn(cfg)}
                    per_round = bench_mlp.steps_per_round(steps["numpy"])
                    times = bench_mlp.paired_rounds(steps, rounds=9, steps=per_round)
                speeds[threads].append(1.0 / statistics.median(times["xpgrad"]))
                numpy_speeds[threads].append(1.0 / statistics.median(times["numpy"]))
        _report(f"({key})", speeds, "{:,.1f}", higher_is_faster=True)
        _report("  NumPy", numpy_speeds, "{:,.1f}", higher_is_faster=True)  # the same passes: a stall hits both
    per_op = {1: [], 2: []}
    for _ in range(int(repeats)):
        for threads in (1, 2):
            per_op[threads].append(bench_mlp.run_overhead(threads=threads, rounds=9)["us_per_op"]["xpgrad"]["median_s"])
    _report("per-op", per_op, "{:.2f}", higher_is_faster=False)
    return 0


def _report(name: str, values: dict, fmt: str, higher_is_faster: bool) -> None:
    one, two = (", ".join(fmt.format(v) for v in values[n]) for n in (1, 2))
    ratio = statistics.median(values[2]) / statistics.median(values[1])
    speedup = ratio if higher_is_faster else 1 / ratio
    print(f"{name:10s} 1 thread: {one:30s} 2 threads: {two:30s} speed at 2 / at 1: {speedup:.3f}")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
