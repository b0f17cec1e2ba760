"""Memory soak: 10,000 training steps with the cyclic garbage collector off.

A small MLP (2-64-64-3, batch 64) built from `xg.linear`, `xg.relu` and
`xg.softmax_cross_entropy` is trained on the cs231n spiral with hand-written SGD on the raw
parameter arrays. The cyclic GC is disabled for the whole run (`gc.disable()` in
try/finally), so every graph must be freed by reference counting alone. Stated bounds:

* **live tensors**: the number of live `Tensor` objects (counted with `gc.get_objects()` at
  11 checkpoints) is the same at every checkpoint and exactly what was alive before the soak
  plus the 6 parameters and the batch (x, labels): nothing from any step survives it;
* **live nodes**: no graph `Node` from the soak is alive at any checkpoint;
* **RSS**: process resident memory (from /proc/self/statm) grows by at most
  ``RSS_BOUND_MIB`` = 8 MiB from the checkpoint after 1,000 warm-up steps to the end (one leaked
  step graph here is about 70 KiB, so a leak of one graph per step would be about 600 MiB);
* **freed at once**: weak references to the loss tensor, its node, and an interior activation
  taken inside a step are dead as soon as the step returns;
* **no cycles**: after the run, a full collection finds no Tensor or Node that only the cyclic
  GC could free.
"""

from __future__ import annotations

import gc
import os
import time
import weakref

import numpy as np
import pytest

import xpgrad as xg
from xpgrad.autograd import Node

STEPS = 10_000
WARMUP = 1_000
CHECKPOINTS = 11
RSS_BOUND_MIB = 8.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def live(kind) -> int:
    return sum(1 for o in gc.get_objects() if issubclass(type(o), kind))  # type(): no __class__ proxies


def spiral_batch(n_per_class=64 // 3 + 1, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    r = np.tile(np.linspace(0.0, 1.0, n_per_class), classes)
    theta = 4.0 * (y + r) + 0.2 * rng.standard_normal(len(y))
    x = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
    return x[:64].astype(np.float32), y[:64].astype(np.int64)


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    sizes = [2, 64, 64, 3]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        W = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        params.append(xg.tensor(W, dtype="float32", requires_grad=True))
        params.append(xg.tensor(np.zeros(fan_out), dtype="float32", requires_grad=True))
    return params


def step(params, x, y, lr=0.1, probe=False):
    """One SGD step; with probe=True, weak references into this step's graph are returned."""
    W1, b1, W2, b2, W3, b3 = params
    h1 = xg.relu(xg.linear(x, W1, b1))
    h2 = xg.relu(xg.linear(h1, W2, b2))
    loss = xg.softmax_cross_entropy(xg.linear(h2, W3, b3), y)
    loss.backward()
    for p in params:  # hand-written SGD on the raw arrays
        p.data -= lr * p.grad.data
        p.grad = None
    value = float(loss.item())
    if probe:
        return value, [weakref.ref(loss), weakref.ref(loss._node), weakref.ref(h1), weakref.ref(h1._node)]
    return value, None


@pytest.mark.slow
def test_soak_10000_steps_stay_flat_with_the_cyclic_gc_off():
    gc.collect()
    base_tensors, base_nodes = live(xg.Tensor), live(Node)  # whatever other tests left alive
    xb, yb = spiral_batch()
    x, y = xg.tensor(xb), xg.tensor(yb)
    params = make_params()
    checkpoints = np.linspace(WARMUP, STEPS, CHECKPOINTS).astype(int)
    tensors_at, nodes_at, rss_at, losses = [], [], [], []
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    try:
        for i in range(1, STEPS + 1):
            value, refs = step(params, x, y, probe=(i % 997 == 0))
            if i == 1:
                first_loss = value
            if refs is not None:
                assert all(r() is None for r in refs), f"step {i}: the step's graph outlived the step"
            if i in checkpoints:
                tensors_at.append(live(xg.Tensor))
                nodes_at.append(live(Node))
                rss_at.append(rss_bytes())
                losses.append(value)
        elapsed = time.perf_counter() - start
        # nothing was left for the cyclic collector: collect with SAVEALL and look at what it found
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        cyclic = [o for o in gc.garbage if isinstance(o, (xg.Tensor, Node))]
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
        if was_enabled:
            gc.enable()

    growth_mib = (rss_at[-1] - rss_at[0]) / 2**20
    print(
        f"\nsoak: {STEPS} steps in {elapsed:.1f} s; live tensors {tensors_at}; live nodes {nodes_at}; "
        f"RSS {rss_at[0] / 2**20:.1f} -> {rss_at[-1] / 2**20:.1f} MiB (growth {growth_mib:+.2f} MiB, "
        f"max {max(rss_at) / 2**20:.1f}); loss {first_loss:.3f} -> {losses[-1]:.3f}"
    )
    assert len(set(tensors_at)) == 1, f"live Tensor count changed between checkpoints: {tensors_at}"
    assert tensors_at[0] == base_tensors + len(params) + 2, (
        f"{tensors_at[0] - base_tensors} live tensors from the soak; expected the {len(params)} params + the batch"
    )
    assert nodes_at == [base_nodes] * CHECKPOINTS, (
        f"graph nodes alive at checkpoints: {nodes_at} (before: {base_nodes})"
    )
    assert (max(rss_at) - rss_at[0]) / 2**20 <= RSS_BOUND_MIB, (
        f"RSS grew by {(max(rss_at) - rss_at[0]) / 2**20:.2f} MiB over {STEPS - WARMUP} steps "
        f"(bound {RSS_BOUND_MIB} MiB): {[round(r / 2**20, 1) for r in rss_at]}"
    )
    assert not cyclic, f"{len(cyclic)} tensors/nodes were only collectable by the cyclic GC"
    assert losses[-1] < 0.2 * first_loss, f"training did not progress: loss {first_loss} -> {losses[-1]}"


def test_retained_and_second_order_graphs_are_freed_by_reference_counting():
    """retain_graph=True keeps a graph only while the output is referenced; create_graph results
    from xg.grad form no reference cycles."""
    gc.collect()
    base_nodes = live(Node)
    gc.disable()
    try:
        x = xg.tensor(np.linspace(-1, 1, 8), dtype="float64", requires_grad=True)
        refs = []
        for _ in range(200):
            y = (xg.sigmoid(x) * xg.tanh(x)).sum()
            y.backward(retain_graph=True)
            refs.append(weakref.ref(y._node))
            (g,) = xg.grad(y, [x], create_graph=True)
            (h,) = xg.grad(g.sum(), [x])
            refs.append(weakref.ref(g._node))
            del y, g, h
        x.grad = None
        assert all(r() is None for r in refs), f"{sum(r() is not None for r in refs)} graphs still alive"
        assert live(Node) == base_nodes
    finally:
        gc.enable()


def test_a_failing_op_leaks_nothing():
    """Errors raised inside ops (shape errors, label errors) leave no graph behind."""
    gc.collect()
    base_nodes = live(Node)
    gc.disable()
    try:
        a = xg.tensor(np.ones((2, 3)), requires_grad=True)
        b = xg.tensor(np.ones((4, 5)), requires_grad=True)
        before = live(xg.Tensor)
        for _ in range(500):
            try:
                (a * 2.0) + b
            except xg.ShapeError:
                pass
            try:
                xg.softmax_cross_entropy(a * 1.0, xg.tensor(np.array([0, 9])))
            except xg.LabelError:
                pass
        assert live(xg.Tensor) == before
        assert live(Node) == base_nodes
    finally:
        gc.enable()
