"""How much of a training step is BLAS, and how fast BLAS runs (1 thread, float32).

Times the matrix products of one step of a config by themselves (forward, then dW and dX in
backward, as both the NumPy and the xpgrad step make them), in paired rounds with NumPy's whole
step, and prints each product's GFLOP/s: the part of a step no kernel or engine work can touch.

    python bench/gemm_share.py        # config (b)
    python bench/gemm_share.py a
"""

from __future__ import annotations

import statistics
import sys

import numpy as np

from xpgrad import bench_mlp


def products(cfg: dict) -> list:
    """(label, thunk, multiply-adds) for every matrix product of one step of `cfg`."""
    x, _, weights, _ = bench_mlp._init(cfg)
    rng = np.random.default_rng(1)
    acts = [x] + [rng.random((x.shape[0], w.shape[1])).astype(np.float32) for w in weights]
    out = []
    for i, w in enumerate(weights):
        a, g, m = acts[i], acts[i + 1], x.shape[0] * w.shape[0] * w.shape[1]
        out.append((f"h{i} @ W{i}", lambda a=a, w=w: a @ w, m))
        out.append((f"h{i}.T @ g{i} (dW{i})", lambda a=a, g=g: a.T @ g, m))
        if i > 0:  # the input needs no gradient
            out.append((f"g{i} @ W{i}.T (dh{i})", lambda g=g, w=w: g @ w.T, m))
    return out


def main(config: str = "b") -> int:
    cfg = bench_mlp.CONFIGS[config]
    items = products(cfg)
    with bench_mlp.pinned_threads(1):
        step = bench_mlp.numpy_step_fn(cfg)

        def all_products():
            for _, run, _ in items:
                run()

        per_round = bench_mlp.steps_per_round(step)
        bench_mlp.quiet_gc()
        times = bench_mlp.paired_rounds({"numpy step": step, "its products": all_products}, rounds=21, steps=per_round)
        alone = bench_mlp.paired_rounds({label: run for label, run, _ in items}, rounds=7, steps=per_round)
        for label, _, macs in items:
            seconds = statistics.median(alone[label])
            print(f"{label:22s} {seconds * 1e3:8.3f} ms  {2 * macs / seconds / 1e9:6.1f} GFLOP/s")
    whole, gemms = (statistics.median(times[k]) for k in ("numpy step", "its products"))
    print(
        f"config ({config}): NumPy step {whole * 1e3:.3f} ms, its matrix products {gemms * 1e3:.3f} ms "
        f"({gemms / whole:.1%}); everything else {(whole - gemms) * 1e3:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
