"""One epoch of the "Deep Learning from Scratch" MNIST workload: xpgrad against a hand-written NumPy loop.

Workload (issue 4): an MLP 784-1000-10 with sigmoid hidden units and Softmax-with-loss, plain SGD
(lr 0.1), batch 100, one pass over 60,000 samples. The data are synthetic (uniform pixels in
[0, 1), random labels) with MNIST's shape; only the time matters.

Both loops start from the same float32 weights and visit the same batches in the same order,
so their final losses agree (printed as a check). Rounds alternate NumPy / xpgrad and the
median epoch time of each is reported with their ratio.

    OPENBLAS_NUM_THREADS=1 python bench/mnist_epoch.py            # 3 rounds
    python bench/mnist_epoch.py --rounds 5 --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import xpgrad as xg
from xpgrad import nn, optim


def make_data(samples: int, features: int, classes: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.random((samples, features), dtype=np.float32)
    y = rng.integers(0, classes, size=samples).astype(np.int64)
    return x, y


def init_params(sizes, seed: int) -> dict[str, np.ndarray]:
    """Xavier-normal weights (std sqrt(1 / fan_in), as for sigmoid) and zero biases, float32."""
    rng = np.random.default_rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i}"] = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        params[f"b{i}"] = np.zeros(n_out, dtype=np.float32)
    return params


# ---- the hand-written NumPy loop (the book's TwoLayerNet: Affine, Sigmoid, Affine, SoftmaxWithLoss) ----


def numpy_epoch(params: dict, x, y, order, batch: int, lr: float) -> float:
    W0, b0, W1, b1 = params["W0"], params["b0"], params["W1"], params["b1"]
    loss = 0.0
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        xb, yb = x[idx], y[idx]
        n = len(idx)
        # forward
        a = xb @ W0
        a += b0
        h = 1.0 / (1.0 + np.exp(-a))
        z = h @ W1
        z += b1
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        loss = float(-np.log(p[np.arange(n), yb] + 1e-7).mean())
        # backward
        p[np.arange(n), yb] -= 1
        p /= n
        dW1 = h.T @ p
        db1 = p.sum(axis=0)
        dh = p @ W1.T
        da = dh * h * (1.0 - h)
        dW0 = xb.T @ da
        db0 = da.sum(axis=0)
        # SGD
        W0 -= lr * dW0
        b0 -= lr * db0
        W1 -= lr * dW1
        b1 -= lr * db1
    return loss


# ---- the same with xpgrad ---------------------------------------------------------------------


def xpgrad_epoch(model, opt, x, y, order, batch: int) -> float:
    loss = None
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        xb, yb = xg.tensor(x[idx]), xg.tensor(y[idx])
        loss = xg.softmax_cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.item())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=60_000)
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved NumPy / xpgrad epochs of each")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)

    sizes = [784, args.hidden, 10]
    x, y = make_data(args.samples, sizes[0], sizes[-1], args.seed)
    init = init_params(sizes, args.seed + 1)
    model = nn.MLP(sizes, activation="sigmoid")
    names = [name for name, _ in model.named_parameters()]  # 0.weight, 0.bias, 2.weight, 2.bias
    opt = optim.SGD(model.parameters(), lr=args.lr)
    order_rng = np.random.default_rng(args.seed + 2)

    print(
        f"MNIST-shaped epoch: MLP {'-'.join(map(str, sizes))} sigmoid, softmax-with-loss, SGD lr {args.lr}, "
        f"batch {args.batch_size}, {args.samples} samples, float32; backend {xg.get_backend().name}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
        flush=True,
    )
    times = {"numpy": [], "xpgrad": []}
    losses = {}
    for r in range(args.rounds):
        order = order_rng.permutation(args.samples)
        np_params = {k: v.copy() for k, v in init.items()}
        model.load_state_dict(dict(zip(names, (init["W0"], init["b0"], init["W1"], init["b1"]))))
        for which in ("numpy", "xpgrad") if r % 2 == 0 else ("xpgrad", "numpy"):
            t0 = time.perf_counter()
            if which == "numpy":
                losses["numpy"] = numpy_epoch(np_params, x, y, order, args.batch_size, args.lr)
            else:
                losses["xpgrad"] = xpgrad_epoch(model, opt, x, y, order, args.batch_size)
            times[which].append(time.perf_counter() - t0)
        print(
            f"round {r + 1}: numpy {times['numpy'][-1]:.3f} s, xpgrad {times['xpgrad'][-1]:.3f} s; "
            f"last-batch loss numpy {losses['numpy']:.5f}, xpgrad {losses['xpgrad']:.5f}",
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["xpgrad"] / med["numpy"]
    print(f"median epoch: numpy {med['numpy']:.3f} s, xpgrad {med['xpgrad']:.3f} s, ratio xpgrad/numpy {ratio:.3f}")
    if args.json:
        result = {
            "workload": {
                "sizes": sizes,
                "activation": "sigmoid",
                "batch_size": args.batch_size,
                "samples": args.samples,
                "lr": args.lr,
                "dtype": "float32",
            },
            "seconds": times,
            "median_seconds": med,
            "ratio_xpgrad_over_numpy": ratio,
            "final_batch_loss": losses,
            "backend": xg.get_backend().name,
            "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "machine": platform.machine(),
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
