"""Steady-state memory of xg.capture replays: RSS and tracemalloc over 10,000 replays.

For each config of `xpgrad bench mlp` (its xpgrad step, nn.MLP + optim.SGD, under xg.capture),
and for the same step with Adam and with dropout: warm up (the eager call and the capture
call, then 100 replays), then sample the process RSS (/proc/self/statm) and tracemalloc's
traced total every 1,000 replays. Flat means no growth past the first sample (the allocator's
own noise: a few KB).

    python bench/capture_memory.py            # configs a and c, 10,000 replays each
    python bench/capture_memory.py b 2000     # config b, 2,000 replays
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import tracemalloc

import xpgrad as xg
from xpgrad import bench_mlp, nn, optim
from xpgrad.train import batch_step


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def step_for(key: str, variant: str):
    cfg = bench_mlp.CONFIGS[key]
    if variant == "sgd":
        return bench_mlp.xpgrad_step_fn(cfg)
    model, x, y, loss_fn, _ = bench_mlp.xpgrad_training_parts(cfg)
    if variant == "dropout":
        model = nn.Sequential(
            *[layer for m in model for layer in ([m, nn.Dropout(0.2)] if isinstance(m, nn.ReLU) else [m])]
        )
    opt = optim.Adam(model.parameters(), lr=1e-3) if variant == "adam" else optim.SGD(model.parameters(), lr=cfg["lr"])
    return functools.partial(batch_step(model, opt, loss_fn), x, y)


def measure(key: str, variant: str, replays: int, every: int = 1000) -> dict:
    step = xg.capture(step_for(key, variant))
    for _ in range(102):
        step()
    gc.collect()
    tracemalloc.start()
    samples = []
    for i in range(replays):
        step()
        if (i + 1) % every == 0:
            gc.collect()
            samples.append((rss_kib(), tracemalloc.get_traced_memory()[0]))
    tracemalloc.stop()
    assert step.stats["replays"] >= replays, step.stats
    rss = [s[0] for s in samples]
    traced = [s[1] for s in samples]
    return {
        "config": key,
        "variant": variant,
        "replays": replays,
        "rss_kib_first": rss[0],
        "rss_kib_last": rss[-1],
        "rss_kib_max_growth": max(rss) - rss[0],
        "traced_bytes_first": traced[0],
        "traced_bytes_last": traced[-1],
        "traced_bytes_max_growth": max(traced) - traced[0],
    }


def main(argv) -> int:
    keys = [argv[0]] if argv else ["a", "c"]
    replays = int(argv[1]) if len(argv) > 1 else 10_000
    with bench_mlp.pinned_threads(1):
        for key in keys:
            for variant in ("sgd", "adam", "dropout") if key == "c" else ("sgd",):
                r = measure(key, variant, replays)
                print(
                    f"({r['config']}) {r['variant']:<8} {r['replays']} replays: RSS {r['rss_kib_first']} -> "
                    f"{r['rss_kib_last']} KiB (max growth {r['rss_kib_max_growth']} KiB); tracemalloc "
                    f"{r['traced_bytes_first']} -> {r['traced_bytes_last']} B (max growth "
                    f"{r['traced_bytes_max_growth']} B)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
