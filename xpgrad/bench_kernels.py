"""`xpgrad bench kernels`: the CPU Numba kernels against the unfused NumPy expressions.

For each kernel and size: the median time of the kernel (outputs into reused buffers), its
bandwidth from the bytes it must move, that bandwidth as a percentage of a triad
`a[:] = b + s*c` (a Numba kernel, same size, same threads) and the speed-up over the plain NumPy
expression in `xpgrad.kernels.reference` (fresh temporaries, as written in user code). Kernel,
NumPy and triad calls are interleaved round by round, so machine noise hits them alike.
float32 throughout; sizes count elements, the 2-D kernels use (size // 1024, 1024), softmax
(size // 10, 10), scatter-add (size // 64, 64) rows into a (1000, 64) table.

threads=1 (the default) runs the serial kernels; threads=N > 1 sets Numba to N threads and puts
every size on the parallel kernels (`kernels.set_parallel(0)`) to show where they pay off.
Imports only numpy, numba and xpgrad.kernels (plus the standard library).
"""

import gc
import json
import platform
import statistics
import time
from collections import namedtuple

import numba
import numpy as np
from numba import prange

from xpgrad import kernels
from xpgrad.kernels import reference
from xpgrad.kernels._cache import cached_njit

DEFAULT_SIZES = (10**4, 10**5, 10**6, 4096 * 1024, 10**7, 3 * 10**7)
COLS, CLASSES, EMBED_ROWS, EMBED_COLS = 1024, 10, 1000, 64
ROUND_BUDGET_S = 0.4  # time spent per kernel and size, all rounds together
MIN_ROUNDS, MAX_ROUNDS = 5, 200
F = 4  # bytes per float32

Case = namedtuple("Case", "name shape bytes kernel numpy")


@cached_njit()
def _triad(a, b, c, s):
    for i in range(a.size):
        a[i] = b[i] + s * c[i]


@cached_njit(parallel=True)
def _triad_parallel(a, b, c, s):
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


def cases(n, rng):
    """Yield the benchmark Case of every kernel at about n float32 elements (bytes: must-move
    traffic, each array read or written once; labels/indices counted at 8 bytes)."""

    def rand(*shape, low=0.0, high=1.0):
        return rng.random(shape, dtype=np.float32) * np.float32(high - low) + np.float32(low)

    y, dy, out = rand(n), rand(n), np.empty(n, np.float32)
    yield Case(
        "sigmoid_backward",
        (n,),
        3 * F * n,
        lambda: kernels.sigmoid_backward(y, dy, out),
        lambda: reference.sigmoid_backward(y, dy),
    )

    rows = max(1, n // COLS)
    y2, dy2, out2, b = rand(rows, COLS), rand(rows, COLS, low=-1), np.empty((rows, COLS), np.float32), rand(COLS)
    for act in ("sigmoid", "relu"):
        yield Case(
            f"bias_act_backward[{act}]",
            (rows, COLS),
            3 * F * rows * COLS,
            lambda act=act: kernels.bias_act_backward(y2, dy2, act, out2),
            lambda act=act: reference.bias_act_backward(y2, dy2, act),
        )
    for act in ("sigmoid", "relu"):
        yield Case(
            f"bias_act_forward[{act}]",
            (rows, COLS),
            2 * F * rows * COLS,
            lambda act=act: kernels.bias_act_forward(dy2, b, act, out2),
            lambda act=act: reference.bias_act_forward(dy2, b, act),
        )

    rows = max(1, n // CLASSES)
    logits, probs = rand(rows, CLASSES, low=-5, high=5), np.empty((rows, CLASSES), np.float32)
    labels = rng.integers(0, CLASSES, rows)
    kernels.softmax_xent_forward(logits, labels, probs)
    grad = np.empty_like(probs)
    yield Case(
        "softmax_xent_forward",
        (rows, CLASSES),
        2 * F * rows * CLASSES + 8 * rows,
        lambda: kernels.softmax_xent_forward(logits, labels, probs),
        lambda: reference.softmax_xent_forward(logits, labels),
    )
    yield Case(
        "softmax_xent_backward",
        (rows, CLASSES),
        2 * F * rows * CLASSES + 8 * rows,
        lambda: kernels.softmax_xent_backward(probs, labels, 0.01, grad),
        lambda: reference.softmax_xent_backward(probs, labels, 0.01),
    )

    param, g, vel, m, v = (
        rand(n),
        rand(n, low=-1),
        np.zeros(n, np.float32),
        np.zeros(n, np.float32),
        np.zeros(n, np.float32),
    )
    vel_ref = vel.copy()
    yield Case(
        "sgd_update[momentum]",
        (n,),
        5 * F * n,
        lambda: kernels.sgd_update(param, g, vel, 1e-3, 0.9, 1e-4, False),
        lambda: reference.sgd_update(param, g, vel_ref, 1e-3, 0.9, 1e-4, False),
    )
    yield Case(
        "adam_update",
        (n,),
        7 * F * n,
        lambda: kernels.adam_update(param, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-4, 10),
        lambda: reference.adam_update(param, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-4, 10),
    )

    rows = max(1, n // EMBED_COLS)
    table, values = np.zeros((EMBED_ROWS, EMBED_COLS), np.float32), rand(rows, EMBED_COLS)
    indices = rng.integers(0, EMBED_ROWS, rows)
    yield Case(
        "scatter_add",
        (rows, EMBED_COLS),
        3 * F * rows * EMBED_COLS + 8 * rows,
        lambda: kernels.scatter_add(table, indices, values),
        lambda: reference.scatter_add(table, indices, values),
    )


def _time(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _interleaved_medians(fns):
    """Median seconds of each function over rounds that call them back to back."""
    for fn in fns:
        fn()  # compile / warm up outside the timing
    first = [_time(fn) for fn in fns]
    rounds = min(MAX_ROUNDS, max(MIN_ROUNDS, int(ROUND_BUDGET_S / sum(first))))
    samples = [[] for _ in fns]
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for fn, times in zip(fns, samples):
                times.append(_time(fn))
    finally:
        gc.enable()
    return [statistics.median(t) for t in samples], rounds


def _triad_call(n, threads):
    a, b, c = np.empty(n, np.float32), np.ones(n, np.float32), np.ones(n, np.float32)
    kernel = _triad_parallel if threads > 1 else _triad
    return lambda: kernel(a, b, c, np.float32(3.0))


def measure(sizes=DEFAULT_SIZES, threads=1, seed=0):
    """Benchmark every kernel at every size; returns one dict per (kernel, size)."""
    rows = []
    for n in sizes:
        triad = _triad_call(n, threads)
        for case in cases(n, np.random.default_rng(seed)):
            (t_kernel, t_numpy, t_triad), rounds = _interleaved_medians((case.kernel, case.numpy, triad))
            gbps, triad_gbps = case.bytes / t_kernel / 1e9, 3 * F * n / t_triad / 1e9
            rows.append(
                {
                    "kernel": case.name,
                    "size": n,
                    "shape": list(case.shape),
                    "dtype": "float32",
                    "threads": threads,
                    "rounds": rounds,
                    "bytes": case.bytes,
                    "median_s": t_kernel,
                    "gbps": gbps,
                    "triad_gbps": triad_gbps,
                    "pct_triad": 100 * gbps / triad_gbps,
                    "numpy_median_s": t_numpy,
                    "speedup": t_numpy / t_kernel,
                }
            )
    return rows


def measure_engine_sigmoid(n=10**7, rounds=30, threads=1):
    """The engine's own path: `y = xg.sigmoid(x)` then `y.backward(dy)` on n float32 elements.

    Times the backward call alone (forward untimed, `x.grad` cleared each round), against the
    unfused NumPy `dy * y * (1 - y)` and the triad in the same rounds. Bytes: y, dy read, dx written.
    """
    import xpgrad as xg

    rng = np.random.default_rng(0)
    x = xg.tensor(rng.standard_normal(n, dtype=np.float32), requires_grad=True)
    dy = rng.standard_normal(n, dtype=np.float32)
    y_np = 1 / (1 + np.exp(-x.numpy()))
    triad = _triad_call(n, threads)
    samples = {"engine": [], "numpy": [], "triad": []}
    for i in range(rounds + 2):
        y = xg.sigmoid(x)
        x.grad = None
        start = time.perf_counter()
        y.backward(dy)
        engine = time.perf_counter() - start
        numpy_t = _time(lambda: dy * y_np * (1 - y_np))
        triad_t = _time(triad)
        if i >= 2:  # the first rounds compile and fault the pool's pages in
            samples["engine"].append(engine)
            samples["numpy"].append(numpy_t)
            samples["triad"].append(triad_t)
    med = {k: statistics.median(v) for k, v in samples.items()}
    gbps = 3 * F * n / med["engine"] / 1e9
    triad_gbps = 3 * F * n / med["triad"] / 1e9
    return {
        "kernel": "engine: xg.sigmoid backward",
        "size": n,
        "shape": [n],
        "dtype": "float32",
        "threads": threads,
        "rounds": rounds,
        "bytes": 3 * F * n,
        "median_s": med["engine"],
        "gbps": gbps,
        "triad_gbps": triad_gbps,
        "pct_triad": 100 * gbps / triad_gbps,
        "numpy_median_s": med["numpy"],
        "speedup": med["numpy"] / med["engine"],
    }


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def environment(threads):
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run
        layer = "none"
    return {
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "threads": threads,
        "threading_layer": layer,
        "dtype": "float32",
    }


def format_table(rows):
    head = (
        f"{'kernel':<26}{'size':>10}  {'shape':<14}{'MB moved':>9}{'median':>11}{'GB/s':>8}"
        f"{'% triad':>9}{'NumPy':>11}{'speed-up':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['kernel']:<26}{r['size']:>10.0e}  {'x'.join(map(str, r['shape'])):<14}"
            f"{r['bytes'] / 1e6:>9.2f}{_ms(r['median_s']):>11}{r['gbps']:>8.1f}{r['pct_triad']:>8.0f}%"
            f"{_ms(r['numpy_median_s']):>11}{r['speedup']:>9.1f}x"
        )
    return "\n".join(lines)


def _ms(seconds):
    return f"{seconds * 1e3:.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


def run(sizes=None, json_path=None, threads=None):
    """Measure, print the table (and write JSON with the environment); returns the result rows.
    Under the CuPy backend, the CUDA kernels are measured instead (`bench_gpu.cli_kernels`)."""
    from .bench_mlp import _backend_is_cupy

    if _backend_is_cupy():
        from .bench_gpu import cli_kernels

        return cli_kernels(sizes=sizes, json_path=json_path)
    threads = threads or 1
    previous_threads = numba.get_num_threads()
    numba.set_num_threads(threads)
    previous_parallel = kernels.set_parallel(0 if threads > 1 else None)
    try:
        rows = measure(tuple(sizes or DEFAULT_SIZES), threads)
        rows.append(measure_engine_sigmoid(max(sizes or DEFAULT_SIZES), threads=threads))
    finally:
        kernels.set_parallel(previous_parallel)
        numba.set_num_threads(previous_threads)
    env = environment(threads)
    print(", ".join(f"{k}: {v}" for k, v in env.items()))
    print(format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"environment": env, "results": rows}, f, indent=1)
    return rows
