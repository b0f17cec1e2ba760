"""Engine-speed benchmarks: per-op overhead and MLP training steps, xpgrad vs hand-written NumPy.

Everything is measured in one process and one run, paired round by round: each round times
k steps of every contender back to back, so machine noise hits them alike; the tables give the
median over rounds and the spread (interquartile range over median). `xpgrad bench mlp` and
`xpgrad bench overhead` print them; `--json` saves them, `--plot` draws steps/s per config.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import os
import platform
import statistics
import time

import numpy as np

# ---- threads -------------------------------------------------------------------------------


@contextlib.contextmanager
def pinned_threads(n: int):
    """Limit BLAS (threadpoolctl) and Numba to `n` threads inside the block."""
    import numba
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(previous)


def quiet_gc():
    """Move import-time objects out of the collector's way (torch alone has ~150k)."""
    gc.collect()
    gc.freeze()


# ---- timing --------------------------------------------------------------------------------


def paired_rounds(contenders: dict, rounds: int, steps: int, warmup: int = 2) -> dict:
    """Time `steps` calls of each contender per round, contenders interleaved within a round.

    Returns {name: [seconds per step, one entry per round]}.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - start) / steps)
    return times


def summarize(samples: list) -> dict:
    """Median and relative interquartile spread of per-round samples."""
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    med = statistics.median(samples)
    return {"median_s": med, "spread": (q[2] - q[0]) / med if med else 0.0}


def _ratio_stats(numer: list, denom: list) -> dict:
    ratios = [d / n for n, d in zip(numer, denom)]  # speed ratio = t_denom / t_numer per round
    return summarize(ratios)


# ---- per-op overhead -----------------------------------------------------------------------


class RefValue:
    """A minimal reference tape (about 30 lines, micrograd-style closures) to measure against."""

    __slots__ = ("data", "grad", "parents", "backward_fn")

    def __init__(self, data, parents=(), backward_fn=None):
        self.data, self.grad, self.parents, self.backward_fn = data, 0.0, parents, backward_fn

    def __add__(self, other):
        out = RefValue(self.data + other, (self,))
        out.backward_fn = lambda g: ((self, g),)
        return out

    def __mul__(self, other):
        out = RefValue(self.data * other, (self,))
        out.backward_fn = lambda g: ((self, g * other),)
        return out

    def backward(self):
        order, seen, stack = [], set(), [self]
        while stack:
            v = stack.pop()
            if id(v) not in seen:
                seen.add(id(v))
                order.append(v)
                stack.extend(v.parents)
        self.grad = np.ones_like(self.data)
        for v in order:  # a chain: discovery order is topological
            if v.backward_fn is not None:
                for parent, g in v.backward_fn(v.grad):
                    parent.grad = parent.grad + g


def _chain(y, length: int):
    """`length` alternating mul/add ops on `y` (any value type with * and +)."""
    for _ in range(length // 2):
        y = y * 1.0001
        y = y + 0.5
    return y


def _chain_xpgrad(length: int):
    import xpgrad as xg

    x = xg.tensor(np.ones(1), requires_grad=True)

    def run():
        x.grad = None
        _chain(x, length).backward(np.ones(1))

    return run


def _chain_captured(length: int):
    """The xpgrad chain under xg.capture, timed on replays. It returns the chain's value, so
    the replay computes every forward op; the backward's values are constants (the chain is
    affine: d/dx = 1.0001 ** (length / 2)), which the capture run leaves in place."""
    import xpgrad as xg

    x = xg.tensor(np.ones(1), requires_grad=True)

    def run():
        x.grad = None
        y = _chain(x, length)
        y.backward(np.ones(1))
        return y

    return captured_step(run)


def _chain_reference(length: int):
    def run():
        _chain(RefValue(np.ones(1)), length).backward()

    return run


def _chain_numpy(length: int):
    def run():  # forward only, one NumPy call per op: the floor an engine builds on
        _chain(np.ones(1), length)

    return run


def _chain_torch(length: int):
    import torch

    torch.set_num_threads(1)
    x = torch.ones(1, dtype=torch.float64, requires_grad=True)

    def run():
        x.grad = None
        _chain(x, length).backward(torch.ones(1, dtype=torch.float64))

    return run


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def run_overhead(length: int = 1000, rounds: int = 30, threads: int = 1) -> dict:
    """Per-op forward+backward cost on a 1-element chain of `length` add/mul ops."""
    contenders = {
        "numpy_forward": _chain_numpy(length),
        "reference_tape": _chain_reference(length),
        "xpgrad": _chain_xpgrad(length),
        "captured": _chain_captured(length),
    }
    if _torch_available():
        contenders["torch"] = _chain_torch(length)
    quiet_gc()
    with pinned_threads(threads):
        times = paired_rounds(contenders, rounds=rounds, steps=1)
    result = {"threads": threads, "length": length, "rounds": rounds, "us_per_op": {}, "ratio_to_xpgrad": {}}
    for name, samples in times.items():
        stats = summarize([s / length * 1e6 for s in samples])
        result["us_per_op"][name] = stats
        result["ratio_to_xpgrad"][name] = _ratio_stats(samples, times["xpgrad"])  # xpgrad time / name time
    return result


# ---- MLP training steps --------------------------------------------------------------------

CONFIGS = {
    "a": dict(batch=64, sizes=(1000, 100, 10), activation="sigmoid", loss="squared_error", bias=False, lr=1e-4),
    "b": dict(batch=256, sizes=(784, 1024, 1024, 10), activation="relu", loss="softmax_ce", bias=True, lr=1e-2),
    "c": dict(batch=32, sizes=(16, 32, 32, 2), activation="relu", loss="softmax_ce", bias=True, lr=1e-2),
}
# (a) written as in the notes (cs231n lecture 4's "2-layer net in 20 lines"): NumPy is those lines
# verbatim; xpgrad uses bare tensors, `@`, xg.sigmoid and `** 2` (no nn, no fused loss) + optim.SGD.
CONFIGS["a_notes"] = dict(CONFIGS["a"], style="notes")


def _init(cfg: dict, dtype=np.float32, seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = cfg["sizes"]
    x = rng.random((cfg["batch"], sizes[0])).astype(dtype)
    if cfg["loss"] == "squared_error":
        y = rng.standard_normal((cfg["batch"], sizes[-1])).astype(dtype)
    else:
        y = rng.integers(0, sizes[-1], size=cfg["batch"])
    weights = [(rng.standard_normal((i, o)) * math.sqrt(2.0 / i)).astype(dtype) for i, o in zip(sizes, sizes[1:])]
    biases = [np.zeros(o, dtype=dtype) for o in sizes[1:]] if cfg["bias"] else None
    return x, y, weights, biases


def _on(xp, x, y, weights, biases):
    """`_init`'s arrays moved to namespace `xp` (NumPy's stay as they are)."""
    if xp is np:
        return x, y, weights, biases
    move = xp.asarray
    return move(x), move(y), [move(w) for w in weights], None if biases is None else [move(b) for b in biases]


def notes_numpy_step_fn(cfg: dict, dtype=np.float32, xp=np):
    """The notes' 20 NumPy lines of config (a), verbatim (temporaries and all), on the arrays of
    `xp` (NumPy, or CuPy for the GPU run)."""
    x, y, (w1, w2), _ = _on(xp, *_init(cfg, dtype))
    lr = cfg["lr"]

    def step():
        h = 1 / (1 + xp.exp(-x.dot(w1)))
        y_pred = h.dot(w2)
        loss = xp.square(y_pred - y).sum()
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h.T.dot(grad_y_pred)
        grad_h = grad_y_pred.dot(w2.T)
        grad_w1 = x.T.dot(grad_h * h * (1 - h))
        w1[...] -= lr * grad_w1
        w2[...] -= lr * grad_w2
        return loss

    return step


def numpy_step_fn(cfg: dict, dtype=np.float32, xp=np):
    """A hand-written NumPy forward + backward + SGD step, as a careful person writes it (on the
    arrays of `xp`: NumPy, or CuPy for the GPU run)."""
    if cfg.get("style") == "notes":
        return notes_numpy_step_fn(cfg, dtype, xp)
    x, y, W, B = _on(xp, *_init(cfg, dtype))
    lr, n, sigmoid = cfg["lr"], cfg["batch"], cfg["activation"] == "sigmoid"
    rows = xp.arange(n)

    def step():
        acts = [x]
        h = x
        for i, w in enumerate(W):
            z = h @ w
            if B is not None:
                z += B[i]
            if i < len(W) - 1:
                if sigmoid:
                    xp.negative(z, out=z)
                    xp.exp(z, out=z)
                    z += 1
                    xp.reciprocal(z, out=z)
                else:
                    xp.maximum(z, 0, out=z)
                acts.append(z)
            h = z
        if cfg["loss"] == "squared_error":
            diff = h - y
            loss = float((diff * diff).sum())
            g = diff
            g *= 2.0
        else:
            h -= h.max(axis=1, keepdims=True)
            xp.exp(h, out=h)
            h /= h.sum(axis=1, keepdims=True)
            loss = float(-xp.log(h[rows, y]).mean())
            g = h
            g[rows, y] -= 1
            g /= n
        for i in range(len(W) - 1, -1, -1):
            a = acts[i]
            gw = a.T @ g
            if B is not None:
                B[i] -= lr * g.sum(axis=0)
            if i > 0:
                g = g @ W[i].T
                if sigmoid:
                    g *= a * (1 - a)
                else:
                    g *= a > 0
            W[i] -= lr * gw
        return loss

    return step


def xpgrad_step_fn(cfg: dict, dtype=np.float32):
    """The same network and step as a user writes it: nn.MLP, a loss, backward, optim.SGD."""
    if cfg.get("style") == "notes":
        return notes_xpgrad_step_fn(cfg, dtype)
    model, X, Y, loss_fn, optimizer = xpgrad_training_parts(cfg, dtype)

    def step():
        loss = loss_fn(model(X), Y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def xpgrad_training_parts(cfg: dict, dtype=np.float32) -> tuple:
    """(model, X, Y, loss_fn, optimizer) of the xpgrad contender: nn.MLP starting from the NumPy
    contender's weights, the batch as tensors, the config's loss and optim.SGD."""
    import xpgrad as xg
    from xpgrad import nn, optim

    x, y, W, B = _init(cfg, dtype)
    model = nn.MLP(cfg["sizes"], activation=cfg["activation"], bias=cfg["bias"], dtype=np.dtype(dtype).name)
    layers = [m for m in model if isinstance(m, nn.Linear)]
    for i, layer in enumerate(layers):  # the same starting point as the NumPy contender (on its device)
        layer.weight.data[...] = nn.to_place(W[i], layer.weight.data)
        if B is not None:
            layer.bias.data[...] = nn.to_place(B[i], layer.bias.data)
    if cfg["loss"] == "squared_error":
        loss_fn = functools.partial(xg.mse_loss, reduction="sum")
    else:
        loss_fn = xg.softmax_cross_entropy
    return model, xg.tensor(x), xg.tensor(y), loss_fn, optim.SGD(model.parameters(), lr=cfg["lr"])


def notes_xpgrad_step_fn(cfg: dict, dtype=np.float32, manual_update: bool = False):
    """Config (a) as a reader of the notes writes it with xpgrad tensors: no nn, no fused loss;
    optim.SGD, or with `manual_update` the notes' own `w -= lr * grad` on the raw arrays."""
    import xpgrad as xg
    from xpgrad import optim

    x, y, W, _ = _init(cfg, dtype)
    X, Y = xg.tensor(x), xg.tensor(y)
    weights = [xg.tensor(w.copy(), requires_grad=True) for w in W]
    w1, w2 = weights
    lr = cfg["lr"]
    optimizer = optim.SGD(weights, lr=lr)

    def step():
        h = xg.sigmoid(X @ w1)
        loss = ((h @ w2 - Y) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        if not manual_update:
            optimizer.step()
            return loss
        with xg.no_grad():
            for w in weights:
                w.data -= lr * w.grad.data
        return loss

    return step


def torch_step_fn(cfg: dict, dtype=np.float32, device: str = "cpu"):
    """The same step in PyTorch eager (on the CPU, or `device="cuda"`), for an extra column."""
    import torch

    x, y, W, B = _init(cfg, dtype)
    X, Y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    weights = [torch.tensor(w, requires_grad=True, device=device) for w in W]
    biases = [torch.tensor(b, requires_grad=True, device=device) for b in B] if B is not None else [None] * len(W)
    params = weights + [b for b in biases if b is not None]
    optimizer = torch.optim.SGD(params, lr=cfg["lr"])
    act = torch.sigmoid if cfg["activation"] == "sigmoid" else torch.relu

    def step():
        h = X
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = h @ w if b is None else torch.addmm(b, h, w)
            if i < len(weights) - 1:
                h = act(h)
        if cfg.get("style") == "notes":
            loss = ((h - Y) ** 2).sum()
        elif cfg["loss"] == "squared_error":
            loss = torch.nn.functional.mse_loss(h, Y, reduction="sum")
        else:
            loss = torch.nn.functional.cross_entropy(h, Y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def run_mlp(
    configs=("a", "a_notes", "b", "c"),
    threads: int = 1,
    rounds: int = 15,
    dtype: str = "float32",
    torch_column: bool = True,
) -> dict:
    """Steps/s of each config for xpgrad and hand-written NumPy (paired rounds), then, if installed
    and `torch_column`, PyTorch (see `add_torch_column`)."""
    np_dtype = np.dtype(dtype)
    results = {}
    with pinned_threads(threads):
        for key in configs:
            cfg = CONFIGS[key]
            contenders = {
                "numpy": numpy_step_fn(cfg, np_dtype),
                "xpgrad": xpgrad_step_fn(cfg, np_dtype),
                "captured": captured_step(xpgrad_step_fn(cfg, np_dtype)),
                "no_kernels": _without_kernels(xpgrad_step_fn(cfg, np_dtype)),
            }
            results[key] = {"config": cfg, "contenders": {}}
            _time_contenders(results[key], contenders, rounds)
    result = {"threads": threads, "dtype": dtype, "rounds": rounds, "configs": results}
    if torch_column:
        add_torch_column(result)
    return result


def add_torch_column(result: dict) -> None:
    """PyTorch's steps/s for every config of a `run_mlp` result, paired with NumPy again.

    A pass of its own, after xpgrad's: once PyTorch has run in a process, 2-thread OpenBLAS GEMMs
    there often stall (NumPy and xpgrad alike, ~0.55 instead of ~0.28 ms per (a) step), so
    `cli_mlp` runs every xpgrad pass before the first PyTorch one.
    """
    if not _torch_available():
        return
    import torch

    threads, np_dtype = result["threads"], np.dtype(result["dtype"])
    with pinned_threads(threads):
        torch.set_num_threads(threads)
        for key, entry in result["configs"].items():
            cfg = CONFIGS[key]
            contenders = {"numpy": numpy_step_fn(cfg, np_dtype), "torch": torch_step_fn(cfg, np_dtype)}
            _time_contenders(entry, contenders, result["rounds"], keep=("torch",))


def _time_contenders(entry: dict, contenders: dict, rounds: int, keep=None) -> None:
    """Paired rounds of `contenders` (NumPy first, setting the steps per round); their figures
    (those named in `keep`, or all) go into entry["contenders"]."""
    steps = steps_per_round(contenders["numpy"], 0.2)
    entry.setdefault("steps_per_round", steps)
    quiet_gc()
    times = paired_rounds(contenders, rounds=rounds, steps=steps)
    for name, samples in times.items():
        if keep is not None and name not in keep:
            continue
        stats = summarize(samples)
        entry["contenders"][name] = {
            "steps_per_s": 1.0 / stats["median_s"],
            "ms_per_step": stats["median_s"] * 1e3,
            "spread": stats["spread"],
            "ratio_to_numpy": _ratio_stats(samples, times["numpy"]),  # numpy time / name time (same pass)
        }


def captured_step(step):
    """`step` under xg.capture, past its warm-up and capture calls (the rounds time replays)."""
    import xpgrad as xg

    captured = xg.capture(step)
    captured()
    captured()
    return captured


def _without_kernels(step):
    """`step` with XPGRAD_KERNELS switched off (the portable array-API paths), for comparison."""
    from xpgrad.fns import use_kernels

    def run():
        with use_kernels(False):
            return step()

    return run


def steps_per_round(fn, seconds: float = 0.1) -> int:
    """How many calls of `fn` (timed once, after a warm-up call) take about `seconds`, at least 1."""
    fn()
    start = time.perf_counter()
    fn()
    return max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))


# ---- deep chains ---------------------------------------------------------------------------


def run_depth(depths=(100_000, 1_000_000)) -> dict:
    """Forward and backward time of a chain of `depth` ops (linearity check)."""
    import xpgrad as xg

    out = {}
    for depth in depths:
        x = xg.tensor(np.ones(1), requires_grad=True)
        start = time.perf_counter()
        y = x
        for _ in range(depth):
            y = y * 1.0
        forward = time.perf_counter() - start
        start = time.perf_counter()
        y.backward(np.ones(1))
        backward = time.perf_counter() - start
        start = time.perf_counter()
        del y
        free = time.perf_counter() - start
        out[depth] = {"forward_s": forward, "backward_s": backward, "free_s": free, "grad": float(x.grad.item())}
    return out


# ---- reporting -----------------------------------------------------------------------------


def environment() -> dict:
    """Machine and versions, recorded with every result."""
    import numba

    import xpgrad

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "xpgrad": xpgrad.__version__,
        "kernels": os.environ.get("XPGRAD_KERNELS", "1") != "0",
    }
    if _torch_available():
        import torch

        info["torch"] = torch.__version__
    return info


def format_overhead(result: dict) -> str:
    lines = [
        f"per-op forward+backward, 1-element chain of {result['length']} ops, "
        f"{result['threads']} thread(s), median of {result['rounds']} rounds",
        f"{'contender':<16}{'us/op':>10}{'spread':>9}{'xpgrad / this':>15}",
    ]
    for name, stats in result["us_per_op"].items():
        ratio = result["ratio_to_xpgrad"][name]["median_s"]
        lines.append(f"{name:<16}{stats['median_s']:>10.2f}{stats['spread']:>8.0%}{ratio:>15.2f}")
    return "\n".join(lines)


def format_mlp(result: dict) -> str:
    lines = [
        f"MLP training steps, {result['dtype']}, {result['threads']} thread(s), median of {result['rounds']} rounds",
        f"{'config':<11}{'contender':<10}{'steps/s':>10}{'ms/step':>10}{'spread':>8}{'x NumPy':>9}",
    ]
    for key, entry in result["configs"].items():
        for name, c in entry["contenders"].items():
            lines.append(
                f"{'(' + key + ')':<11}{name:<10}{c['steps_per_s']:>10.1f}{c['ms_per_step']:>10.3f}"
                f"{c['spread']:>7.0%}{c['ratio_to_numpy']['median_s']:>9.2f}"
            )
    return "\n".join(lines)


def plot_mlp(results: list, path: str) -> None:
    """Bars of speed relative to hand-written NumPy per config and contender, labelled with steps/s
    (one panel per thread count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8), squeeze=False)
    for ax, result in zip(axes[0], results):
        keys = list(result["configs"])
        names = list(next(iter(result["configs"].values()))["contenders"])
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            entries = [result["configs"][k]["contenders"][name] for k in keys]
            xs = [i + j * width for i in range(len(keys))]
            bars = ax.bar(xs, [e["ratio_to_numpy"]["median_s"] for e in entries], width, label=name)
            for bar, e in zip(bars, entries):
                ax.annotate(
                    f"{e['steps_per_s']:,.0f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=90,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(keys))], [f"({k})" for k in keys])
        top = max(
            e["ratio_to_numpy"]["median_s"]
            for entry in result["configs"].values()
            for e in entry["contenders"].values()
        )
        ax.set_ylim(0, max(1.35, top * 1.15))
        ax.set_ylabel("speed / hand-written NumPy (labels: steps/s)")
        ax.set_title(f"{result['threads']} thread(s), {result['dtype']}")
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def cli_overhead(sizes=None, json_path=None, threads=None) -> int:
    """`xpgrad bench overhead`: per-op table (chain length from --sizes), then the deep-chain check."""
    payload = {"environment": environment(), "overhead": [], "depth": None}
    for length in sizes or [1000]:
        for n in [threads] if threads else [1, 2]:
            result = run_overhead(length=length, threads=n)
            payload["overhead"].append(result)
            print(format_overhead(result), end="\n\n")
    payload["depth"] = run_depth()
    for depth, d in payload["depth"].items():
        print(
            f"chain of {depth:>9,} muls: forward {d['forward_s']:.2f} s, backward {d['backward_s']:.2f} s, "
            f"free {d['free_s']:.2f} s, grad {d['grad']}"
        )
    if json_path:
        write_json(payload, json_path)
    return 0


def cli_mlp(sizes=None, json_path=None, threads=None, plot_path=None) -> int:
    """`xpgrad bench mlp`: configs (a), (a_notes), (b), (c) at 1 and 2 threads (or --threads), plus float64 for (a);
    under the CuPy backend, the GPU run of `bench_gpu` instead."""
    if _backend_is_cupy():
        from .bench_gpu import cli_mlp as gpu_mlp

        return gpu_mlp(json_path=json_path)
    payload = {"environment": environment(), "runs": []}
    for n in [threads] if threads else [1, 2]:
        payload["runs"].append(run_mlp(threads=n, torch_column=False))
    payload["runs"].append(run_mlp(configs=("a",), threads=threads or 1, dtype="float64", torch_column=False))
    for result in payload["runs"]:  # PyTorch last: see add_torch_column
        add_torch_column(result)
        print(format_mlp(result), end="\n\n")
    if json_path:
        write_json(payload, json_path)
    if plot_path:
        plot_mlp([r for r in payload["runs"] if r["dtype"] == "float32"], plot_path)
        print(f"plot written to {plot_path}")
    return 0


def _backend_is_cupy() -> bool:
    import xpgrad as xg

    return xg.get_backend().name == "cupy"


def write_json(payload: dict, path: str) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, default=str)
    os.replace(tmp, path)
