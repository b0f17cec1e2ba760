"""Collectives on CuPy arrays through NCCL (`cupy.cuda.nccl`), with MPI for the rendezvous.

Written against CuPy's `cupy_backends/cuda/libs/nccl.pyx` and `cupyx/distributed/_nccl_comm.py`.
`cupyx.distributed.NCCLBackend` is not used: it falls back to a TCP store when mpi4py does not
import and never aborts its communicator, so a failed peer would hang it. Here rank 0 draws the
NCCL unique id, MPI broadcasts it, each rank drives GPU `local_rank % device_count`, and a failed
NCCL call aborts the communicator (`ncclCommAbort`) before it is reported. Host (NumPy) arrays and
the byte gathers go over MPI.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import DTypeError
from .errors import CommunicationError, NCCLNotAvailableError, NoGPUForRankError

NCCL_ID_BYTES = 128
POLL_SECONDS = 0.001  # between checks of a rank's GPU work and NCCL's asynchronous error in `barrier`


def check_gpu_for_rank(local_rank: int, local_size: int) -> int:
    """The GPU this rank drives: `local_rank % device_count`; NoGPUForRankError when there is none,
    or when the node has fewer GPUs than ranks (NCCL refuses two ranks on one GPU)."""
    from ..backend import cupy_gpu_available

    try:
        import cupy
    except ImportError:
        raise NCCLNotAvailableError(
            'init_process_group(backend="nccl"): needs CuPy: pip install "xpgrad[cuda13]" (or "xpgrad[cuda12]")'
        ) from None
    if not cupy_gpu_available():
        raise NoGPUForRankError(
            f'init_process_group(backend="nccl"): rank {local_rank} on this node runs on the CuPy backend '
            f"but CuPy sees no usable GPU; "
            f'launch on GPU nodes or use XPGRAD_BACKEND=numpy (backend "mpi")'
        )
    count = cupy.cuda.runtime.getDeviceCount()
    if local_size > count:
        raise NoGPUForRankError(
            f'init_process_group(backend="nccl"): {local_size} ranks on this node but only {count} GPU(s): '
            f"NCCL needs one GPU per rank; "
            f"launch at most {count} ranks per node"
        )
    return local_rank % count


def nccl_module():
    """`cupy.cuda.nccl`, or NCCLNotAvailableError when CuPy was built or installed without NCCL."""
    from cupy.cuda import nccl

    if not getattr(nccl, "available", False):
        raise NCCLNotAvailableError(
            'init_process_group(backend="nccl"): CuPy cannot load NCCL (cupy.cuda.nccl.available is False); '
            "install it with pip install nvidia-nccl-cu13 "
            '(or -cu12), or use backend "mpi"'
        )
    return nccl


def nccl_version() -> str:
    """The NCCL runtime version as text, or why NCCL is not available."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "not available (CuPy is not installed)"
    try:
        nccl = nccl_module()
        code = nccl.get_version()
    except Exception as err:  # noqa: BLE001 - reported, not raised (xpgrad info)
        return f"not available ({err})"
    major, rest = divmod(code, 10000) if code >= 10000 else divmod(code, 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


class NCCLCommunicator:
    """In-place collectives: CuPy arrays over NCCL on the current stream, host arrays over `mpi_comm`."""

    name = "nccl"

    def __init__(self, mpi_comm, device: int):
        import cupy

        self.nccl = nccl_module()
        self.mpi = mpi_comm
        self.rank, self.size = mpi_comm.rank, mpi_comm.size
        self.device = device
        cupy.cuda.Device(device).use()
        unique_id = np.zeros(NCCL_ID_BYTES, dtype=np.uint8)
        if self.rank == 0:
            unique_id[:] = np.frombuffer(self.nccl.get_unique_id(), dtype=np.uint8)
        mpi_comm.broadcast(unique_id, root=0)
        self.comm = self.nccl.NcclCommunicator(self.size, unique_id.tobytes(), self.rank)
        self._types = {
            np.dtype(np.int8): self.nccl.NCCL_INT8,
            np.dtype(np.uint8): self.nccl.NCCL_UINT8,
            np.dtype(np.int32): self.nccl.NCCL_INT32,
            np.dtype(np.uint32): self.nccl.NCCL_UINT32,
            np.dtype(np.int64): self.nccl.NCCL_INT64,
            np.dtype(np.uint64): self.nccl.NCCL_UINT64,
            np.dtype(np.float16): self.nccl.NCCL_FLOAT16,
            np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
            np.dtype(np.float64): self.nccl.NCCL_FLOAT64,
        }

    def _call(self, what: str, fn, *args) -> None:
        """Run an NCCL call on this communicator; on failure abort it and raise CommunicationError."""
        try:
            self.comm.check_async_error()  # a failure of an earlier, asynchronous collective
            fn(*args)
        except Exception as err:  # NcclError; or KeyError from CuPy's message table for newer NCCL codes
            self.comm.abort()
            raise CommunicationError(
                f"NCCL {what} failed on rank {self.rank} of {self.size}: {err}; the communicator was aborted"
            ) from None

    def _buffer(self, array, op: str):
        """(pointer, element count, NCCL datatype, stream pointer) of contiguous CuPy `array`; a
        complex array is summed as its real and imaginary parts (as cupyx.distributed does)."""
        import cupy

        if array.dtype.kind == "c":
            array = array.reshape(-1).view(array.real.dtype)
        kind = self._types.get(np.dtype(array.dtype))
        if kind is None:
            names = ", ".join(t.name for t in self._types)
            raise DTypeError(f"{op} under NCCL: expected one of {names} (or complex) arrays, got {array.dtype}")
        return array.data.ptr, array.size, kind, cupy.cuda.get_current_stream().ptr

    def all_reduce_sum(self, array) -> None:
        from .mpi_comm import is_cupy_array

        if not is_cupy_array(array):
            return self.mpi.all_reduce_sum(array)
        ptr, count, kind, stream = self._buffer(array, "all_reduce")
        self._call("allReduce", self.comm.allReduce, ptr, ptr, count, kind, self.nccl.NCCL_SUM, stream)

    def broadcast(self, array, root: int) -> None:
        from .mpi_comm import is_cupy_array

        if not is_cupy_array(array):
            return self.mpi.broadcast(array, root)
        ptr, count, kind, stream = self._buffer(array.reshape(-1).view(np.uint8), "broadcast")  # any dtype, as bytes
        self._call("broadcast", self.comm.broadcast, ptr, ptr, count, kind, root, stream)

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        return self.mpi.all_gather_bytes(data)

    def shared_exchange(self, buckets):
        """None: NCCL buckets go through `bucket_reducer`."""
        return None

    def bucket_reducer(self, like, size: int):
        from .mpi_comm import InPlaceReducer

        return InPlaceReducer(self, like, size)

    def barrier(self) -> None:
        """Wait for this rank's GPU work to finish, then for every rank. The wait polls an event
        and NCCL's asynchronous error between naps: a collective stuck on a failed peer aborts
        the communicator (CommunicationError) instead of blocking in a stream synchronize."""
        import cupy

        try:
            done = cupy.cuda.get_current_stream().record()
            while not done.done:
                self._call("barrier", lambda: None)  # check_async_error: aborts and raises on a failure
                time.sleep(POLL_SECONDS)
        except cupy.cuda.runtime.CUDARuntimeError as err:
            self.comm.abort()
            raise CommunicationError(f"rank {self.rank}: GPU work failed before the barrier: {err}") from None
        self._call("barrier", lambda: None)
        self.mpi.barrier()

    def abort(self, code: int) -> None:
        """Abort the NCCL communicator, then end every rank through MPI."""
        self.comm.abort()
        self.mpi.abort(code)
