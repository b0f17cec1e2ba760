"""Benchmarks on the GPU: `XPGRAD_BACKEND=cupy xpgrad bench kernels` and `... bench mlp`.

Kernels: each `numba.cuda` kernel against the same formula written as unfused CuPy expressions
and against the device's copy bandwidth, measured in the same run (an elementwise copy: one read
and one write per element). MLP: configs (a), (b) and (c) of `xpgrad bench mlp`, steps/s of
xpgrad on CuPy (eager, and replayed under `xg.capture`) against the same step hand-written in CuPy and,
when installed, PyTorch CUDA
eager, in paired rounds. Every timed stretch ends with a device synchronize, so asynchronous
launches are paid for in full.

Both run on any `Device`: `Device("numpy")` takes the CPU kernels and NumPy, which is how CI
checks that this code still runs on machines with no GPU (`tests/test_bench_gpu.py`).
"""

from __future__ import annotations

import platform
import statistics

import numpy as np

from . import bench_mlp

KERNEL_SIZES = (1 << 20, 1 << 24)
MLP_CONFIGS = ("a", "b", "c")
F = 4  # bytes per float32


class Device:
    """The array library, the kernels and the synchronize of one place to benchmark on."""

    def __init__(self, name: str = "cupy"):
        self.name = name
        if name == "cupy":
            import cupy

            from .kernels import cuda as kernels

            self.xp, self.kernels = cupy, kernels
        elif name == "numpy":
            from . import kernels

            self.xp, self.kernels = np, kernels
        else:
            raise ValueError(f"bench_gpu.Device: expected 'cupy' or 'numpy', got {name!r}")

    def sync(self) -> None:
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def describe(self) -> dict:
        info = {"python": platform.python_version(), "numpy": np.__version__, "device": self.name}
        if self.name == "cupy":
            cupy = self.xp
            props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            name = props["name"]
            info.update(
                gpu=name.decode() if isinstance(name, bytes) else str(name),
                cupy=cupy.__version__,
                cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                cuda_driver=cupy.cuda.runtime.driverGetVersion(),
            )
        return info


def _paired(device: Device, fns: dict, rounds: int, seconds: float = 0.02) -> dict:
    """{name: [seconds per call, one per round]}: `bench_mlp.paired_rounds` over batches of calls
    that end in a device synchronize, so asynchronous launches are paid for in full."""
    calls = {name: bench_mlp.steps_per_round(lambda fn=fn: _synced(device, fn, 1), seconds) for name, fn in fns.items()}
    batches = {name: (lambda fn=fn, n=calls[name]: _synced(device, fn, n)) for name, fn in fns.items()}
    times = bench_mlp.paired_rounds(batches, rounds=rounds, steps=1, warmup=1)
    return {name: [t / calls[name] for t in samples] for name, samples in times.items()}


def _synced(device: Device, fn, calls: int) -> None:
    for _ in range(calls):
        fn()
    device.sync()


# ---- kernels -------------------------------------------------------------------------------


def kernel_cases(device: Device, n: int, seed: int = 0):
    """(name, bytes moved, kernel call, unfused call) of every kernel at about n float32 elements."""
    xp, k = device.xp, device.kernels
    rng = np.random.default_rng(seed)

    def rand(*shape, low=0.0, high=1.0):
        return xp.asarray(rng.random(shape, dtype=np.float32) * np.float32(high - low) + np.float32(low))

    y, dy, out = rand(n), rand(n), xp.empty(n, xp.float32)
    yield "sigmoid_backward", 3 * F * n, lambda: k.sigmoid_backward(y, dy, out), lambda: dy * y * (1 - y)
    cols = 1024
    rows = max(1, n // cols)
    y2, dy2, out2, b = rand(rows, cols), rand(rows, cols, low=-1), xp.empty((rows, cols), xp.float32), rand(cols)
    yield (
        "bias_act_backward[relu]",
        3 * F * rows * cols,
        lambda: k.bias_act_backward(y2, dy2, "relu", out2),
        lambda: xp.where(y2 > 0, dy2, 0).sum(axis=0),
    )
    yield (
        "bias_act_forward[relu]",
        2 * F * rows * cols,
        lambda: k.bias_act_forward(dy2, b, "relu", out2),
        lambda: xp.maximum(dy2 + b, 0),
    )
    classes = 10
    rows = max(1, n // classes)
    logits = rand(rows, classes, low=-5, high=5)
    labels = xp.asarray(rng.integers(0, classes, rows))
    probs = xp.empty((rows, classes), xp.float32)
    k.softmax_xent_forward(logits, labels, probs)
    grad = xp.empty_like(probs)
    index = xp.arange(rows)

    def softmax_backward_unfused():
        g = probs * 0.01
        g[index, labels] -= 0.01
        return g

    yield (
        "softmax_xent_backward",
        2 * F * rows * classes + 8 * rows,
        lambda: k.softmax_xent_backward(probs, labels, 0.01, grad),
        softmax_backward_unfused,
    )
    param, g, vel = rand(n), rand(n, low=-1), xp.zeros(n, xp.float32)
    m, v = xp.zeros(n, xp.float32), xp.zeros(n, xp.float32)

    def sgd_unfused():
        vel[...] = 0.9 * vel + g
        param[...] -= 1e-3 * vel

    def adam_unfused():
        m[...] += 0.1 * (g - m)
        v[...] = 0.999 * v + 0.001 * g * g
        param[...] -= 1e-3 * m / (xp.sqrt(v) + 1e-8)

    yield ("sgd_update[momentum]", 4 * F * n, lambda: k.sgd_update(param, g, vel, 1e-3, 0.9, 0.0, False), sgd_unfused)
    yield (
        "adam_update",
        6 * F * n,
        lambda: k.adam_update(param, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 10),
        adam_unfused,
    )


def run_kernels(device: Device, sizes=KERNEL_SIZES, rounds: int = 7) -> dict:
    """Every kernel at every size: median time, GB/s, % of the copy bandwidth, speed-up over unfused."""
    xp = device.xp
    rows = []
    for n in sizes:
        src, dst = xp.ones(n, xp.float32), xp.empty(n, xp.float32)

        def copy():
            dst[...] = src

        for name, nbytes, kernel, unfused in kernel_cases(device, n):
            t = _paired(device, {"kernel": kernel, "unfused": unfused, "copy": copy}, rounds)
            med = {key: statistics.median(v) for key, v in t.items()}
            gbps, copy_gbps = nbytes / med["kernel"] / 1e9, 2 * F * n / med["copy"] / 1e9
            rows.append(
                {
                    "kernel": name,
                    "size": n,
                    "bytes": nbytes,
                    "median_s": med["kernel"],
                    "gbps": gbps,
                    "copy_gbps": copy_gbps,
                    "pct_copy": 100 * gbps / copy_gbps,
                    "unfused_median_s": med["unfused"],
                    "speedup": med["unfused"] / med["kernel"],
                    "spread": (max(t["kernel"]) - min(t["kernel"])) / med["kernel"],
                }
            )
    return {"environment": device.describe(), "results": rows}


def format_kernels(result: dict) -> str:
    head = f"{'kernel':<26}{'size':>10}{'median':>12}{'GB/s':>9}{'copy GB/s':>11}{'% copy':>8}{'vs unfused':>12}"
    lines = [head, "-" * len(head)]
    for r in result["results"]:
        lines.append(
            f"{r['kernel']:<26}{r['size']:>10.0e}{r['median_s'] * 1e6:>10.1f}us{r['gbps']:>9.1f}"
            f"{r['copy_gbps']:>11.1f}{r['pct_copy']:>7.0f}%{r['speedup']:>11.2f}x"
        )
    return "\n".join(lines)


# ---- MLP training steps --------------------------------------------------------------------


def xpgrad_step_on(device: Device, cfg: dict):
    """`bench_mlp.xpgrad_step_fn` with its model and batch made on `device`'s backend."""
    import xpgrad as xg

    with xg.use_backend(device.name):
        return bench_mlp.xpgrad_step_fn(cfg)


def run_mlp(device: Device, configs=MLP_CONFIGS, rounds: int = 9) -> dict:
    """Steps/s of xpgrad, the hand-written step and PyTorch eager (CUDA on a GPU), paired rounds."""
    out = {"environment": device.describe(), "configs": {}}
    torch_device = "cuda" if device.name == "cupy" else "cpu"
    for key in configs:
        cfg = bench_mlp.CONFIGS[key]
        fns = {
            "hand_written": bench_mlp.numpy_step_fn(cfg, xp=device.xp),
            "xpgrad": xpgrad_step_on(device, cfg),
            "captured": bench_mlp.captured_step(xpgrad_step_on(device, cfg)),
        }
        if bench_mlp._torch_available():
            fns["torch"] = bench_mlp.torch_step_fn(cfg, device=torch_device)
        times = _paired(device, fns, rounds, seconds=0.1)
        entry = {}
        for name, samples in times.items():
            ratios = [h / s for s, h in zip(samples, times["hand_written"])]
            entry[name] = {
                "steps_per_s": 1 / statistics.median(samples),
                "ratio_to_hand_written": statistics.median(ratios),
                "ratio_range": [min(ratios), max(ratios)],
            }
        out["configs"][key] = entry
    return out


def format_mlp(result: dict) -> str:
    head = f"{'config':<8}{'contender':<14}{'steps/s':>12}{'x hand-written':>16}{'range':>16}"
    lines = [head, "-" * len(head)]
    for key, entry in result["configs"].items():
        for name, r in entry.items():
            low, high = r["ratio_range"]
            lines.append(
                f"{key:<8}{name:<14}{r['steps_per_s']:>12,.0f}{r['ratio_to_hand_written']:>15.2f}x"
                f"{f'{low:.2f}-{high:.2f}':>16}"
            )
    return "\n".join(lines)


# ---- entry points (xpgrad bench kernels / mlp under XPGRAD_BACKEND=cupy) --------------------


def _report(result: dict, text: str, json_path) -> int:
    print(", ".join(f"{k}: {v}" for k, v in result["environment"].items()))
    print(text)
    if json_path:
        bench_mlp.write_json(result, json_path)
    return 0


def cli_kernels(sizes=None, json_path=None, device: str = "cupy") -> int:
    """`xpgrad bench kernels` when the backend is CuPy."""
    result = run_kernels(Device(device), tuple(sizes or KERNEL_SIZES))
    return _report(result, format_kernels(result), json_path)


def cli_mlp(json_path=None, device: str = "cupy") -> int:
    """`xpgrad bench mlp` when the backend is CuPy."""
    result = run_mlp(Device(device))
    return _report(result, format_mlp(result), json_path)
