"""Data-parallel scaling on CPU ranks: steps/s of `mpiexec -n K` against one process, config (b).

    python bench/distributed_scaling.py [--ranks 2] [--passes 5] [--bucket-mb 25] [--references] [--json PATH]

Config (b) of `xpgrad bench mlp` (MLP 784-1024-1024-10, ReLU, softmax cross-entropy, SGD) with a
global batch of 512: one rank takes all 512 rows, K ranks 512/K each, through DataParallel. Every
rank runs 1 thread (OMP/OPENBLAS/NUMBA_NUM_THREADS=1 and threadpoolctl). The driver alternates
passes of 1 and K ranks (each pass a fresh process group) so drift hits both alike, and reports per
pass the median step time over rounds, the K-rank speed-up, and per step the time DataParallel
spent in the gradient all-reduce (including any wait for the slower rank) and in bucket copies.
With `--references` each pass also runs K ranks with a barrier in place of the gradient exchange
(the ranks in lockstep, nothing exchanged) and with nothing in its place (each rank on its own):
the speed-ups the machine's cores allow the compute, with and without lockstep, so a shortfall
splits into what the cores cost and what the exchange costs.

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


EXCHANGES = ("gradients", "barrier", "none")  # what a K-rank step does between backward and update


def worker(
    rounds: int, steps: int, bucket_mb: float, global_batch: int = GLOBAL_BATCH, sync_only=False, exchange="gradients"
) -> dict:
    """One pass on this rank: seconds per step for each round, and DataParallel's time per step
    (`sync_only`: seconds per `sync_gradients` alone, on the gradients of one backward). Between
    backward and update a step runs `exchange`: "gradients" (`sync_gradients`: the real step),
    "barrier" (a barrier only: the ranks in lockstep, nothing exchanged) or "none" (each rank on
    its own: what the cores give the compute alone)."""
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

    between = {"gradients": parallel.sync_gradients, "barrier": dist.barrier, "none": lambda: None}[exchange]

    def step():
        optimizer.zero_grad()
        loss_fn(parallel(x), y).backward()
        between()
        optimizer.step()

    quiet_gc()
    if sync_only:
        return sync_worker(rounds * steps, parallel, model, lambda: loss_fn(parallel(x), y).backward())
    times, comm, copy, wait = [], [], [], []
    with pinned_threads(1):
        for _ in range(3):
            step()
        for _ in range(rounds):
            dist.barrier()
            c0, k0, w0 = parallel.comm_seconds, parallel.copy_seconds, getattr(parallel, "wait_seconds", 0.0)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times.append((time.perf_counter() - start) / steps)
            comm.append((parallel.comm_seconds - c0) / steps)
            copy.append((parallel.copy_seconds - k0) / steps)
            wait.append((getattr(parallel, "wait_seconds", 0.0) - w0) / steps)
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


def sync_worker(calls: int, parallel, model, backward) -> dict:
    """Seconds per `sync_gradients` of the same backward's gradients, `calls` times after 10 warm-up
    calls, each after a barrier: the communication alone, without the compute's noise."""
    import xpgrad.distributed as dist
    from xpgrad.bench_mlp import pinned_threads

    with pinned_threads(1):
        backward()
        grads = [p.grad for p in model.parameters()]
        times = []
        for _ in range(10 + calls):
            for p, g in zip(model.parameters(), grads):
                p.grad = g
            dist.barrier()
            start = time.perf_counter()
            parallel.sync_gradients()
            times.append(time.perf_counter() - start)
    return {"rank": dist.get_rank(), "world_size": dist.get_world_size(), "sync_s": times[10:]}


def run_pass(
    ranks: int, rounds: int, steps: int, bucket_mb: float, sync_only: bool = False, exchange: str = "gradients"
) -> dict:
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
        "--exchange",
        exchange,
    ] + (["--sync-only"] if sync_only else [])
    mpiexec = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = ([mpiexec, "-n", str(ranks)] if ranks > 1 else []) + script
    done = subprocess.run(
        command, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"pass with {ranks} ranks failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def busy_seconds() -> float | None:
    """CPU seconds every process of the machine has run (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this driver and of the passes it has run (waited-for children)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignLoad:
    """CPU time used by processes other than this benchmark's (other users of the shared cores who
    do not take the benchmark lock) between `start` and `stop`, from /proc/stat minus our own."""

    def __init__(self):
        self.busy = self.own = None

    def start(self) -> None:
        self.busy, self.own = busy_seconds(), own_seconds()

    def stop(self) -> float:
        busy = busy_seconds()
        if busy is None or self.busy is None:
            return 0.0
        return max(0.0, (busy - self.busy) - (own_seconds() - self.own))


def wait_for_quiet(limit_s: float, threshold: float = 0.05) -> float:
    """Wait (up to `limit_s`) for a second in which other processes used under `threshold` of a core;
    returns the seconds waited."""
    load, waited = ForeignLoad(), 0.0
    while waited < limit_s:
        load.start()
        time.sleep(1.0)
        waited += 1.0
        if load.stop() < threshold:
            break
    return waited


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
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.05,
        help="redo a pass in which other processes used more than this share of one core (default 0.05)",
    )
    p.add_argument("--max-redo", type=int, default=10, help="passes redone at most (default 10)")
    p.add_argument("--quiet-wait", type=float, default=120.0, help="seconds to wait at most for quiet before a pass")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--sync-only",
        action="store_true",
        help="time sync_gradients alone on K ranks (rounds x steps calls per pass), not the steps",
    )
    p.add_argument("--exchange", choices=EXCHANGES, default="gradients", help=argparse.SUPPRESS)  # worker only
    p.add_argument(
        "--references",
        action="store_true",
        help="each pass also runs K ranks with a barrier in place of the gradient exchange and with no "
        "exchange at all: the speed-ups the machine allows without the exchange's own work",
    )
    args = p.parse_args()
    if args.worker:
        result = worker(args.rounds, args.steps, args.bucket_mb, args.global_batch, args.sync_only, args.exchange)
        if result["rank"] == 0:
            print(json.dumps(result), flush=True)
        return 0

    from xpgrad.bench_mlp import environment
    from xpgrad.distributed.mpi_comm import mpi_library_version

    if args.sync_only:
        return sync_only(args)
    passes, redone, load = [], 0, ForeignLoad()
    while len(passes) < args.passes:
        waited = wait_for_quiet(args.quiet_wait)
        start = time.perf_counter()
        load.start()
        one = run_pass(1, args.rounds, args.steps, args.bucket_mb)
        many = run_pass(args.ranks, args.rounds, args.steps, args.bucket_mb)
        references = {  # K ranks with a barrier, or nothing, in place of the exchange
            exchange: run_pass(args.ranks, args.rounds, args.steps, args.bucket_mb, exchange=exchange)["step_s"]
            for exchange in (EXCHANGES[1:] if args.references else ())
        }
        foreign = load.stop()
        wall = time.perf_counter() - start
        if foreign > args.max_foreign * wall and redone < args.max_redo:
            redone += 1
            print(
                f"pass {len(passes) + 1} disturbed: other processes used {foreign:.1f} CPU s in {wall:.1f} s; again",
                flush=True,
            )
            continue
        i = len(passes)
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
            "foreign_cpu_s": foreign,
            "pass_wall_s": wall,
            "waited_for_quiet_s": waited,
        }
        row["speedup"] = row["one_step_s"] / row["k_step_s"]
        for exchange, step_s in references.items():
            row[f"speedup_{exchange}"] = row["one_step_s"] / statistics.median(step_s)
        passes.append(row)
        print(
            f"pass {i + 1}: 1 rank {1 / row['one_step_s']:.2f} steps/s (spread {row['one_spread']:.1%}), "
            f"{args.ranks} ranks {1 / row['k_step_s']:.2f} steps/s (spread {row['k_spread']:.1%}); "
            f"speed-up {row['speedup']:.3f}x; all-reduce {row['comm_s'] * 1e3:.2f} ms/step, "
            f"bucket copies {row['copy_s'] * 1e3:.2f} ms/step (barrier waits {row['wait_s'] * 1e3:.2f}); "
            f"other processes {foreign:.2f} CPU s in {wall:.1f} s"
            + "".join(f"; with {e} in place of the exchange {row[f'speedup_{e}']:.3f}x" for e in references),
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
        **{
            f"speedup_{exchange}_median": statistics.median(r[f"speedup_{exchange}"] for r in passes)
            for exchange in (EXCHANGES[1:] if args.references else ())
        },
        "passes_redone": redone,
        "mpi": mpi_library_version(),
        "environment": environment(),
        "passes": passes,
    }
    print(
        f"speed-up of {args.ranks} ranks over 1: median {summary['speedup_median']:.3f}x "
        f"(range {summary['speedup_min']:.3f}-{summary['speedup_max']:.3f} over {args.passes} passes); "
        f"{summary['one_steps_per_s']:.2f} -> {summary['k_steps_per_s']:.2f} steps/s; all-reduce "
        f"{summary['comm_ms_per_step']:.2f} ms/step, copies {summary['copy_ms_per_step']:.2f} ms/step; "
        f"buckets {summary['buckets_bytes']} bytes (bucket_mb {args.bucket_mb:g}); {redone} disturbed passes redone"
        + "".join(
            f"; with {e} in place of the exchange: median {summary[f'speedup_{e}_median']:.3f}x"
            for e in (EXCHANGES[1:] if args.references else ())
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def sync_only(args) -> int:
    """Per pass, the median time of one sync_gradients on K ranks (and its quartiles)."""
    medians = []
    for i in range(args.passes):
        wait_for_quiet(args.quiet_wait)
        times = run_pass(args.ranks, args.rounds * 4, args.steps * 4, args.bucket_mb, sync_only=True)["sync_s"]
        q = statistics.quantiles(times, n=4)
        medians.append(statistics.median(times))
        print(
            f"pass {i + 1}: sync_gradients alone on {args.ranks} ranks {medians[-1] * 1e3:.3f} ms "
            f"(quartiles {q[0] * 1e3:.3f}-{q[2] * 1e3:.3f}, {len(times)} calls)",
            flush=True,
        )
    print(
        f"sync_gradients alone: median {statistics.median(medians) * 1e3:.3f} ms "
        f"(range {min(medians) * 1e3:.3f}-{max(medians) * 1e3:.3f} over {args.passes} passes)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"ranks": args.ranks, "sync_s_medians": medians}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
