"""DataParallel: one model replica per rank, gradients averaged over the ranks after each backward.

    dist.init_process_group()
    model = dist.DataParallel(net)        # rank 0's parameters and buffers on every rank
    loader = DataLoader(data, 512, shuffle=True, seed=0, shard=(dist.get_rank(), dist.get_world_size()))
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        model.sync_gradients()            # weighted by each rank's share of the global batch
        opt.step()

Gradients travel in a few large flat buckets (`bucket_mb` each, filled from the last parameter to
the first). When every rank is on one node and the buckets hold NumPy arrays, one exchange through
MPI-3 shared memory sums every bucket and the step's (samples, loss, stop) with two barriers per
step (shared_memory.py: each rank copies only the parts of its gradients that other ranks sum, and
the weighting by each rank's share of the samples is folded into the sum). Otherwise, per bucket:
one copy in (scaled by this rank's share of the samples), one MPI_Allreduce or NCCL all-reduce.
Either way the gradients become views of the result (on one node: of memory every rank of the
node shares, so they are read-only arrays; valid until the sync after the next). A parameter without a gradient
on one rank (unused in its step) sends zeros, so every rank sends the same buffers. The reduction
runs after backward, not overlapped with it: on CPU ranks MPI progresses only inside MPI calls,
so an overlap would need a progress thread (see bench/RESULTS.md for the measured share).
"""

from __future__ import annotations

import json
import time

import numpy as np

from ..nn import Module
from ..tensor import Tensor
from .collectives import all_gather_bytes, broadcast, peers
from .errors import ModelMismatchError
from .group import group
from .mpi_comm import is_cupy_array

DEFAULT_BUCKET_MB = 25.0  # PyTorch DDP's default


class RankStop:
    """A stop request that every rank sees at the same step: `catch_sigint` sets `requested` on the
    rank that got Ctrl-C; it reads true (`bool(stop)`) on every rank once a `sync_gradients` has
    found it requested on any rank."""

    def __init__(self):
        self.requested = False
        self.agreed = False

    def __bool__(self):
        return self.agreed


class _Bucket:
    """Gradients of some parameters (one dtype, one array library) in one flat buffer, summed over
    the ranks by a reducer of the communicator (`bucket_reducer`)."""

    def __init__(self, params):
        self.params = params
        self.offsets = np.cumsum([0] + [p.size for p in params]).tolist()
        self.reducer = None

    def pack(self, weight: float, comm) -> None:
        """Copy each gradient times `weight` into the buffer to reduce (zeros for a missing gradient)."""
        if self.reducer is None:
            self.reducer = comm.bucket_reducer(self.params[0].data, self.offsets[-1])
        flat = self.reducer.input()
        xp = _array_module(flat)
        for p, start, stop in zip(self.params, self.offsets, self.offsets[1:]):
            view = flat[start:stop]
            if p.grad is None or weight == 0.0:
                view[...] = 0
            else:
                xp.multiply(p.grad.data.reshape(-1), weight, out=view)

    def reduce(self):
        """The sum over the ranks of what each packed."""
        return self.reducer.reduce()

    def unpack(self, flat) -> None:
        """Each parameter's gradient becomes its (reshaped) view of the reduced buffer `flat`."""
        for p, start, stop in zip(self.params, self.offsets, self.offsets[1:]):
            p.grad = Tensor(flat[start:stop].reshape(p.shape))


class DataParallel(Module):
    """Wrap `module` for data-parallel training over the process group (see the module docstring).

    At construction every rank checks that all ranks hold the same parameter and buffer names,
    shapes and dtypes (ModelMismatchError on every rank otherwise, before any gradient
    collective), then takes rank 0's values. `bucket_mb` is the size of one gradient bucket.
    In a one-rank group nothing is communicated.
    """

    def __init__(self, module: Module, bucket_mb: float = DEFAULT_BUCKET_MB):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel: expected a Module, got {type(module).__name__}")
        bucket_mb = float(bucket_mb)
        if not bucket_mb > 0:
            raise ValueError(f"DataParallel bucket_mb must be positive, got {bucket_mb!r}")
        self.module = module
        self.bucket_mb = bucket_mb
        self.batch_samples = 0  # samples in the last training-mode forward
        self.comm_seconds = 0.0  # time spent in gradient collectives since construction (NCCL: launching them)
        self.copy_seconds = 0.0  # time spent packing and unpacking buckets
        self.wait_seconds = 0.0  # of comm_seconds, in the shared-memory barriers (waiting for the slower rank)
        self.steps = 0
        self._buckets = _make_buckets(module.parameters(), bucket_mb)
        self._exchange = None  # on one node with NumPy buckets: the SharedMemoryExchange that sums them
        g = group()
        if g.world_size > 1:
            check_same_model(module, bucket_mb)
            for t in module._state_tensors().values():
                broadcast(t, root=0)
            self._exchange = g.comm.shared_exchange([b.params for b in self._buckets])

    def forward(self, *args, **kwargs):
        if self.training and args and hasattr(args[0], "shape") and len(args[0].shape) > 0:
            self.batch_samples = int(args[0].shape[0])
        return self.module(*args, **kwargs)

    def config(self) -> dict | None:
        return self.module.config()

    def sync_gradients(self, num_samples: int | None = None, *, loss_sum=0.0, stop=None) -> tuple[int, float]:
        """Average the gradients over the ranks, each rank weighted by its `num_samples` (default:
        the batch size of the last training forward), so the result is the gradient of the mean
        loss over the global batch.

        Also sums `loss_sum` (this rank's loss times its samples) over the ranks, and agrees on a
        `RankStop`. Returns (samples in the global batch, summed loss_sum).
        """
        n = self.batch_samples if num_samples is None else int(num_samples)
        requested = bool(stop is not None and stop.requested)
        g = peers("DataParallel.sync_gradients")
        if g is None:
            total_samples, total_loss, agreed = n, float(loss_sum), requested
        else:
            sync = self._sync_buckets if self._exchange is None else self._exchange.sync
            (total_samples, total_loss, agreed), (copy, wait, summing) = sync(
                n, float(loss_sum), requested, time.perf_counter
            )
            self.copy_seconds += copy
            self.wait_seconds += wait
            self.comm_seconds += wait + summing
            self.steps += 1
        if stop is not None:
            stop.agreed = agreed
        return total_samples, total_loss

    def _sync_buckets(self, samples: int, loss_sum: float, requested: bool, clock) -> tuple[tuple, tuple]:
        """The exchange without shared memory: an all-reduce of (samples, loss, stop), then per
        bucket a scaled copy in, an all-reduce and the gradients as views of the result. Returns
        what SharedMemoryExchange.sync returns (no separate barrier wait: 0)."""
        comm = group().comm
        t0 = clock()
        totals = np.array([samples, loss_sum if samples else 0.0, float(requested)], dtype=np.float64)
        comm.all_reduce_sum(totals)
        total_samples = int(totals[0])
        weight = samples / total_samples if total_samples else 0.0
        summing = clock() - t0
        copy = 0.0
        for bucket in self._buckets:
            t1 = clock()
            bucket.pack(weight, comm)
            t2 = clock()
            flat = bucket.reduce()
            t3 = clock()
            bucket.unpack(flat)
            copy += (t2 - t1) + (clock() - t3)
            summing += t3 - t2
        return (total_samples, float(totals[1]), bool(totals[2] > 0)), (copy, 0.0, summing)

    def extra_repr(self) -> str:
        sizes = ", ".join(f"{b.offsets[-1]}" for b in self._buckets)
        return f"world_size={group().world_size}, bucket_mb={self.bucket_mb:g}, buckets=[{sizes}] elements"


def _array_module(array):
    if is_cupy_array(array):
        import cupy

        return cupy
    return np


def _make_buckets(params, bucket_mb: float) -> list[_Bucket]:
    """Parameters from last to first in buckets of at most `bucket_mb` MiB (a larger parameter has its
    own), one dtype and one array library per bucket."""
    limit = bucket_mb * 2**20
    buckets, current, size, key = [], [], 0, None
    for p in reversed(params):
        p_key = (type(p.data), str(p.data.dtype), str(getattr(p.data, "device", "")))
        if current and (p_key != key or size + p.data.nbytes > limit):
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        size += p.data.nbytes
        key = p_key
    if current:
        buckets.append(_Bucket(current))
    return buckets


def model_signature(module: Module, bucket_mb: float) -> list:
    """[kind, name, shape, dtype, array library] of every parameter and buffer, and the bucket size."""
    entries = []
    for kind, items in (("parameter", module.named_parameters()), ("buffer", module.named_buffers())):
        for name, t in items:
            entries.append([kind, name, list(t.shape), str(t.data.dtype), type(t.data).__module__.split(".")[0]])
    return [entries, bucket_mb]


def check_same_model(module: Module, bucket_mb: float) -> None:
    """Raise ModelMismatchError on every rank unless all ranks hold the same model signature."""
    own = model_signature(module, bucket_mb)
    signatures = [json.loads(b) for b in all_gather_bytes(json.dumps(own).encode())]
    problems = [
        f"rank {rank}: {_difference(signatures[0], sig)}" for rank, sig in enumerate(signatures) if sig != signatures[0]
    ]
    if problems:
        raise ModelMismatchError(
            f"DataParallel: the ranks hold different models ({type(module).__name__}); compared with rank 0, "
            + "; ".join(problems)
            + ". Every rank must build the same architecture (same sizes, dtypes and bucket_mb)"
        )


def _difference(reference: list, other: list) -> str:
    """The first difference between rank 0's signature and another's, in words."""
    (ref_entries, ref_bucket), (entries, bucket) = reference, other
    if bucket != ref_bucket:
        return f"bucket_mb {bucket:g} instead of {ref_bucket:g}"
    ref_by_name = {(e[0], e[1]): e for e in ref_entries}
    by_name = {(e[0], e[1]): e for e in entries}
    for key, ref in ref_by_name.items():
        mine = by_name.get(key)
        if mine is None:
            return f"no {key[0]} {key[1]!r}"
        if mine != ref:
            return (
                f"{key[0]} {key[1]!r} has shape {tuple(mine[2])} {mine[3]} ({mine[4]}) instead of "
                f"{tuple(ref[2])} {ref[3]} ({ref[4]})"
            )
    for key in by_name:
        if key not in ref_by_name:
            return f"an extra {key[0]} {key[1]!r}"
    return "the same tensors in a different order"
