"""all_reduce, broadcast and barrier on Tensors and raw arrays (NumPy or CuPy), in place.

In a one-rank group (no `init_process_group`, or a single process) they return their input
unchanged without communicating.
"""

from __future__ import annotations

import numpy as np

from .. import state
from ..autograd import user_site
from ..errors import CaptureError, DTypeError, NotATensorError
from ..tensor import Tensor
from .group import group
from .mpi_comm import is_cupy_array

OPS = ("sum", "mean")


def all_reduce(x, op: str = "sum"):
    """Replace `x` (a Tensor or an array) by its sum, or mean, over every rank; returns `x`."""
    if op not in OPS:
        raise ValueError(f"all_reduce: op must be one of {', '.join(OPS)}, got {op!r}")
    data = _array_of("all_reduce", x)
    kind = data.dtype.kind
    if kind not in "iufc" or (op == "mean" and kind not in "fc"):
        expected = "a floating-point" if op == "mean" else "a numeric"
        raise DTypeError(f"all_reduce(op={op!r}): expected {expected} array, got dtype {data.dtype}")
    g = peers("all_reduce")
    if g is None:
        return x

    def reduce(buffer):
        g.comm.all_reduce_sum(buffer)
        if op == "mean":
            buffer /= g.world_size

    _in_place(x, data, reduce)
    return x


def broadcast(x, root: int = 0):
    """Replace `x` (a Tensor or an array) on every rank by rank `root`'s; returns `x`."""
    data = _array_of("broadcast", x)
    world_size = group().world_size
    if not 0 <= root < world_size:
        raise ValueError(f"broadcast: root must be a rank from 0 to {world_size - 1}, got {root!r}")
    g = peers("broadcast")
    if g is not None:
        _in_place(x, data, lambda buffer: g.comm.broadcast(buffer, root))
    return x


def barrier() -> None:
    """Wait until every rank has reached this call (and, under NCCL, its GPU work has finished)."""
    g = peers("barrier")
    if g is not None:
        g.comm.barrier()


def all_gather_bytes(data: bytes) -> list[bytes]:
    """Every rank's `data`, in rank order (a list of one in a one-rank group)."""
    g = peers("all_gather_bytes")
    return [data] if g is None else g.comm.all_gather_bytes(data)


def peers(op: str):
    """The process group when collective `op` has other ranks to talk to, else None (a one-rank
    group: nothing is communicated). Communicating while this thread records an xg.capture step
    raises CaptureError naming `op` and the user's line: a replay runs the recorded array work
    only, never a collective, so the ranks would silently stop communicating. Every rank raises at
    the same call, so none is left waiting."""
    g = group()
    if g.world_size == 1:
        return None
    if state.local.capture is None:
        return g
    raise CaptureError(
        f"{op}: communicates with the other ranks in the middle of a captured step, at {user_site()}; a "
        f"replay would not run it (xg.capture replays array work, not collectives). Call the function "
        f"without xg.capture, or keep the collective outside it"
    )


def _array_of(op: str, x):
    data = x.data if isinstance(x, Tensor) else x
    if not (isinstance(data, np.ndarray) or is_cupy_array(data)):
        raise NotATensorError(f"{op}: expected a Tensor, a NumPy array or a CuPy array, got {type(x).__name__}")
    return data


def _in_place(x, data, communicate) -> None:
    """Run `communicate(buffer)` on a contiguous writable buffer of `data`, then leave the result in `x`."""
    if data.flags.c_contiguous and getattr(data.flags, "writeable", True):
        communicate(data)
        return
    buffer = data.copy(order="C")
    communicate(buffer)
    if isinstance(x, Tensor):
        x.data = buffer
    else:
        data[...] = buffer
