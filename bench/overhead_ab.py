"""Per-op overhead of several commits (or the working tree), measured in one run.

    python bench/overhead_ab.py [REV ...] [--passes 6]

Builds each REV's package (default: HEAD~1 and the working tree; `.` names the working tree, as
installed) in a temporary folder, then runs `xpgrad bench overhead`'s measurement
(`bench_mlp.run_overhead`, 1 thread) in fresh processes, cycling through them `--passes` times,
so all see the same machine state; odd passes run them in reverse order. Prints each
side's per-op microseconds (median of the passes' medians, min-max over passes) and its ratio to
the minimal reference tape measured in the same process, which cancels most drift between passes.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
MEASURE = (
    "import json, xpgrad.bench_mlp as b; r = b.run_overhead(length=1000, rounds=30, threads=1); "
    "print(json.dumps({'us': r['us_per_op']['xpgrad']['median_s'], "
    "'tape': r['us_per_op']['reference_tape']['median_s'], 'where': b.__file__}))"
)


def export_package(rev: str, into: pathlib.Path) -> pathlib.Path:
    """REV's `xpgrad/` with `kernels/` inside it as `xpgrad/kernels` (the layout pip installs)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "xpgrad", "kernels"], check=True, capture_output=True
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.move(str(into / "kernels"), str(into / "xpgrad" / "kernels"))
    return into


def measure(pythonpath: pathlib.Path | None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cwd = (
        pythonpath if pythonpath is not None else "/"
    )  # not ROOT: its xpgrad/ lacks kernels/ (the editable install maps it)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE], env=env, cwd=cwd, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revs", nargs="*", default=["HEAD~1", "."], help="commits; . is the working tree")
    parser.add_argument("--passes", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            ("working tree" if rev == "." else rev): (
                None if rev == "." else export_package(rev, pathlib.Path(tmp, str(i)))
            )
            for i, rev in enumerate(args.revs)
        }
        samples: dict = {side: [] for side in sides}
        for n in range(args.passes):  # ABBA order: the first place in a pass runs measurably faster
            for side, path in list(sides.items()) if n % 2 == 0 else list(sides.items())[::-1]:
                got = measure(path)
                assert (path is None) != got["where"].startswith(tmp), got["where"]
                samples[side].append(got)
    print(f"per-op forward+backward, 1-element chain of 1000 ops, 1 thread, {args.passes} alternating passes")
    print(f"{'code':<16}{'us/op median':>14}{'min-max':>16}{'/ reference tape':>18}{'min-max':>16}")
    for side, runs in samples.items():
        us = [r["us"] for r in runs]
        ratio = [r["us"] / r["tape"] for r in runs]
        print(
            f"{side:<16}{statistics.median(us):>14.3f}{f'{min(us):.3f}-{max(us):.3f}':>16}"
            f"{statistics.median(ratio):>18.3f}{f'{min(ratio):.3f}-{max(ratio):.3f}':>16}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
