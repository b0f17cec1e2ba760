"""`xpgrad bench <target>`: benchmarks implemented in other modules.

``xpgrad bench <target> [--sizes N,M] [--json PATH] [--threads N]`` calls the function named in
BENCH_TARGETS (imported only when used) as ``fn(sizes=, json_path=, threads=)``; an int result is
the exit status (anything else means 0).
"""

from __future__ import annotations

import importlib

from . import arguments
from .common import Parser, UsageError

# `xpgrad bench <target>`: (module, function, help); the function is called as
# fn(sizes=list[int] | None, json_path=str | None, threads=int | None) and may return an exit status
BENCH_TARGETS = {
    "kernels": ("xpgrad.bench_kernels", "run", "Numba kernels against NumPy"),
    "mlp": ("xpgrad.bench_mlp", "cli_mlp", "MLP training steps: xpgrad against hand-written NumPy"),
    "overhead": ("xpgrad.bench_mlp", "cli_overhead", "per-op overhead of the engine"),
}


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks: " + ", ".join(BENCH_TARGETS))
    bench_sub = bench.add_subparsers(dest="target", metavar="TARGET", parser_class=Parser)
    for target, (_, _, text) in BENCH_TARGETS.items():
        b = bench_sub.add_parser(target, help=text, description=text)
        b.add_argument("--sizes", type=arguments.size_list, help="comma-separated problem sizes")
        b.add_argument("--json", dest="json_path", metavar="PATH", help="also write the results as JSON")
        b.add_argument("--threads", type=arguments.positive_int, help="number of CPU threads (Numba / BLAS)")
        if target == "mlp":
            b.add_argument("--plot", dest="plot_path", metavar="PATH.png", help="bar chart of steps/s per config")
        b.set_defaults(func=run, target=target)
    bench.set_defaults(func=run, target=None)


def run(args) -> int:
    """Handle `xpgrad bench <target>`; returns the target's exit status (0 unless it returns an int)."""
    if args.target is None:
        raise UsageError(f"bench needs a target: one of {', '.join(BENCH_TARGETS)}")
    module_name, function, _ = BENCH_TARGETS[args.target]
    fn = getattr(importlib.import_module(module_name), function)
    extra = {"plot_path": args.plot_path} if getattr(args, "plot_path", None) else {}
    code = fn(sizes=args.sizes, json_path=args.json_path, threads=args.threads, **extra)
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
