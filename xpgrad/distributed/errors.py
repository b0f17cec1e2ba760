"""The errors of data-parallel training; each names the call, what was given and what was expected."""

from ..errors import NoGPUError, XpgradError


class DistributedError(XpgradError, RuntimeError):
    """Base class of the errors `xpgrad.distributed` raises."""


class MPINotAvailableError(DistributedError, ImportError):
    """mpi4py, or the MPI library it loads, cannot be imported."""


class NCCLNotAvailableError(DistributedError, ImportError):
    """backend "nccl" was asked for but CuPy or its NCCL module is missing."""


class NoGPUForRankError(DistributedError, NoGPUError):
    """A rank on the CuPy backend has no GPU of its own (none at all, or fewer GPUs than ranks on its node)."""


class ModelMismatchError(DistributedError, ValueError):
    """The ranks disagree on the model's parameter or buffer names, shapes or dtypes (raised on every rank)."""


class IndivisibleBatchError(DistributedError, ValueError):
    """A global batch size that the number of ranks does not divide."""


class CommunicationError(DistributedError):
    """A collective failed (the communicator has been aborted)."""
