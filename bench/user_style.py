"""Configs (a) and (b) of `xpgrad bench mlp` written the way users write them, against
hand-written NumPy, in paired rounds (1 thread):

- (a): `z = xg.linear(x, W)`, `h = xg.sigmoid(z)`, `((z2 - y) ** 2).sum()` and the manual update
  `p.data -= lr * p.grad.data` under `no_grad()`, against the notes' 20 NumPy lines;
- (b): `z = xg.linear(h, W, b)` then `h = xg.relu(z)` per layer (the pre-activation held in a
  variable, so eager fusion leaves it alone), softmax cross-entropy and `optim.SGD`, against
  `bench_mlp.numpy_step_fn`.

    python bench/user_style.py [rounds]
"""

from __future__ import annotations

import statistics
import sys

from xpgrad import bench_mlp


def user_step_a(cfg: dict):
    """Config (a) as a reader of the notes writes it with xpgrad's functions."""
    import xpgrad as xg

    x, y, weights, _ = bench_mlp._init(cfg)
    X, Y = xg.tensor(x), xg.tensor(y)
    w1, w2 = (xg.tensor(w.copy(), requires_grad=True) for w in weights)
    lr = cfg["lr"]

    def step():
        z = xg.linear(X, w1)
        h = xg.sigmoid(z)
        z2 = xg.linear(h, w2)
        loss = ((z2 - Y) ** 2).sum()
        w1.grad = w2.grad = None
        loss.backward()
        with xg.no_grad():
            for p in (w1, w2):
                p.data -= lr * p.grad.data
        return loss

    return step


def user_step_b(cfg: dict):
    """Config (b) with one `xg.linear` and one `xg.relu` call per layer, `z` kept in a variable."""
    import xpgrad as xg
    from xpgrad import optim

    x, y, weights, biases = bench_mlp._init(cfg)
    X, Y = xg.tensor(x), xg.tensor(y)
    layers = [
        (xg.tensor(w.copy(), requires_grad=True), xg.tensor(b.copy(), requires_grad=True))
        for w, b in zip(weights, biases)
    ]
    optimizer = optim.SGD([p for layer in layers for p in layer], lr=cfg["lr"])

    def step():
        h = X
        for i, (w, b) in enumerate(layers):
            z = xg.linear(h, w, b)
            h = xg.relu(z) if i < len(layers) - 1 else z
        loss = xg.softmax_cross_entropy(h, Y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def main(rounds: str = "15") -> int:
    cases = {
        "a": (
            "numpy 20 lines",
            bench_mlp.notes_numpy_step_fn(bench_mlp.CONFIGS["a"]),
            user_step_a(bench_mlp.CONFIGS["a"]),
        ),
        "b": ("numpy careful", bench_mlp.numpy_step_fn(bench_mlp.CONFIGS["b"]), user_step_b(bench_mlp.CONFIGS["b"])),
    }
    print(f"1 thread, medians of {rounds} paired rounds; ratio = NumPy time / xpgrad time per round")
    with bench_mlp.pinned_threads(1):
        for key, (numpy_name, numpy_step, xpgrad_step) in cases.items():
            steps = bench_mlp.steps_per_round(numpy_step, 0.2)
            bench_mlp.quiet_gc()
            times = bench_mlp.paired_rounds({"numpy": numpy_step, "xpgrad": xpgrad_step}, int(rounds), steps)
            ratios = [n / x for n, x in zip(times["numpy"], times["xpgrad"])]
            q = statistics.quantiles(ratios, n=4)
            print(
                f"({key}) {numpy_name}: {statistics.median(times['numpy']) * 1e3:.3f} ms/step, "
                f"xpgrad as users write it: {statistics.median(times['xpgrad']) * 1e3:.3f} ms/step, "
                f"ratio {statistics.median(ratios):.3f} (IQR {q[0]:.3f}-{q[2]:.3f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
