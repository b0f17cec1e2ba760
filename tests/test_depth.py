"""Depth: chains far deeper than any recursion limit build, backpropagate and free.

* 10**6 ops in a subprocess (so a C-stack overflow, which kills the process with SIGSEGV, is
  caught as a failure, not a crash of the test run), with Python's recursion limit lowered to
  250 so that any recursion in the engine would raise: forward, backward with the exact
  gradient, a second chain freed by reference counting *without* a backward pass, and a third
  kept with retain_graph and then dropped.
* 10**5 ops in-process: backward, `xg.grad`, retain_graph twice, freeing, and second order
  through a deep chain with 10**5-fold fan-out of one leaf (exact integer results).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

import xpgrad as xg

ROOT = Path(__file__).resolve().parent.parent
FACTOR = 1.0000001

DEEP_SCRIPT = textwrap.dedent("""
    import gc, sys, time, weakref
    import numpy as np
    import xpgrad as xg

    N = 10**6
    FACTOR = 1.0000001
    gc.disable()
    sys.setrecursionlimit(250)   # any recursion in build, backward or free would raise

    def chain(n, op):
        x = xg.tensor(1.0, dtype="float64", requires_grad=True)
        y = x
        for _ in range(n):
            y = op(y)
        return x, y

    t0 = time.perf_counter()
    x, y = chain(N, lambda v: v * FACTOR)
    t1 = time.perf_counter()
    y.backward()
    t2 = time.perf_counter()
    expected = 1.0
    for _ in range(N):          # the same products in the same order as the backward pass
        expected *= FACTOR
    print("MUL_GRAD", repr(x.grad.item()), repr(expected), flush=True)
    del y
    t3 = time.perf_counter()
    print(f"TIMES forward {t1 - t0:.2f} backward {t2 - t1:.2f} free {t3 - t2:.2f}", flush=True)

    # a chain never backpropagated: freeing it is a 10**6-long reference-count cascade
    x, y = chain(N, lambda v: v + 1.0)
    last = weakref.ref(y._node)
    t4 = time.perf_counter()
    del y
    print("UNUSED_FREED", last() is None, f"{time.perf_counter() - t4:.2f}", flush=True)

    # retain_graph: two backward passes, then drop the graph
    x, y = chain(N, lambda v: v - 0.5)
    y.backward(retain_graph=True)
    y.backward()
    node = weakref.ref(y._node)
    del y
    print("RETAINED", repr(x.grad.item()), node() is None, flush=True)
    print("DONE", flush=True)
""")


@pytest.mark.slow
def test_million_deep_chain_in_a_subprocess():
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", DEEP_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    elapsed = time.perf_counter() - start
    out = proc.stdout
    assert proc.returncode == 0, (
        f"the 10**6-deep chain process died with status {proc.returncode}"
        f"{' (SIGSEGV: C stack overflow)' if proc.returncode == -11 else ''}\nstdout:\n{out}"
        f"\nstderr:\n{proc.stderr[-3000:]}"
    )
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert "DONE" in lines, out
    got, expected = float(lines["MUL_GRAD"][0]), float(lines["MUL_GRAD"][1])
    assert got == expected, f"d(x * c**N)/dx: {got!r} != {expected!r}"
    assert abs(got - np.exp(0.1)) < 1e-7  # 1.0000001**1e6 = e**0.1 (to 5e-9)
    assert lines["UNUSED_FREED"][0] == "True", out
    assert lines["RETAINED"] == ["2.0", "True"], out
    print(
        f"\ndepth 10**6 subprocess: {elapsed:.1f} s; {' '.join(lines['TIMES'])}; "
        f"unused chain freed in {lines['UNUSED_FREED'][1]} s"
    )


def _chain(n, op, x=None):
    x = xg.tensor(1.0, dtype="float64", requires_grad=True) if x is None else x
    y = x
    for _ in range(n):
        y = op(y)
    return x, y


def test_hundred_thousand_deep_in_process():
    n = 10**5
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)
    try:
        x, y = _chain(n, lambda v: v * FACTOR)
        head = weakref.ref(y._node)
        (g,) = xg.grad(y, [x], retain_graph=True)
        expected = 1.0
        for _ in range(n):
            expected *= FACTOR
        assert g.item() == expected
        y.backward(retain_graph=True)
        y.backward()
        assert x.grad.item() == 2 * expected
        del y
        assert head() is None

        x, y = _chain(n, lambda v: xg.tanh(v) + v)  # a deep chain through a non-trivial node
        y.backward()
        assert np.isfinite(x.grad.item()) and x.grad.item() > 1.0

        gc.disable()
        try:
            x, y = _chain(n, lambda v: v + 1.0)  # freed without backward, no cyclic GC
            tail = weakref.ref(y._node)
            del y
            assert tail() is None
        finally:
            gc.enable()
    finally:
        sys.setrecursionlimit(limit)


def test_second_order_through_a_deep_chain_with_wide_fan_out():
    """y = x**N built as N-1 multiplications by the same leaf: dy/dx = N, d2y/dx2 = N(N-1) at x=1."""
    n = 20_000
    x = xg.tensor(1.0, dtype="float64", requires_grad=True)
    _, y = _chain(n - 1, lambda v: v * x, x=x)
    (g,) = xg.grad(y, [x], create_graph=True)
    assert g.item() == n
    (h,) = xg.grad(g, [x])
    assert h.item() == n * (n - 1)
