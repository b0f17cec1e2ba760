"""Where an xpgrad training step's time goes, against hand-written NumPy (1 thread).

Times three steps of the same MLP config in paired rounds:
- numpy:      the hand-written step of `xpgrad.bench_mlp.numpy_step_fn`;
- array work: exactly the array calls the xpgrad step makes (GEMMs, the fused kernels through
              their public entry points, the loss and its gradient, pooled buffers where the
              engine pools them), with no tape;
- xpgrad:     `xpgrad.bench_mlp.xpgrad_step_fn`.
xpgrad minus "array work" is the engine's Python cost; "array work" minus numpy is what the
kernels save or lose. Then times the array work and the xpgrad step phase by phase (forward +
loss, zero_grad + backward, optimizer update; paired rounds again), which splits the engine's
cost by phase with less noise than the difference of two whole steps, and counts the
Python-level calls of one xpgrad step (cProfile) and the page faults per step of each (fresh
multi-MB outputs fault on every step).

    python bench/step_breakdown.py            # config (a), float32
    python bench/step_breakdown.py b          # config (b) (ReLU, bias, softmax cross-entropy)
"""

from __future__ import annotations

import cProfile
import pstats
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from xpgrad import bench_mlp, buffers
from xpgrad.autograd import array_fns
from xpgrad.kernels import cpu


class Phases(NamedTuple):
    """A training step in three parts: forward() -> state, backward(state) -> grads, update(grads)."""

    forward: Callable
    backward: Callable
    update: Callable


def array_work_a(cfg: dict, dtype=np.float32) -> Phases:
    """The array calls of the xpgrad step of config (a): bias-free sigmoid layers, squared error."""
    x, y, (W1, W2), _ = bench_mlp._init(cfg, dtype)
    lr = cfg["lr"]
    kept = []  # the gradients, alive until the next backward as .grad is until zero_grad

    def forward():
        h = cpu.bias_act_forward(x @ W1, None, "sigmoid", out=np.empty((x.shape[0], W1.shape[1]), dtype))
        d = h @ W2 - y
        return h, d, np.vdot(d, d) * 1.0  # mse_loss(reduction="sum")

    def backward(state):
        h, d, _ = state
        kept.clear()
        g = d * (np.array(1, dtype) * 2.0)  # its backward: d * (seed * 2)
        dz = cpu.sigmoid_backward(h, g @ W2.T, out=np.empty_like(h))
        kept.extend([(W1, x.T @ dz), (W2, h.T @ g)])
        return kept

    def update(grads):
        for w, gw in grads:
            cpu.sgd_update(w, gw, None, lr, 0.0, 0.0, False)

    return Phases(forward, backward, update)


def array_work_relu_ce(cfg: dict, dtype=np.float32) -> Phases:
    """The array calls of the xpgrad step of configs (b) and (c): ReLU layers with biases,
    softmax cross-entropy; outputs from the buffer pool where the engine takes them from it."""
    x, y, W, B = bench_mlp._init(cfg, dtype)
    lr, last = cfg["lr"], len(W) - 1
    F = array_fns(x)
    kept = []  # the gradients, alive until the next backward as .grad is until zero_grad

    def forward():
        acts = [x]
        for i, w in enumerate(W):
            z = F.matmul(acts[-1], w)
            if i < last:
                acts.append(cpu.bias_act_forward(z, B[i], "relu", out=buffers.empty_like(z)))
            else:
                z += B[i]
        loss, probs = cpu.softmax_xent_forward(z, y, out=buffers.empty_like(z))
        return acts, probs, loss

    def backward(state):
        acts, probs, _ = state
        kept.clear()
        g = cpu.softmax_xent_backward(probs, y, 1.0 / x.shape[0], out=buffers.empty_like(probs))
        db = g.sum(axis=0)
        for i in range(last, -1, -1):
            kept.extend([(W[i], F.matmul(acts[i].T, g)), (B[i], db)])
            if i > 0:
                g, db = cpu.bias_act_backward(acts[i], F.matmul(g, W[i].T), "relu", dz_out=buffers.empty_like(acts[i]))
        return kept

    def update(grads):
        for p, gp in grads:
            cpu.sgd_update(p, gp, None, lr)

    return Phases(forward, backward, update)


def xpgrad_phases(cfg: dict, dtype=np.float32) -> Phases:
    """The xpgrad step of `bench_mlp.xpgrad_step_fn` cut into the same three phases."""
    model, X, Y, loss_fn, optimizer = bench_mlp.xpgrad_training_parts(cfg, dtype)

    def backward(loss):
        optimizer.zero_grad()
        loss.backward()

    return Phases(lambda: loss_fn(model(X), Y), backward, lambda _: optimizer.step())


def whole_step(phases: Phases):
    """The three phases as one step function."""
    forward, backward, update = phases
    return lambda: update(backward(forward()))


def phase_rounds(contenders: dict, rounds: int, steps: int) -> dict:
    """us per step of each phase: {name: [[forward, backward, update] per round]}, interleaved."""
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, (forward, backward, update) in contenders.items():
            spent = [0.0, 0.0, 0.0]
            for _ in range(steps):
                t0 = time.perf_counter()
                state = forward()
                t1 = time.perf_counter()
                grads = backward(state)
                t2 = time.perf_counter()
                update(grads)
                t3 = time.perf_counter()
                spent[0] += t1 - t0
                spent[1] += t2 - t1
                spent[2] += t3 - t2
            times[name].append([t * 1e6 / steps for t in spent])
    return times


ARRAY_WORK = {"a": array_work_a, "b": array_work_relu_ce, "c": array_work_relu_ce}


def _faults_per_step(steps: dict, per_round: int, rounds: int = 3) -> dict:
    counts = dict.fromkeys(steps, 0)
    for _ in range(rounds):
        for name, step in steps.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(per_round):
                step()
            counts[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return {name: n / (rounds * per_round) for name, n in counts.items()}


def main(config: str = "a") -> int:
    cfg = bench_mlp.CONFIGS[config]
    with bench_mlp.pinned_threads(1):
        array_work, xpgrad = ARRAY_WORK[config](cfg), xpgrad_phases(cfg)
        steps = {
            "numpy": bench_mlp.numpy_step_fn(cfg),
            "array work": whole_step(array_work),
            "xpgrad": bench_mlp.xpgrad_step_fn(cfg),
        }
        per_round = bench_mlp.steps_per_round(steps["numpy"])
        bench_mlp.quiet_gc()
        times = bench_mlp.paired_rounds(steps, rounds=21, steps=per_round)
        med = {name: statistics.median(t) * 1e6 for name, t in times.items()}
        for name, us in med.items():
            print(f"{name:11s} {us:10.1f} us/step   {med['numpy'] / us:5.3f}x NumPy's speed")
        print(f"engine Python cost (xpgrad - array work): {med['xpgrad'] - med['array work']:.1f} us/step")
        phases = phase_rounds({"array work": array_work, "xpgrad": xpgrad}, rounds=21, steps=per_round)
        for name, rows in phases.items():
            print(
                f"{name:11s} "
                + "  ".join(
                    f"{phase} {statistics.median(r[k] for r in rows):8.1f} us" for k, phase in enumerate(Phases._fields)
                )
            )
        diffs = [[x - a for x, a in zip(rx, ra)] for rx, ra in zip(phases["xpgrad"], phases["array work"])]
        print(
            "engine cost by phase (per-round median of xpgrad - array work): "
            + ", ".join(
                f"{phase} {statistics.median(d[k] for d in diffs):.1f} us" for k, phase in enumerate(Phases._fields)
            )
        )
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [steps["xpgrad"]() for _ in range(100)])
        calls = sum(entry[1] for entry in pstats.Stats(profiler).stats.values()) / 100
        print(f"Python-level calls per xpgrad step (cProfile): {calls:.0f}")
        faults = _faults_per_step(steps, per_round)
        print("page faults per step: " + ", ".join(f"{name} {n:.1f}" for name, n in faults.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
