"""xpgrad: a small define-by-run autodiff engine on the Python array API.

Record a computation by running it, then backpropagate:

    import xpgrad as xg
    x = xg.tensor(-2.0, requires_grad=True)
    f = (x + 5.0) * -4.0
    f.backward()          # x.grad == -4
"""

import importlib
from typing import TYPE_CHECKING

from . import testing
from .autograd import is_grad_enabled, no_grad, set_debug, set_grad_enabled
from .backend import cupy_gpu_available, get_backend, set_backend, use_backend
from .backprop import backward, grad
from .creation import arange, full, manual_seed, ones, ones_like, rand, randn, tensor, zeros, zeros_like
from .errors import (
    BackendError,
    CaptureError,
    CupyNotInstalledError,
    DeviceMismatchError,
    DTypeError,
    GraphFreedError,
    LabelError,
    NoGPUError,
    NoGraphError,
    NonFiniteError,
    NotATensorError,
    ShapeError,
    UnknownBackendError,
    XpgradError,
)
from .ops import (
    abs,
    astype,
    broadcast_to,
    concat,
    elu,
    exp,
    hinge_loss,
    leaky_relu,
    linear,
    log,
    log_softmax,
    matmul,
    max,
    maximum,
    maxout,
    mean,
    min,
    minimum,
    mse_loss,
    relu,
    reshape,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    sqrt,
    stack,
    sum,
    tanh,
    transpose,
    where,
)
from .tensor import Tensor

if TYPE_CHECKING:  # loaded lazily at run time (__getattr__ below); named here so type checkers see them
    from . import capture as capture
    from . import cli as cli
    from . import data as data
    from . import nn as nn
    from . import optim as optim
    from . import viz as viz

float16, float32, float64 = "float16", "float32", "float64"
int32, int64, bool_ = "int32", "int64", "bool"

__version__ = "0.1.0"

# the public names (also what `from xpgrad import *` gives); nn, optim, data, viz, cli and capture load on first use
__all__ = [
    "__version__",
    "abs",
    "arange",
    "astype",
    "BackendError",
    "backward",
    "bool_",
    "broadcast_to",
    "CaptureError",
    "concat",
    "cupy_gpu_available",
    "CupyNotInstalledError",
    "DeviceMismatchError",
    "DTypeError",
    "elu",
    "exp",
    "float16",
    "float32",
    "float64",
    "full",
    "get_backend",
    "grad",
    "GraphFreedError",
    "hinge_loss",
    "int32",
    "int64",
    "is_grad_enabled",
    "LabelError",
    "leaky_relu",
    "linear",
    "log",
    "log_softmax",
    "manual_seed",
    "matmul",
    "max",
    "maximum",
    "maxout",
    "mean",
    "min",
    "minimum",
    "mse_loss",
    "no_grad",
    "NoGPUError",
    "NoGraphError",
    "NonFiniteError",
    "NotATensorError",
    "ones",
    "ones_like",
    "rand",
    "randn",
    "relu",
    "reshape",
    "set_backend",
    "set_debug",
    "set_grad_enabled",
    "ShapeError",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "sqrt",
    "stack",
    "sum",
    "tanh",
    "Tensor",
    "tensor",
    "testing",
    "transpose",
    "UnknownBackendError",
    "use_backend",
    "where",
    "XpgradError",
    "zeros",
    "zeros_like",
]

_LAZY_SUBMODULES = ("nn", "optim", "data", "viz", "cli", "capture")  # xg.capture(fn) calls the package (xpgrad.capture)


def __getattr__(name: str) -> object:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'xpgrad' has no attribute {name!r}")
