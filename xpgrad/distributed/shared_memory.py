"""One gradient exchange per step through MPI-3 shared memory, for ranks that all share one node.

`SharedMemoryExchange.sync` replaces, for NumPy buckets, the per-bucket pack / all-reduce / unpack
and the small all-reduce of (samples, loss, stop) with two barriers per step, whatever the number
of buckets. Bucket b of N elements is cut into K slices, slice r summed by rank r:

1. each rank writes its (samples, loss, stop) into its header and copies its raw (unscaled)
   gradients into its own segment of the window, only the parts in the other ranks' slices
   ((K-1)/K of the bytes: for 2 ranks, half a copy of the gradients);
2. fence (Win_sync, barrier, Win_sync): every header and segment is visible to every rank;
3. each rank sums the headers (rank order: every rank gets the same totals), weighs each rank q by
   w_q = samples_q / total samples, and writes slice r of the result (in rank 0's part of the
   window): sum over q, in rank order, of w_q times rank q's gradient, reading its own gradient
   where it lives and the others' from their segments, in one pass (a Numba loop; a rank with no
   samples or no gradient adds nothing);
4. fence: the whole result is visible; each parameter's `.grad` becomes its view of the result.

The arithmetic is the one of scaling each gradient and then summing in rank order (w_q * g_q in the
gradient's dtype, then added in rank order), and every element is computed by one rank only, so
every rank holds bit-identical gradients.

Aliasing: the gradients that `sync` leaves in `.grad` are views of memory shared by every rank on
the node; the optimizer only reads them. They are read-only arrays: writing into them in place
(clipping with `*=`) would change every rank's gradient K times, so NumPy refuses it. Two
windows alternate from step to step, so a rank may still read the previous result while a faster
rank fills the next one: a result stays valid until the `sync` after the next (zero_grad drops
the views before that in a training loop).
"""

from __future__ import annotations

import numpy as np

from ..kernels._cache import cached_njit
from ..tensor import Tensor

_ALIGN = 64  # bytes: every region starts on a cache line
_HEADER = 3  # float64 per rank: samples, loss sum, stop requested

_njit = cached_njit(error_model="numpy")  # no fastmath: w*x rounded, then added (no FMA contraction)


@_njit
def _scaled(out, w, x):
    for i in range(out.shape[0]):
        out[i] = w * x[i]


@_njit
def _scaled_sum(out, w0, x0, w1, x1):
    for i in range(out.shape[0]):
        out[i] = w0 * x0[i] + w1 * x1[i]


@_njit
def _add_scaled(out, w, x):
    for i in range(out.shape[0]):
        out[i] = out[i] + w * x[i]


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


class _Layout:
    """Where one bucket lives in the window and how its parameters split over the ranks' slices."""

    def __init__(self, params, dtype, rank: int, ranks: int):
        self.params = params
        self.dtype = dtype
        sizes = [p.size for p in params]
        self.offsets = np.cumsum([0] + sizes).tolist()
        self.size = self.offsets[-1]
        lo, hi = self.size * rank // ranks, self.size * (rank + 1) // ranks
        self.own = (lo, hi)
        # (parameter index, start, stop) in bucket coordinates: inside and outside this rank's slice
        self.inside, self.outside = [], []
        for i, (start, stop) in enumerate(zip(self.offsets, self.offsets[1:])):
            a, b = max(start, lo), min(stop, hi)
            if a < b:
                self.inside.append((i, a, b))
            for a, b in ((start, min(stop, lo)), (max(start, hi), stop)):
                if a < b:
                    self.outside.append((i, a, b))


class SharedMemoryExchange:
    """Sums NumPy gradient buckets over the ranks of one node, with the step's (samples, loss, stop),
    in one exchange (see the module docstring)."""

    def __init__(self, comm, buckets):
        """`buckets`: one list of parameters per bucket, all of one NumPy dtype each."""
        mpi, node = comm.MPI, comm.node
        self.node = node
        self.rank, self.ranks = node.Get_rank(), node.Get_size()
        self.layouts = [_Layout(params, np.dtype(params[0].data.dtype), self.rank, self.ranks) for params in buckets]
        # a rank's segment: header, then each bucket's input; rank 0's also holds each bucket's result
        seg_offsets, size = [], _aligned(_HEADER * 8)
        for lay in self.layouts:
            seg_offsets.append(size)
            size += _aligned(lay.size * lay.dtype.itemsize)
        res_offsets = []
        for lay in self.layouts:
            res_offsets.append(size)
            size += _aligned(lay.size * lay.dtype.itemsize)
        own_bytes = size if self.rank == 0 else res_offsets[0] if res_offsets else size
        self.windows, self.headers, self.inputs, self.results = [], [], [], []
        for _ in range(2):
            window = mpi.Win.Allocate_shared(own_bytes, 1, comm=node)
            window.Lock_all()
            self.windows.append(window)
            memory = [window.Shared_query(q)[0] for q in range(self.ranks)]
            self.headers.append([np.frombuffer(m, dtype=np.float64, count=_HEADER) for m in memory])
            self.inputs.append(
                [
                    [np.frombuffer(m, dtype=lay.dtype, count=lay.size, offset=off) for m in memory]
                    for lay, off in zip(self.layouts, seg_offsets)
                ]
            )
            self.results.append(
                [
                    np.frombuffer(memory[0], dtype=lay.dtype, count=lay.size, offset=off)
                    for lay, off in zip(self.layouts, res_offsets)
                ]
            )
        self.turn = 0

    def sync(self, samples: int, loss_sum: float, requested: bool, clock) -> tuple[tuple, tuple]:
        """Sum every bucket over the ranks, weighted by their samples, and leave each parameter's
        `.grad` a view of the result. Returns ((total samples, total loss_sum, any rank requested a
        stop), (seconds copying into the window, waiting in the two fences, summing this rank's
        slices)) by `clock`."""
        turn, r = self.turn, self.rank
        self.turn = 1 - turn
        window, inputs, results = self.windows[turn], self.inputs[turn], self.results[turn]
        t0 = clock()
        header = self.headers[turn][r]
        header[0], header[1], header[2] = samples, loss_sum if samples else 0.0, float(requested)
        grads = []
        for lay, segments in zip(self.layouts, inputs):
            flat = [None if p.grad is None else p.grad.data.reshape(-1) for p in lay.params]
            grads.append(flat)
            mine = segments[r]
            for i, a, b in lay.outside:
                start = lay.offsets[i]
                if flat[i] is None or not samples:
                    mine[a:b] = 0
                else:
                    np.copyto(mine[a:b], flat[i][a - start : b - start])
        t1 = clock()
        _fence(window, self.node)
        t2 = clock()
        totals = [0.0, 0.0, 0.0]
        counts = []
        for h in self.headers[turn]:
            n, loss, stop = h.tolist()
            counts.append(n)
            totals[0] += n
            totals[1] += loss
            totals[2] += stop
        total = totals[0]
        for lay, segments, result, flat in zip(self.layouts, inputs, results, grads):
            weights = [lay.dtype.type(n / total) if n else None for n in counts]
            for i, a, b in lay.inside:
                start = lay.offsets[i]
                terms = []
                for q in range(self.ranks):
                    if weights[q] is None:
                        continue
                    if q == r:
                        if flat[i] is not None:
                            terms.append((weights[q], flat[i][a - start : b - start]))
                    else:
                        terms.append((weights[q], segments[q][a:b]))
                out = result[a:b]
                if not terms:
                    out[...] = 0
                elif len(terms) == 1:
                    _scaled(out, *terms[0])
                else:
                    _scaled_sum(out, *terms[0], *terms[1])
                    for w, x in terms[2:]:
                        _add_scaled(out, w, x)
        t3 = clock()
        _fence(window, self.node)
        t4 = clock()
        for lay, result in zip(self.layouts, results):
            for p, start, stop in zip(lay.params, lay.offsets, lay.offsets[1:]):
                p.grad = Tensor(result[start:stop].reshape(p.shape))
                p.grad.data.flags.writeable = False  # shared by every rank: an in-place write would apply K times
        timings = ((t1 - t0) + (clock() - t4), (t2 - t1) + (t4 - t3), t3 - t2)
        return (int(total), totals[1], totals[2] > 0), timings


def _fence(window, node) -> None:
    """Every rank's stores to `window` are visible to every rank (MPI's unified-model idiom)."""
    window.Sync()
    node.Barrier()
    window.Sync()
