"""Would a layer's input gradient pay to be written transposed? (An experiment that did not pay.)

A Linear layer's input gradient dX = dZ @ W.T (dZ (N, M), W (K, M)) can also be computed as
(W @ dZ.T).T, a product OpenBLAS runs up to 2x faster at some shapes here, but whose result is
F-contiguous. The node before it (a fused bias + ReLU backward) then has to read it transposed.
This times, at 1 thread and in rounds that alternate the two ways:
- the product alone, both ways;
- the product followed by the ReLU + bias-gradient backward that consumes it: the engine's
  kernel on the C-contiguous product, against a tiled kernel (below) that reads the transposed
  one without a copy.

    python bench/input_grad_layout.py
"""

from __future__ import annotations

import statistics
import sys

import numpy as np
from numba import njit

from xpgrad import bench_mlp
from xpgrad.kernels import cpu

TILE_ROWS, TILE_COLS = 8, 256  # the fastest of 4-32 rows x 64-1024 columns at 256x1024
SHAPES = [(N, K, M) for N in (128, 256, 512) for K in (256, 1024) for M in (10, 64, 256, 1024) if N * K >= 1 << 17] + [
    (256, 784, 1024),
    (32, 4096, 4096),
]  # (N, K, M): dZ (N, M), W (K, M)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def relu_backward_transposed(y, dy_t, dz, db):
    """dz = dy where y > 0 else 0 and db = dz.sum(axis=0), with dy given as dy_t = dy.T."""
    n, m = y.shape
    zero = y.dtype.type(0)
    acc = np.zeros(m)
    tile = np.empty((TILE_ROWS, TILE_COLS), y.dtype)
    for i0 in range(0, n, TILE_ROWS):
        rows = min(TILE_ROWS, n - i0)
        for j0 in range(0, m, TILE_COLS):
            cols = min(TILE_COLS, m - j0)
            for jj in range(cols):
                src = dy_t[j0 + jj]
                for ii in range(rows):
                    tile[ii, jj] = src[i0 + ii]
            acc_part = acc[j0 : j0 + cols]
            for ii in range(rows):
                yr, dyr, dzr = y[i0 + ii, j0 : j0 + cols], tile[ii, :cols], dz[i0 + ii, j0 : j0 + cols]
                for j in range(cols):
                    d = dyr[j] if yr[j] > zero else zero
                    dzr[j] = d
                    acc_part[j] += d
    for j in range(m):
        db[j] = acc[j]


def alternating(first, second, rounds: int = 25) -> tuple:
    """(median us of first, median us of second, median and IQR of the per-round ratio second/first)."""
    times = bench_mlp.paired_rounds(
        {"first": first, "second": second}, rounds=rounds, steps=bench_mlp.steps_per_round(first, 0.004)
    )
    ratios = [b / a for a, b in zip(times["first"], times["second"])]
    q = statistics.quantiles(ratios, n=4)
    return (
        statistics.median(times["first"]) * 1e6,
        statistics.median(times["second"]) * 1e6,
        statistics.median(ratios),
        q[0],
        q[2],
    )


def main() -> int:
    rng = np.random.default_rng(0)
    print("1 thread, float32; ratio = transposed / C-contiguous (median [IQR] of alternating rounds)")
    print(
        f"{'N':>5} {'K':>5} {'M':>5} | {'dZ@W.T':>8} {'(W@dZ.T).T':>10} {'ratio':>19} |"
        f" {'+ReLU bwd':>9} {'transposed':>10} {'ratio':>19}"
    )
    with bench_mlp.pinned_threads(1):
        for n, k, m in SHAPES:
            dz_in = rng.standard_normal((n, m)).astype(np.float32)
            w = rng.standard_normal((k, m)).astype(np.float32)
            y = np.maximum(rng.standard_normal((n, k)).astype(np.float32), 0)
            out_c, out_t = np.empty((n, k), np.float32), np.empty((k, n), np.float32)
            dz, db = np.empty_like(y), np.empty(k, np.float32)
            relu_backward_transposed(y, np.matmul(w, dz_in.T, out=out_t), dz, db)
            expected = cpu.bias_act_backward(y, dz_in @ w.T, "relu")
            assert np.allclose(dz, expected[0], rtol=1e-4, atol=1e-3) and np.allclose(
                db, expected[1], rtol=1e-3, atol=1e-2
            )

            def product_c():
                np.matmul(dz_in, w.T, out=out_c)

            def product_t():
                np.matmul(w, dz_in.T, out=out_t)

            def pair_c():
                cpu.bias_act_backward(y, np.matmul(dz_in, w.T, out=out_c), "relu", dz)

            def pair_t():
                relu_backward_transposed(y, np.matmul(w, dz_in.T, out=out_t), dz, db)

            gemm, pair = alternating(product_c, product_t), alternating(pair_c, pair_t)
            print(
                f"{n:5d} {k:5d} {m:5d} | {gemm[0]:8.1f} {gemm[1]:10.1f} {gemm[2]:6.3f} [{gemm[3]:.3f}-{gemm[4]:.3f}] |"
                f" {pair[0]:9.1f} {pair[1]:10.1f} {pair[2]:6.3f} [{pair[3]:.3f}-{pair[4]:.3f}]"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
