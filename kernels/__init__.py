"""Numba kernels for xpgrad's hot paths: pure array-in / array-out functions, no engine import.

The CPU kernels (`cpu.py`, Numba @njit) are re-exported here. The CUDA kernels with the same
names are in `xpgrad.kernels.cuda`, imported on first access so that `import xpgrad.kernels`
never imports numba.cuda.
"""

import importlib

from ._frontend import adam_scalars
from ._scalar import ACTIVATIONS
from .cpu import (
    PARALLEL_MIN_SIZE,
    adam_update,
    bias_act_backward,
    bias_act_forward,
    ready,
    scatter_add,
    set_parallel,
    sgd_update,
    sigmoid_backward,
    softmax_xent_backward,
    softmax_xent_forward,
    unchecked,
)

__all__ = [
    "ACTIVATIONS",
    "PARALLEL_MIN_SIZE",
    "adam_scalars",
    "adam_update",
    "bias_act_backward",
    "bias_act_forward",
    "cuda",
    "ready",
    "scatter_add",
    "set_parallel",
    "sgd_update",
    "sigmoid_backward",
    "softmax_xent_backward",
    "softmax_xent_forward",
    "unchecked",
]


def __getattr__(name):
    if name == "cuda":
        return importlib.import_module(".cuda", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
