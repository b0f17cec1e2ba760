"""Data-parallel training across processes and GPUs: MPI (mpi4py) for NumPy arrays, NCCL (CuPy) for CuPy arrays.

    mpiexec -n 2 python train.py                # or: mpiexec -n 2 xpgrad train --batch-size 64

    import xpgrad.distributed as dist
    dist.init_process_group()                   # "auto": NCCL under the CuPy backend, else MPI
    model = dist.DataParallel(net)
    loader = DataLoader(data, 64, shuffle=True, seed=0, shard=(dist.get_rank(), dist.get_world_size()))

Without mpiexec (or with one rank) the same code runs with no communication. Nothing here imports
mpi4py or CuPy until `init_process_group` is called.
"""

from .collectives import all_gather_bytes, all_reduce, barrier, broadcast
from .errors import (
    CommunicationError,
    DistributedError,
    IndivisibleBatchError,
    ModelMismatchError,
    MPINotAvailableError,
    NCCLNotAvailableError,
    NoGPUForRankError,
)
from .group import (
    ProcessGroup,
    abort,
    get_rank,
    get_world_size,
    init_process_group,
    is_initialized,
    launched_rank,
    launched_world_size,
)
from .parallel import DEFAULT_BUCKET_MB, DataParallel, RankStop


def local_batch_size(global_batch: int, world_size: int, what: str = "local_batch_size") -> int:
    """Each rank's share of `global_batch`; IndivisibleBatchError (its message starting with `what`)
    when `world_size` does not divide it."""
    if global_batch % world_size:
        raise IndivisibleBatchError(
            f"{what}: batch size {global_batch} is the global batch of all {world_size} ranks and must be a multiple "
            f"of {world_size}; use {max(world_size, global_batch // world_size * world_size)} or "
            f"{(global_batch // world_size + 1) * world_size}"
        )
    return global_batch // world_size


__all__ = [
    "DEFAULT_BUCKET_MB",
    "CommunicationError",
    "DataParallel",
    "DistributedError",
    "IndivisibleBatchError",
    "MPINotAvailableError",
    "ModelMismatchError",
    "NCCLNotAvailableError",
    "NoGPUForRankError",
    "ProcessGroup",
    "RankStop",
    "abort",
    "all_gather_bytes",
    "all_reduce",
    "barrier",
    "broadcast",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_initialized",
    "launched_rank",
    "launched_world_size",
    "local_batch_size",
]
