"""Where an xpgrad training step's time goes, against hand-written NumPy (1 thread).

Times three steps of the same MLP config in paired rounds:
- numpy:      the hand-written step of `xpgrad.bench_mlp.numpy_step_fn`;
- array work: exactly the array calls the xpgrad step makes (GEMMs, the fused kernels through
              their public entry points, the loss and its gradient), with no tape;
- xpgrad:     `xpgrad.bench_mlp.xpgrad_step_fn`.
xpgrad minus "array work" is the engine's Python cost; "array work" minus numpy is what the
kernels save or lose. Then counts the Python-level calls of one xpgrad step (cProfile).

    python bench/step_breakdown.py            # config (a), float32
"""
from __future__ import annotations

import cProfile
import gc
import pstats
import statistics
import sys

import numpy as np

from xpgrad import bench_mlp
from xpgrad.kernels import cpu


def array_work_step(cfg: dict, dtype=np.float32):
    """The array calls of the xpgrad step for a bias-free sigmoid MLP with squared error."""
    if cfg["bias"] or cfg["activation"] != "sigmoid" or cfg["loss"] != "squared_error" or len(cfg["sizes"]) != 3:
        raise ValueError("array_work_step mirrors config (a) only: two bias-free layers, sigmoid, squared error")
    x, y, (W1, W2), _ = bench_mlp._init(cfg, dtype)
    lr, zero_bias = cfg["lr"], np.zeros(W1.shape[1], dtype)
    grads = []

    def step():
        h = cpu.bias_act_forward(x @ W1, zero_bias, "sigmoid", out=np.empty((x.shape[0], W1.shape[1]), dtype))
        d = h @ W2 - y
        loss = np.vdot(d, d) * 1.0  # mse_loss(reduction="sum")
        g = d * (np.array(1, dtype) * 2.0)  # its backward: d * (seed * 2)
        dz = cpu.sigmoid_backward(h, g @ W2.T, out=np.empty_like(h))
        grads[:] = [x.T @ dz, h.T @ g]  # kept alive until the next step, like .grad
        for w, gw in zip((W1, W2), grads):
            cpu.sgd_update(w, gw, None, lr, 0.0, 0.0, False)
        return loss

    return step


def main(config: str = "a") -> int:
    cfg = bench_mlp.CONFIGS[config]
    with bench_mlp.pinned_threads(1):
        steps = {"numpy": bench_mlp.numpy_step_fn(cfg), "array work": array_work_step(cfg),
                 "xpgrad": bench_mlp.xpgrad_step_fn(cfg)}
        gc.collect()
        gc.freeze()
        times = bench_mlp.paired_rounds(steps, rounds=21, steps=300)
        med = {name: statistics.median(t) * 1e6 for name, t in times.items()}
        for name, us in med.items():
            print(f"{name:11s} {us:8.1f} us/step   {med['numpy'] / us:5.3f}x NumPy's speed")
        print(f"engine Python cost (xpgrad - array work): {med['xpgrad'] - med['array work']:.1f} us/step")
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [steps["xpgrad"]() for _ in range(100)])
        calls = sum(entry[1] for entry in pstats.Stats(profiler).stats.values()) / 100
        print(f"Python-level calls per xpgrad step (cProfile): {calls:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
