"""The two function tables backward rules are written against.

`ArrayFns(xp)` works on raw arrays of namespace `xp` (the plain, fast backward pass);
`TENSOR_FNS` maps the same names onto differentiable xpgrad ops (``create_graph=True``).
A backward rule uses operators (``+ - * / @``, comparisons, indexing) plus these names only,
so one rule serves both passes.
"""
from __future__ import annotations

import os

import numpy as np

from . import backend


def kernels_enabled() -> bool:
    """False when XPGRAD_KERNELS=0 switches the Numba kernels off."""
    return os.environ.get("XPGRAD_KERNELS", "1") != "0"


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items)


class ArrayFns:
    """Array-level implementations of the names backward rules use (portable array-API code)."""

    tensors = False

    def __init__(self, xp):
        self.xp = xp

    def sum(self, x, axis=None, keepdims=False):
        return self.xp.sum(x, axis=axis, keepdims=keepdims)

    def reshape(self, x, shape):
        return self.xp.reshape(x, shape)

    def transpose(self, x, axes):
        return self.xp.permute_dims(x, axes)

    def broadcast_to(self, x, shape):
        return self.xp.broadcast_to(x, shape)

    def where(self, cond, a, b):
        return self.xp.where(cond, a, b)

    def exp(self, x):
        return self.xp.exp(x)

    def log(self, x):
        return self.xp.log(x)

    def astype(self, x, dtype):
        return self.xp.astype(x, dtype)

    def move(self, x, device):
        return backend.move(x, device)

    def sigmoid_grad(self, y, gy):
        """dx = dy * y * (1 - y): the sigmoid gate's local gradient times the upstream one."""
        return gy * (y * (1 - y))

    def one_hot(self, labels, num_classes, dtype):
        """(N, C) one-hot rows of `labels` (portable; losses avoid it where a fast path exists)."""
        xp = self.xp
        classes = xp.arange(num_classes, device=labels.device)
        hot = xp.reshape(labels, (-1, 1)) == xp.reshape(classes, (1, -1))
        return xp.astype(hot, dtype)

    def index_grad(self, gy, index, shape):
        """Zeros of `shape` with `gy` added at `index` (repeated indices accumulate)."""
        xp = self.xp
        out = xp.zeros(shape, dtype=gy.dtype, device=gy.device)
        if _is_basic_index(index):
            items = index if isinstance(index, tuple) else (index,)
            if any(i is None for i in items):  # new axes cannot be assigned through: drop them from both sides
                index = tuple(i for i in items if i is not None)
                gy = xp.reshape(gy, out[index].shape)
            out[index] = gy
            return out
        if not hasattr(index, "shape"):
            raise IndexError(
                f"getitem backward: on {xp.__name__} only basic indices or one integer array along axis 0 are "
                f"supported, got {type(index).__name__}"
            )
        rows = self.one_hot(xp.reshape(index, (-1,)), shape[0], gy.dtype)
        flat = xp.reshape(gy, (rows.shape[0], -1))
        return xp.reshape(rows.mT @ flat, shape)

    def scatter_or_take(self, x, index):
        """Forward of getitem: plain indexing, with `take` for a lone integer array."""
        if hasattr(index, "shape") and index.ndim == 1 and "int" in str(index.dtype):
            return self.xp.take(x, index, axis=0)
        return x[index]


class NumpyFns(ArrayFns):
    """NumPy fast paths on top of the portable code."""

    def sum(self, x, axis=None, keepdims=False):
        return x.sum(axis=axis, keepdims=keepdims)  # the method skips numpy.sum's Python wrapper

    def index_grad(self, gy, index, shape):
        out = np.zeros(shape, dtype=gy.dtype)
        if _is_basic_index(index):
            out[index] = gy
        else:
            np.add.at(out, index, gy)
        return out

    def scatter_or_take(self, x, index):
        return x[index]


class CupyFns(ArrayFns):
    """CuPy fast paths on top of the portable code."""

    def index_grad(self, gy, index, shape):
        import cupy
        import cupyx

        out = cupy.zeros(shape, dtype=gy.dtype)
        if _is_basic_index(index):
            out[index] = gy
        else:
            cupyx.scatter_add(out, index, gy)
        return out

    def scatter_or_take(self, x, index):
        return x[index]


def array_fns_for(xp) -> ArrayFns:
    """The function table for arrays of namespace `xp`."""
    name = getattr(xp, "__name__", "")
    if name.endswith("numpy"):
        return NumpyFns(xp)
    if name.endswith("cupy"):
        return CupyFns(xp)
    return ArrayFns(xp)


class TensorFns:
    """The same names as ArrayFns, as differentiable ops on Tensors (for create_graph=True)."""

    tensors = True

    def __getattr__(self, name):
        from . import ops

        fn = getattr(ops, name)
        setattr(self, name, fn)
        return fn


TENSOR_FNS = TensorFns()
