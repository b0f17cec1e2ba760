"""The process group: this process's rank, the number of ranks, and the communicator between them.

MPI (mpi4py) starts the ranks (`mpiexec -n K`) and is the rendezvous for every backend. The group
is process-wide (MPI has one world per process), so it is module state here, not per-thread engine
state. Before `init_process_group`, or in a single process, the group is one rank: every
collective returns its input unchanged and nothing is communicated.

With more than one rank, an uncaught exception on any rank prints that rank's traceback and then
aborts every rank (`MPI_Abort`), as ``python -m mpi4py`` does: otherwise the failed rank would wait
in MPI_Finalize at exit while the others wait in their next collective, for ever.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from .errors import DistributedError

BACKENDS = ("auto", "mpi", "nccl")
# environment variables through which MPI launchers tell a process its rank and the world size
_LAUNCHER_RANK = ("PMI_RANK", "OMPI_COMM_WORLD_RANK")
_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


@dataclass
class ProcessGroup:
    """The ranks of a data-parallel job and the communicator between them."""

    backend: str  # "mpi", "nccl" or "none" (one process, no communication)
    rank: int
    world_size: int
    local_rank: int
    comm: object = None  # MPICommunicator or NCCLCommunicator; None for one process


_SINGLE = ProcessGroup("none", 0, 1, 0)
_group: ProcessGroup | None = None


def _launcher_value(names) -> int | None:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def launched_world_size() -> int:
    """The number of ranks an MPI launcher started, read from its environment (1 outside mpiexec)."""
    return _launcher_value(_LAUNCHER_SIZE) or 1


def launched_rank() -> int:
    """This process's rank as its MPI launcher tells it (0 outside mpiexec)."""
    return _launcher_value(_LAUNCHER_RANK) or 0


def init_process_group(backend: str = "auto") -> ProcessGroup:
    """Join the job's ranks: MPI for NumPy arrays, NCCL for CuPy arrays ("auto": NCCL when xpgrad's
    array backend is CuPy, else MPI). Under CuPy each rank takes GPU `local_rank % device_count`.

    Raises MPINotAvailableError (no mpi4py or MPI), NCCLNotAvailableError, NoGPUForRankError. A
    second call with the same backend returns the group already made.
    """
    global _group
    if backend not in BACKENDS:
        raise ValueError(f"init_process_group: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        from ..backend import get_backend

        backend = "nccl" if get_backend().name == "cupy" else "mpi"
    if _group is not None:
        if _group.backend != backend:
            raise DistributedError(
                f"init_process_group(backend={backend!r}): the process group is already "
                f"initialized with backend {_group.backend!r}"
            )
        return _group
    from .mpi_comm import MPICommunicator, import_mpi

    mpi = import_mpi()
    world = MPICommunicator(mpi)
    local_rank, local_size = world.node.Get_rank(), world.node.Get_size()
    if world.size > 1:
        _install_abort_on_error(world)
    comm = world
    if backend == "nccl":
        from .nccl_comm import NCCLCommunicator, check_gpu_for_rank

        device = _agree(world, lambda: check_gpu_for_rank(local_rank, local_size))
        comm = NCCLCommunicator(world, device)
    _group = ProcessGroup(backend, world.rank, world.size, local_rank, comm)
    return _group


def _agree(comm, check):
    """Run `check()` on every rank; when it raises on any rank, raise on every rank (no rank is left
    waiting in the next collective). Returns this rank's result."""
    try:
        result, problem = check(), ""
    except DistributedError as err:
        result, problem, failed = None, f"rank {comm.rank}: {err}", err
    problems = [p.decode() for p in comm.all_gather_bytes(problem.encode()) if p]
    if problem:
        raise failed
    if problems:
        raise DistributedError("; ".join(problems))
    return result


def group() -> ProcessGroup:
    """The initialized group, else the one-process group."""
    return _group if _group is not None else _SINGLE


def is_initialized() -> bool:
    return _group is not None


def get_rank() -> int:
    return group().rank


def get_world_size() -> int:
    return group().world_size


def abort(code: int = 1) -> None:
    """End every rank of the job with exit status `code` (a plain exit in a one-rank group)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if get_world_size() > 1:
        group().comm.abort(code)
    raise SystemExit(code)


def _install_abort_on_error(world) -> None:
    previous = sys.excepthook

    def abort_on_error(kind, value, traceback):
        previous(kind, value, traceback)
        code = 130 if issubclass(kind, KeyboardInterrupt) else 1
        print(
            f"xpgrad: rank {world.rank} of {world.size} failed ({kind.__name__}); aborting every rank",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        (_group.comm if _group is not None else world).abort(code)

    sys.excepthook = abort_on_error
