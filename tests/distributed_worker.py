"""Programs that tests/test_distributed.py runs under `mpiexec -n K` (or alone): python distributed_worker.py JOB ...

collectives      checks of all_reduce / broadcast / barrier / sync_gradients on every rank; prints "ok"
loop OUT OPT DT  a hand-written DataParallel training loop; rank 0 saves the parameters to OUT (.npz)
raise-at-step-3  the loop, with rank 1 raising at step 3
steps-forever    the loop without end, each rank writing its pid to pid.<rank> first (kill -9 test)
mismatch         a parameter whose shape depends on the rank; every rank reports what it caught
nccl             (GPU) NCCL collectives and the gradient buckets on CuPy arrays, on every rank; prints "ok"
"""

import os
import sys
from pathlib import Path

import numpy as np

import xpgrad as xg
import xpgrad.distributed as dist
from xpgrad import nn, optim
from xpgrad.data import ArrayDataset, DataLoader, spiral


def join():
    """Join the ranks when launched by mpiexec with K > 1; alone, run with no communication."""
    if dist.launched_world_size() > 1:
        dist.init_process_group()
    return dist.get_rank(), dist.get_world_size()


def check(condition, what):
    if not condition:
        raise AssertionError(f"rank {dist.get_rank()}: {what}")


def collectives():
    rank, world = join()
    total = sum(range(1, world + 1))
    a = np.full((2, 3), rank + 1.0)
    dist.all_reduce(a)
    check(np.all(a == total), f"all_reduce sum of an array gave {a}")
    t = xg.tensor(np.full((3, 2), rank + 1.0)).T  # a transposed (non-contiguous) Tensor
    dist.all_reduce(t, op="mean")
    check(np.allclose(t.numpy(), total / world), f"all_reduce mean of a Tensor gave {t.numpy()}")
    strided = np.zeros((4, 4))
    view = strided[:, ::2]
    view[...] = rank + 1.0
    dist.all_reduce(view)
    check(np.all(strided[:, ::2] == total) and np.all(strided[:, 1::2] == 0), "all_reduce of a strided view")
    ints = np.array([rank], dtype=np.int64)
    dist.all_reduce(ints)
    check(ints[0] == sum(range(world)), f"integer all_reduce gave {ints}")
    b = np.full(5, float(rank))
    dist.broadcast(b, root=world - 1)
    check(np.all(b == world - 1), f"broadcast from the last rank gave {b}")
    dist.barrier()

    # gradients: rank r has r + 1 samples; parameter "unused" has no gradient on rank 0
    xg.manual_seed(rank)  # different initial values: DataParallel must take rank 0's
    net = nn.Linear(3, 2, dtype="float64")
    net.unused = xg.tensor(np.zeros(4), requires_grad=True)
    model = dist.DataParallel(net, bucket_mb=1e-5)  # tiny buckets: one parameter per bucket
    check(len(model._buckets) == 3, f"expected 3 buckets, got {len(model._buckets)}")
    samples = rank + 1
    net.weight.grad = xg.tensor(np.full(net.weight.shape, float(rank + 1)))
    net.bias.grad = xg.tensor(np.full(2, 10.0 * (rank + 1)))
    if rank > 0:
        net.unused.grad = xg.tensor(np.ones(4))
    n_total, loss_total = model.sync_gradients(samples, loss_sum=float(samples))
    n_all = sum(r + 1 for r in range(world))
    expected_w = sum((r + 1) * (r + 1) for r in range(world)) / n_all
    check(n_total == n_all and loss_total == n_all, f"totals {n_total}, {loss_total}")
    check(np.allclose(net.weight.grad.numpy(), expected_w), f"weighted weight grad {net.weight.grad.numpy()}")
    check(np.allclose(net.bias.grad.numpy(), 10 * expected_w), "weighted bias grad")
    unused = sum(r + 1 for r in range(1, world)) / n_all
    check(np.allclose(net.unused.grad.numpy(), unused), f"zero-filled grad gave {net.unused.grad.numpy()}")
    # a rank with no samples adds nothing (not even its NaN gradients); every rank holds the same bits
    last = world - 1
    net.weight.grad = xg.tensor(np.full(net.weight.shape, np.nan if rank == last else (rank + 1) / 3))
    net.bias.grad, net.unused.grad = xg.tensor(np.full(2, 1.0)), None
    n_total, _ = model.sync_gradients(0 if rank == last else rank + 1)
    n_some = sum(r + 1 for r in range(last))
    expected_w = sum((r + 1) * (r + 1) / 3 for r in range(last)) / n_some
    check(n_total == n_some, f"total samples {n_total} with an empty rank")
    check(np.allclose(net.weight.grad.numpy(), expected_w), f"grad with an empty rank {net.weight.grad.numpy()}")
    check(np.all(net.unused.grad.numpy() == 0), "a gradient missing on every rank is not zero")
    grads = np.zeros((world, *net.weight.shape))
    grads[rank] = net.weight.grad.numpy()
    dist.all_reduce(grads)
    check(all(np.array_equal(grads[0], g) for g in grads), "the ranks' gradients differ")
    try:  # the synced gradients are shared by the node's ranks: in place, every rank would scale them
        net.weight.grad.data *= 0.5
        check(world == 1, "an in-place write into a synced gradient was allowed")
    except ValueError:
        pass
    check(np.array_equal(grads[rank], net.weight.grad.numpy()), "a refused in-place write changed the gradient")
    weights = np.zeros((world, *net.weight.shape))
    weights[rank] = net.weight.numpy()
    dist.all_reduce(weights)
    check(all(np.array_equal(weights[0], w) for w in weights), "parameters differ after DataParallel")
    capture_refuses_collectives(model, world)
    print(f"rank {rank}: ok", flush=True)


def capture_refuses_collectives(model, world):
    """Under xg.capture a collective would not be replayed: with K > 1 ranks, recording one raises
    CaptureError on every rank (call 2 records; call 1 runs eagerly); alone, nothing communicates."""

    def reduce_step(t):
        return dist.all_reduce(t * 2.0)

    def parallel_step(x):
        model.zero_grad()
        loss = (model(x) ** 2).sum()
        loss.backward()
        model.sync_gradients(1)
        return loss

    x = xg.tensor(np.ones((2, 3)))
    for fn, arg, name in ((reduce_step, xg.tensor(np.ones(3)), "all_reduce"), (parallel_step, x, "sync_gradients")):
        captured = xg.capture(fn)
        captured(arg)
        try:
            captured(arg)
            check(world == 1, f"a captured step recorded {name} without a word")
        except xg.CaptureError as e:
            check(world > 1 and f"{name}: communicates" in str(e) and "distributed_worker.py" in str(e), str(e))


def training_run(optimizer: str, dtype: str, steps=None, fail_at=None):
    """Train an MLP on the spiral with a global batch of 64 (the last batch is short and uneven)."""
    rank, world = join()
    x, y = spiral(n_per_class=70, seed=1)  # 210 samples: batches of 64, 64, 64, 18
    data = ArrayDataset(x, y, num_classes=3)
    xg.manual_seed(0)
    net = nn.MLP([2, 16, 3], dtype=dtype)
    model = dist.DataParallel(net)
    opt = (
        optim.Adam(net.parameters(), lr=0.01)
        if optimizer == "adam"
        else optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    )
    loader = DataLoader(data, 64, shuffle=True, seed=0, shard=(rank, world))
    step = 0
    for _epoch in range(1000 if steps == "forever" else 3):
        for xb, yb in loader:
            step += 1
            if fail_at is not None and rank == 1 and step == fail_at:
                raise RuntimeError(f"injected failure on rank 1 at step {step}")
            opt.zero_grad()
            xg.softmax_cross_entropy(model(xb), yb).backward()
            model.sync_gradients()
            opt.step()
    return rank, net


def loop(out, optimizer, dtype):
    rank, net = training_run(optimizer, dtype)
    if rank == 0:
        np.savez(out, **{name: p.numpy() for name, p in net.named_parameters()})
    if dist.get_world_size() == 1:
        check("mpi4py" not in sys.modules, "a one-process run imported mpi4py")


def steps_forever():
    rank, _ = join()
    Path(f"pid.{rank}").write_text(str(os.getpid()))
    training_run("sgd", "float32", steps="forever")


def mismatch():
    rank, _ = join()
    net = nn.MLP([4, 8 + rank, 3])
    try:
        dist.DataParallel(net)
    except dist.ModelMismatchError as err:
        print(f"rank {rank} raised ModelMismatchError: {err}", flush=True)
        sys.exit(3)
    print(f"rank {rank}: no error", flush=True)


def nccl():
    """The NCCL path, also with one rank (world size 1 skips communication in DataParallel, so the
    buckets are driven here directly through the NCCL communicator)."""
    import cupy

    from xpgrad.distributed.parallel import _Bucket

    group = dist.init_process_group("nccl")
    comm = group.comm
    check(
        comm.name == "nccl" and cupy.cuda.Device().id == group.local_rank % cupy.cuda.runtime.getDeviceCount(),
        "rank drives the wrong GPU",
    )
    world, rank = group.world_size, group.rank
    a = cupy.full(1000, rank + 1.0, dtype=cupy.float32)
    dist.all_reduce(a, op="mean")
    check(bool(cupy.all(a == sum(range(1, world + 1)) / world)), "NCCL all_reduce mean")
    b = cupy.arange(7, dtype=cupy.float64) * (rank + 1)
    dist.broadcast(b, root=0)
    check(bool(cupy.all(b == cupy.arange(7))), "NCCL broadcast")
    host = np.full(3, rank + 1.0)  # NumPy arrays go over MPI
    dist.all_reduce(host)
    check(np.all(host == sum(range(1, world + 1))), "host array under the NCCL backend")
    dist.barrier()

    # NCCL itself, also with one rank (the collectives above return early in a one-rank group)
    for dtype in ("float32", "float64", "int64", "complex128"):
        base = (cupy.arange(6) * (1 + 2j) if dtype.startswith("complex") else cupy.arange(6)).astype(dtype)
        v = base * (rank + 1)
        comm.all_reduce_sum(v)
        check(bool(cupy.all(v == base * sum(range(1, world + 1)))), f"NCCL all_reduce of {dtype}")
    flags = cupy.array([rank == 0, True])
    comm.broadcast(flags, 0)
    check(bool(flags.all()), "NCCL broadcast of a bool array")

    xg.set_backend("cupy")
    xg.manual_seed(0)
    net = nn.MLP([5, 7, 3], dtype="float64")
    check(all(p.data.device.id == cupy.cuda.Device().id for p in net.parameters()), "parameters on another GPU")
    x = xg.tensor(np.random.default_rng(0).standard_normal((8, 5)))
    xg.softmax_cross_entropy(net(x), xg.tensor(np.arange(8) % 3)).backward()
    expected = [p.grad.numpy() * world for p in net.parameters()]
    bucket = _Bucket(net.parameters())
    bucket.pack(1.0, comm)
    bucket.unpack(bucket.reduce())
    check(
        all(np.allclose(p.grad.numpy(), e, rtol=1e-12) for p, e in zip(net.parameters(), expected)),
        "NCCL gradient bucket",
    )
    if world > 1:
        loop("nccl.npz", "adam", "float64")
    print(f"rank {rank}: ok", flush=True)


if __name__ == "__main__":
    job, args = sys.argv[1], sys.argv[2:]
    if job == "collectives":
        collectives()
    elif job == "loop":
        loop(*args)
    elif job == "raise-at-step-3":
        training_run("sgd", "float32", fail_at=3)
    elif job == "steps-forever":
        steps_forever()
    elif job == "mismatch":
        mismatch()
    elif job == "nccl":
        nccl()
    else:
        raise SystemExit(f"unknown job {job!r}")
