"""The two function tables backward rules are written against.

`ArrayFns(xp)` works on raw arrays of namespace `xp` (the plain, fast backward pass);
`TENSOR_FNS` maps the same names onto differentiable xpgrad ops (``create_graph=True``).
A backward rule uses operators (``+ - * / @``, comparisons, indexing) plus these names only,
so one rule serves both passes.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from . import backend, buffers, state
from .errors import LabelError
from .tensor import is_integer

_thread = state.local  # the kernels switch is per thread (default: XPGRAD_KERNELS)
BROADCAST_COPY_MAX = 4096  # KernelFns.broadcast_to copies up to this many elements instead of viewing
POOLED_PRODUCT_MIN = buffers.MIN_BYTES // 8  # elements: a smaller matrix product is under MIN_BYTES in any float dtype


def kernels_enabled() -> bool:
    """Whether NumPy/CuPy arrays take the Numba kernels in this thread (XPGRAD_KERNELS=0 switches
    them off by default)."""
    return _thread.kernels


@contextlib.contextmanager
def use_kernels(flag: bool):
    """Context manager: Numba kernels on or off in this thread inside the block (for comparisons
    and debugging); other threads keep their own setting."""
    thread = _thread
    previous, thread.kernels = thread.kernels, bool(flag)
    try:
        yield
    finally:
        thread.kernels = previous


def _kernel_float(a, b=None) -> bool:
    """Kernels apply: switched on, `a` float32 or float64, and `b` (if given) of the same dtype."""
    if not _thread.kernels:
        return False
    dtype = a.dtype
    return dtype.char in "fd" and (b is None or b.dtype is dtype or b.dtype == dtype)


def is_basic_index(index) -> bool:
    """True for indices made only of ints, slices, None and Ellipsis (no integer or boolean arrays)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items)


def label_error(op: str, num_classes: int, low: int, high: int) -> LabelError:
    """The LabelError of labels outside [0, num_classes) (the same message on every backend)."""
    return LabelError(
        f"{op}: labels must lie in [0, {num_classes}) for {num_classes} classes, got min {low} and max {high}"
    )


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

    def to(self, x, device):
        return backend.move(x, device)

    def matmul(self, a, b):
        """a @ b (the engine's matrix products go through here, so a backend can place the result)."""
        return a @ b

    def sigmoid_grad(self, y, gy):
        """dx = dy * y * (1 - y): the sigmoid gate's local gradient times the upstream one."""
        return gy * (y * (1 - y))

    def sum_of_squares(self, d):
        """sum(d * d) over every element (a 0-d array or scalar)."""
        return self.xp.sum(d * d)

    def min_max(self, a) -> tuple:
        """(min, max) of a non-empty array as Python numbers."""
        return int(self.xp.min(a)), int(self.xp.max(a))

    def defer_label_check(self, op: str, labels, num_classes: int) -> bool:
        """Check labels in [0, num_classes) on the device, raising later (CupyFns); False where
        the caller must check now, on the host."""
        return False

    def sigmoid(self, a):
        """Logistic sigmoid of a raw array."""
        return sigmoid_array(self.xp, a)

    def relu(self, a):
        """max(a, 0) of a raw array."""
        return self.xp.maximum(a, 0)

    def act_grad(self, activation: str, y, gy):
        """Upstream gradient times the activation's local gradient, from the activation output y."""
        if activation == "sigmoid":
            return self.sigmoid_grad(y, gy)
        return self.xp.where(y > 0, gy, self.xp.zeros_like(gy))

    def bias_act(self, z, b, activation):
        """act(z + b) on the GEMM output z (activation None: the bias add alone, in place)."""
        if b is not None:
            if b.dtype == z.dtype:
                z += b  # in place: the GEMM output is ours
            else:
                z = z + b
        if activation == "relu":
            return self.xp.maximum(z, 0)
        if activation == "sigmoid":
            return self.sigmoid(z)
        return z

    def bias_act_grad(self, activation: str, y, gy, with_bias: bool):
        """(dz, db) of act(z + b): db is None without a bias."""
        dz = self.act_grad(activation, y, gy)
        return dz, (self.xp.sum(dz, axis=0) if with_bias else None)

    def softmax_xent_checks_labels(self, z) -> bool:
        """Whether softmax_xent(z, labels) checks that the labels lie in [0, C) itself, raising
        IndexError before any out-of-range read, so the caller need not check first."""
        return False

    def softmax_xent(self, z, labels):
        """(mean cross-entropy, softmax probabilities) of (N, C) logits and integer labels."""
        xp = self.xp
        logp = log_softmax_array(xp, z, 1)
        picked = xp.sum(xp.where(self._hot(labels, z.shape[1]), logp, xp.zeros_like(logp)), axis=1)
        return -xp.sum(picked) / z.shape[0], xp.exp(logp)

    def softmax_xent_grad(self, probs, labels, gy, n):
        """(probs - onehot(labels)) * gy / n: softmax-with-loss backward for the upstream gradient
        gy (a one-element array) of the mean over n rows."""
        return self.xp.where(self._hot(labels, probs.shape[1]), probs - 1, probs) * (float(gy) / n)

    def _hot(self, labels, num_classes):
        """Boolean (N, C) mask of the label positions."""
        xp = self.xp
        return xp.reshape(labels, (-1, 1)) == xp.reshape(xp.arange(num_classes, device=labels.device), (1, -1))

    def one_hot(self, labels, num_classes, dtype):
        """(N, C) one-hot rows of `labels` (portable; losses avoid it where a fast path exists)."""
        xp = self.xp
        return xp.astype(self._hot(labels, num_classes), dtype)

    def index_grad(self, gy, index, shape):
        """Zeros of `shape` with `gy` added at `index` (repeated indices accumulate)."""
        xp = self.xp
        out = xp.zeros(shape, dtype=gy.dtype, device=gy.device)
        if is_basic_index(index):
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
        return xp.reshape(self.matmul(rows.mT, flat), shape)

    def getitem(self, x, index):
        """Forward of getitem: plain indexing, with `take` for a lone integer array."""
        if hasattr(index, "shape") and index.ndim == 1 and is_integer(index.dtype):
            return self.xp.take(x, index, axis=0)
        return x[index]


def log_softmax_array(xp, a, axis):
    """Stable log-softmax of a raw array via log-sum-exp (all -inf rows stay finite-safe)."""
    m = xp.max(a, axis=axis, keepdims=True)
    shifted = a - xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def sigmoid_array(xp, a):
    """Stable logistic sigmoid of a raw array (portable)."""
    e = xp.exp(-xp.abs(a))
    r = 1 / (1 + e)
    return xp.where(a >= 0, r, e * r)


class KernelFns(ArrayFns):
    """Fast paths shared by NumPy (Numba CPU kernels) and CuPy (numba.cuda kernels).

    `kernels` is xpgrad.kernels (CPU) or xpgrad.kernels.cuda: same names, same arguments.
    `empty_like` gives an output buffer (pooled for large NumPy arrays). Fancy indexing works on
    both libraries, so the loss fallbacks use it instead of a one-hot mask.
    """

    def __init__(self, xp, kernels, empty_like):
        super().__init__(xp)
        self.k = kernels
        self.ready = kernels.ready  # the kernels' fast-path test: then `unchecked` skips their checks
        self.unchecked = kernels.unchecked
        from .kernels._scalar import ACTIVATIONS  # here: importing xpgrad.kernels loads Numba

        self.activation_codes = ACTIVATIONS
        self.empty_like = empty_like

    def sum(self, x, axis=None, keepdims=False):
        return x.sum(axis=axis, keepdims=keepdims)  # the method skips the library's Python wrapper

    def matmul(self, a, b):
        """A large matrix product goes into a pooled buffer (a fresh multi-MB output page-faults
        on every step); small ones and batched ones are plain a @ b (the first test, on sizes
        alone, is all a small product pays)."""
        rows, cols = a.shape[0], b.shape[-1]
        if rows * cols < POOLED_PRODUCT_MIN or len(a.shape) != 2 or len(b.shape) != 2 or a.dtype is not b.dtype:
            return a @ b
        return np.matmul(a, b, out=buffers.empty((rows, cols), a.dtype))

    def broadcast_to(self, x, shape):
        """Small NumPy results are materialized: a fresh array costs ~0.4 us, np.broadcast_to's
        read-only view ~1.7 us (the view wins above a few thousand elements)."""
        if type(x) is np.ndarray and math.prod(shape) <= BROADCAST_COPY_MAX:
            out = np.empty(shape, dtype=x.dtype)
            out[...] = x
            return out
        return super().broadcast_to(x, shape)

    def min_max(self, a) -> tuple:
        return int(a.min()), int(a.max())

    def sum_of_squares(self, d):
        """One BLAS dot (vdot flattens): 0.6 us against 1.6 us for sum(d * d) at 64x10."""
        return self.xp.vdot(d, d)

    def sigmoid_grad(self, y, gy):
        if y.shape == gy.shape:
            if _thread.kernels and y.ndim and self.ready(y, gy):
                out = self.empty_like(y)
                self.unchecked.sigmoid_backward(y, gy, out)
                return out
            if _kernel_float(y, gy):  # a 0-d or strided array: the checked kernel copies as needed
                return self.k.sigmoid_backward(y, gy, out=self.empty_like(y))
        return super().sigmoid_grad(y, gy)

    def sigmoid(self, a):
        """Sigmoid forward in one pass (the linear-epilogue kernel without a bias)."""
        if not _kernel_float(a) or a.ndim == 0:
            return super().sigmoid(a)
        return self._activate_rows(a, "sigmoid")

    def relu(self, a):
        """ReLU forward in one pass into an output buffer (pooled when large: a fresh one page-faults)."""
        if not _kernel_float(a) or a.size == 0 or a.ndim == 0:
            return super().relu(a)
        return self._activate_rows(a, "relu")

    def _activate_rows(self, a, activation):
        if a.ndim == 2:
            return self.bias_act(a, None, activation)
        return self.bias_act(a.reshape(-1, a.shape[-1]), None, activation).reshape(a.shape)

    def bias_act(self, z, b, activation):
        if activation is not None and z.ndim == 2 and _thread.kernels:
            # a separate output: in place (out=z) the compiler's no-alias check fails and the loop runs scalar
            if self.ready(z) if b is None else b.shape == z.shape[1:] and self.ready(z, b):
                out = self.empty_like(z)
                self.unchecked.bias_act_forward(z, b, self.activation_codes[activation], out)
                return out
            if _kernel_float(z, b):  # strided arrays: the checked kernel copies as needed
                return self.k.bias_act_forward(z, b, activation, out=self.empty_like(z))
        return super().bias_act(z, b, activation)

    def act_backward(self, activation, y, gy):
        """(dz, dz summed over rows) of the activation, from its output y, in one kernel pass over
        the rows of y (the last axis is the row), or None where the kernel does not apply."""
        if not (y.ndim and y.size and y.shape == gy.shape and _kernel_float(y, gy)):
            return None
        rows = (-1, y.shape[-1])
        dz, db = self.k.bias_act_backward(
            y.reshape(rows), gy.reshape(rows), activation, dz_out=self.empty_like(y).reshape(rows)
        )
        return dz.reshape(y.shape), db

    def act_grad(self, activation, y, gy):
        """ReLU backward through the bias-gradient kernel (its column sums unused) instead of
        where(y > 0, gy, zeros): one pass, no temporaries."""
        fused = self.act_backward(activation, y, gy) if activation == "relu" else None
        return fused[0] if fused is not None else super().act_grad(activation, y, gy)

    def bias_act_grad(self, activation, y, gy, with_bias):
        if not with_bias and activation == "sigmoid":
            return self.sigmoid_grad(y, gy), None
        fused = self.act_backward(activation, y, gy)
        if fused is not None:
            return fused[0], (fused[1] if with_bias else None)
        return super().bias_act_grad(activation, y, gy, with_bias)

    def softmax_xent_checks_labels(self, z) -> bool:
        return _kernel_float(z)  # the kernel does

    def softmax_xent(self, z, labels):
        if _kernel_float(z):
            return self.k.softmax_xent_forward(z, labels, out=self.empty_like(z))
        logp = log_softmax_array(self.xp, z, 1)
        return -logp[self.xp.arange(z.shape[0]), labels].sum() / z.shape[0], self.xp.exp(logp)

    def softmax_xent_grad(self, probs, labels, gy, n):
        scale = float(gy) / n
        if _kernel_float(probs):
            return self.k.softmax_xent_backward(probs, labels, scale, out=self.empty_like(probs))
        return self._minus_hot_scaled(probs, labels, scale)

    def _minus_hot_scaled(self, probs, labels, scale):
        """(probs - onehot(labels)) * scale by fancy indexing (scale: a number or a 0-d array)."""
        g = probs * scale
        g[self.xp.arange(probs.shape[0]), labels] -= scale
        return g

    def zeros(self, shape, dtype):
        """A new array of zeros (xg.capture's table refills it on every replay)."""
        return self.xp.zeros(shape, dtype=dtype)

    def index_grad(self, gy, index, shape):
        out = self.zeros(shape, gy.dtype)
        if is_basic_index(index):
            out[index] = gy
        elif (
            (type(index) is type(gy) or (type(index) is np.ndarray and isinstance(gy, np.ndarray)))
            and index.ndim == 1
            and index.dtype.kind in "iu"
            and _kernel_float(out, gy)
            and (index.size == 0 or int(index.min()) >= 0)
        ):
            self.k.scatter_add(out, index, gy)  # repeated rows accumulate, in one pass (atomics on the GPU)
        else:
            self.scatter_add_fallback(out, index, gy)
        return out

    def scatter_add_fallback(self, out, index, gy):
        np.add.at(out, index, gy)

    def getitem(self, x, index):
        return x[index]


def array_fns_for(xp) -> ArrayFns:
    """The function table for arrays of namespace `xp`."""
    name = getattr(xp, "__name__", "")
    if name.endswith("numpy"):
        from . import kernels

        return KernelFns(xp, kernels, buffers.empty_like)
    if name.endswith("cupy"):
        import cupy

        from .fns_cupy import CupyFns
        from .kernels import cuda

        return CupyFns(xp, cuda, cupy.empty_like)
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
