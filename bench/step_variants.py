"""Config (a) written five ways, against the notes' 20 NumPy lines, in paired rounds (1 thread).

- numpy careful:   `bench_mlp.numpy_step_fn` (in-place activations, one temporary less);
- numpy 20 lines:  the notes' code verbatim (`bench_mlp.notes_numpy_step_fn`), the baseline;
- nn:              `nn.MLP` + `mse_loss(reduction="sum")` + `optim.SGD` (`xpgrad bench mlp`'s (a));
- tensors + SGD:   the notes' lines with tensors, `@`, `xg.sigmoid`, `** 2` + `optim.SGD`
                   (`xpgrad bench mlp`'s (a_notes); eager fusion makes it three nodes);
- tensors, manual: the same, with the notes' update `w.data -= lr * w.grad.data` under no_grad;
- functional:      `xg.linear(..., activation="sigmoid")`, `@`, `xg.mse_loss` + `optim.SGD`.

    python bench/step_variants.py              # N=64, 1000-100-10
    python bench/step_variants.py 8,8,2 3000   # tiny layers: the engine's own cost shows
"""

from __future__ import annotations

import statistics
import sys

from xpgrad import bench_mlp


def functional_step(cfg: dict):
    """Config (a) on bare tensors with the fused ops named: xg.linear(..., activation=), xg.mse_loss."""
    import xpgrad as xg
    from xpgrad import optim

    x, y, weights, _ = bench_mlp._init(cfg)
    X, Y = xg.tensor(x), xg.tensor(y)
    w1, w2 = (xg.tensor(w.copy(), requires_grad=True) for w in weights)
    optimizer = optim.SGD([w1, w2], lr=cfg["lr"])

    def step():
        loss = xg.mse_loss(xg.linear(X, w1, activation="sigmoid") @ w2, Y, reduction="sum")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def main(sizes: str = "1000,100,10", steps: str = "300") -> int:
    cfg = dict(bench_mlp.CONFIGS["a"], sizes=tuple(int(s) for s in sizes.split(",")))
    contenders = {
        "numpy careful": bench_mlp.numpy_step_fn(cfg),
        "numpy 20 lines": bench_mlp.notes_numpy_step_fn(cfg),
        "nn": bench_mlp.xpgrad_step_fn(cfg),
        "tensors + SGD": bench_mlp.notes_xpgrad_step_fn(cfg),
        "tensors, manual": bench_mlp.notes_xpgrad_step_fn(cfg, manual_update=True),
        "functional": functional_step(cfg),
    }
    with bench_mlp.pinned_threads(1):
        bench_mlp.quiet_gc()
        times = bench_mlp.paired_rounds(contenders, rounds=21, steps=int(steps))
    base = times["numpy 20 lines"]
    print(f"config (a) with sizes {cfg['sizes']}, 1 thread, median of 21 paired rounds")
    for name, samples in times.items():
        ratio = statistics.median(b / s for b, s in zip(base, samples))
        print(f"{name:16s} {statistics.median(samples) * 1e6:8.1f} us/step   {ratio:5.3f}x the 20 NumPy lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
