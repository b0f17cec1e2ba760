"""Config (a), eager and captured against hand-written NumPy, with more paired rounds than
`xpgrad bench mlp`'s 15 (1 thread), written three ways:

- (a) and (a_notes): the steps of `xpgrad bench mlp` (`nn.MLP` + `optim.SGD`; the notes' lines on
  tensors + `optim.SGD`) against `bench_mlp.numpy_step_fn`;
- (a_user): as the issue writes it, `bench/user_style.py`'s step (`xg.linear`, `xg.sigmoid`,
  `((z2 - Y) ** 2).sum()`, the manual `p.data -= lr * p.grad.data` under `no_grad`) against the
  notes' 20 NumPy lines.

(a) is GEMM-bound: the two 64x1000x100 products are ~86% of the step in every contender, so the
captured target (>= 1.05x) sits within a few percent of the round-to-round spread; more rounds,
and only the three contenders interleaved, narrow the median.

    python bench/capture_a.py [rounds]     # default 41
"""

from __future__ import annotations

import statistics
import sys

from user_style import user_step_a

from xpgrad import bench_mlp


def main(rounds: str = "41") -> int:
    print(f"1 thread, medians of {rounds} paired rounds; ratio = NumPy time / contender time per round")
    with bench_mlp.pinned_threads(1):
        cfg = bench_mlp.CONFIGS["a"]
        ways = {
            key: (bench_mlp.numpy_step_fn, bench_mlp.xpgrad_step_fn, bench_mlp.CONFIGS[key]) for key in ("a", "a_notes")
        }
        ways["a_user"] = (bench_mlp.notes_numpy_step_fn, user_step_a, cfg)
        for key, (numpy_fn, xpgrad_fn, cfg) in ways.items():
            contenders = {
                "numpy": numpy_fn(cfg),
                "eager": xpgrad_fn(cfg),
                "captured": bench_mlp.captured_step(xpgrad_fn(cfg)),
            }
            steps = bench_mlp.steps_per_round(contenders["numpy"], 0.1)
            bench_mlp.quiet_gc()
            times = bench_mlp.paired_rounds(contenders, int(rounds), steps)
            line = f"({key}) numpy {statistics.median(times['numpy']) * 1e6:.0f} us/step"
            for name in ("eager", "captured"):
                ratios = [n / t for n, t in zip(times["numpy"], times[name])]
                q = statistics.quantiles(ratios, n=4)
                line += f"; {name} {statistics.median(ratios):.3f}x (IQR {q[0]:.3f}-{q[2]:.3f})"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
