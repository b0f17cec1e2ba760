"""Data-parallel scaling on CPU ranks: steps/s of `mpiexec -n K` against one process, config (b).

    python bench/distributed_scaling.py [--ranks 2] [--passes 5] [--bucket-mb 25] [--json PATH]

Config (b) of `xpgrad bench mlp` (MLP 784-1024-1024-10, ReLU, softmax cross-entropy, SGD) with a
global batch of 512: one rank takes all 512 rows, K ranks 512/K each, through DataParallel. Every
rank runs 1 thread (OMP/OPENBLAS/NUMBA_NUM_THREADS=1 and threadpoolctl). The driver alternates
passes of 1 and K ranks (each pass a fresh process group) so drift hits both alike, and reports per
pass the median step time over rounds, the K-rank speed-up, and per step the time DataParallel
spent in the gradient all-reduce (including any wait for the slower rank) and in bucket copies.

Worker mode (what each pass runs): ... --worker --rounds R --steps S
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GLOBAL_BATCH = 512
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")}


def worker(rounds: int, steps: int, bucket_mb: float, global_batch: int = GLOBAL_BATCH) -> dict:
    """One pass on this rank: seconds per step for each round, and DataParallel's time per step."""
    import xpgrad.distributed as dist
    from xpgrad.bench_mlp import CONFIGS, pinned_threads, quiet_gc, xpgrad_training_parts

    if dist.launched_world_size() > 1:
        dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = dict(CONFIGS["b"], batch=global_batch)
    model, x, y, loss_fn, optimizer = xpgrad_training_parts(cfg)
    share = dist.local_batch_size(global_batch, world)
    x, y = x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
    x.data, y.data = x.data.copy(), y.data.copy()  # contiguous, like a loader's batch
    parallel = dist.DataParallel(model, bucket_mb=bucket_mb)
    x, y = x.detach(), y.detach()

    def step():
        optimizer.zero_grad()
        loss_fn(parallel(x), y).backward()
        parallel.sync_gradients()
        optimizer.step()

    quiet_gc()
    times, comm, copy, wait = [], [], [], []
    with pinned_threads(1):
        for _ in range(3):
            step()
        for _ in range(rounds):
            dist.barrier()
            c0, k0, w0 = parallel.comm_seconds, parallel.copy_seconds, parallel.wait_seconds
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times.append((time.perf_counter() - start) / steps)
            comm.append((parallel.comm_seconds - c0) / steps)
            copy.append((parallel.copy_seconds - k0) / steps)
            wait.append((parallel.wait_seconds - w0) / steps)
    buckets = [b.offsets[-1] * 4 for b in parallel._buckets]
    return {
        "rank": rank,
        "world_size": world,
        "step_s": times,
        "comm_s": comm,
        "copy_s": copy,
        "wait_s": wait,
        "bucket_bytes": buckets,
    }


def run_pass(ranks: int, rounds: int, steps: int, bucket_mb: float) -> dict:
    """One pass in a fresh process (under mpiexec when ranks > 1); rank 0's figures."""
    script = [
        sys.executable,
        __file__,
        "--worker",
        "--rounds",
        str(rounds),
        "--steps",
        str(steps),
        "--bucket-mb",
        str(bucket_mb),
    ]
    mpiexec = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = ([mpiexec, "-n", str(ranks)] if ranks > 1 else []) + script
    done = subprocess.run(
        command, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"pass with {ranks} ranks failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values: list) -> float:
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return (q[2] - q[0]) / statistics.median(values)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--bucket-mb", type=float, default=25.0)
    p.add_argument("--global-batch", type=int, default=GLOBAL_BATCH, help=argparse.SUPPRESS)  # worker only
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        result = worker(args.rounds, args.steps, args.bucket_mb, args.global_batch)
        if result["rank"] == 0:
            print(json.dumps(result), flush=True)
        return 0

    from xpgrad.bench_mlp import environment
    from xpgrad.distributed.mpi_comm import mpi_library_version

    passes = []
    for i in range(args.passes):
        one = run_pass(1, args.rounds, args.steps, args.bucket_mb)
        many = run_pass(args.ranks, args.rounds, args.steps, args.bucket_mb)
        row = {
            "one_step_s": statistics.median(one["step_s"]),
            "one_spread": spread(one["step_s"]),
            "k_step_s": statistics.median(many["step_s"]),
            "k_spread": spread(many["step_s"]),
            "comm_s": statistics.median(many["comm_s"]),
            "copy_s": statistics.median(many["copy_s"]),
            "wait_s": statistics.median(many.get("wait_s") or [0.0]),
            "bucket_bytes": many["bucket_bytes"],
            "load_average_1min": os.getloadavg()[0],
        }
        row["speedup"] = row["one_step_s"] / row["k_step_s"]
        passes.append(row)
        print(
            f"pass {i + 1}: 1 rank {1 / row['one_step_s']:.2f} steps/s (spread {row['one_spread']:.1%}), "
            f"{args.ranks} ranks {1 / row['k_step_s']:.2f} steps/s (spread {row['k_spread']:.1%}); "
            f"speed-up {row['speedup']:.3f}x; all-reduce {row['comm_s'] * 1e3:.2f} ms/step, "
            f"bucket copies {row['copy_s'] * 1e3:.2f} ms/step (barrier waits {row['wait_s'] * 1e3:.2f})",
            flush=True,
        )
    speedups = [r["speedup"] for r in passes]
    summary = {
        "config": f"(b) 784-1024-1024-10, global batch {GLOBAL_BATCH}, float32, SGD, 1 thread per rank",
        "ranks": args.ranks,
        "bucket_mb": args.bucket_mb,
        "buckets_bytes": passes[0]["bucket_bytes"],
        "speedup_median": statistics.median(speedups),
        "speedup_min": min(speedups),
        "speedup_max": max(speedups),
        "one_steps_per_s": 1 / statistics.median(r["one_step_s"] for r in passes),
        "k_steps_per_s": 1 / statistics.median(r["k_step_s"] for r in passes),
        "comm_ms_per_step": 1e3 * statistics.median(r["comm_s"] for r in passes),
        "copy_ms_per_step": 1e3 * statistics.median(r["copy_s"] for r in passes),
        "wait_ms_per_step": 1e3 * statistics.median(r["wait_s"] for r in passes),
        "mpi": mpi_library_version(),
        "environment": environment(),
        "passes": passes,
    }
    print(
        f"speed-up of {args.ranks} ranks over 1: median {summary['speedup_median']:.3f}x "
        f"(range {summary['speedup_min']:.3f}-{summary['speedup_max']:.3f} over {args.passes} passes); "
        f"{summary['one_steps_per_s']:.2f} -> {summary['k_steps_per_s']:.2f} steps/s; all-reduce "
        f"{summary['comm_ms_per_step']:.2f} ms/step, copies {summary['copy_ms_per_step']:.2f} ms/step; "
        f"buckets {summary['buckets_bytes']} bytes (bucket_mb {args.bucket_mb:g})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
