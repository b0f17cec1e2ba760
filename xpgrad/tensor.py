"""The Tensor: a backend array plus the link to the node that made it.

Operators (``+ - * / ** @``, comparisons, indexing) and math methods are attached by the op
modules in `xpgrad.ops`, so this file holds only state, conversion and `backward`.
"""

from __future__ import annotations

import math

import numpy as np

from . import backend
from .errors import DTypeError

_kinds: dict = {}


def dtype_kind(dtype) -> str:
    """ "float", "int" or the dtype's name ("bool", ...), for any backend (cached: str(dtype) is slow on NumPy)."""
    key = (type(dtype), dtype)  # the type first: dtypes of different libraries never get compared
    kind = _kinds.get(key)
    if kind is None:
        name = dtype_name(dtype)
        kind = _kinds[key] = "float" if "float" in name else "int" if "int" in name else name
    return kind


def is_floating(dtype) -> bool:
    """True for real floating dtypes of any backend."""
    if isinstance(dtype, np.dtype) and dtype.kind == "f":  # NumPy and CuPy: no look-up
        return True
    return dtype_kind(dtype) == "float"


def is_integer(dtype) -> bool:
    """True for signed or unsigned integer dtypes of any backend."""
    return dtype_kind(dtype) == "int"


def dtype_name(dtype) -> str:
    """The backend-independent name of a dtype for messages: ``float32``, not ``array_api_strict.float32``."""
    return str(dtype).rsplit(".", 1)[-1]


class Tensor:
    """An n-d array on one device that can record the ops applied to it.

    `data` is the backend array (NumPy, CuPy, or any array-API namespace). A tensor made by an
    op while gradients are enabled refers to its creating node (`_node`); leaves have none.
    """

    __slots__ = ("data", "grad", "requires_grad", "_node", "name", "__weakref__")
    __array_priority__ = 1000  # make NumPy defer `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, name: str | None = None):
        if type(data) is not np.ndarray and isinstance(data, (np.generic, int, float, bool)):
            data = np.asarray(data)
        self.data = data
        self.grad = None
        self._node = None
        self.name = name
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ---- state ---------------------------------------------------------------------------
    def requires_grad_(self, flag: bool = True) -> Tensor:
        """Mark this leaf as needing a gradient (floating dtypes only)."""
        if flag and not is_floating(self.data.dtype):
            raise DTypeError(
                "requires_grad: only floating-point tensors can require gradients, got dtype "
                f"{dtype_name(self.data.dtype)}; "
                f"convert first, e.g. xg.tensor(data, dtype='float32', requires_grad=True)"
            )
        if not flag and self._node is not None:
            raise ValueError("requires_grad_: cannot turn off requires_grad on a non-leaf tensor; use .detach()")
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return math.prod(self.data.shape)

    @property
    def device(self):
        return backend.device_of(self.data)

    def __len__(self) -> int:
        if not self.data.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __repr__(self) -> str:
        flag = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self._node.name}" if self._node is not None else ""
        body = np.array2string(self.numpy(), precision=4, threshold=20) if self.device == "cpu" else "..."
        return f"tensor({body}, dtype={self.dtype}, device={self.device}{flag}{op})"

    # ---- conversion ----------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A NumPy copy on the host (no copy for NumPy-backed tensors)."""
        if type(self.data) is np.ndarray:
            return self.data
        if backend.is_cupy(self.data):
            return self.data.get()
        return np.from_dlpack(self.data)

    def __array__(self, dtype=None, copy=None):
        if backend.is_cupy(self.data):
            raise TypeError(
                f"np.asarray: tensor lives on {self.device}; call .numpy() or .to('cpu') to copy it to the host"
            )
        arr = self.numpy()
        return arr.astype(dtype) if dtype is not None else arr

    def item(self):
        """The single value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a Python scalar, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        return bool(self.item())

    def __dlpack__(self, *args, **kwargs):
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data, cut from the graph."""
        return Tensor(self.data)

    # ---- autograd ------------------------------------------------------------------------
    def retain_grad(self) -> Tensor:
        """Keep this non-leaf tensor's gradient in `.grad` after backward."""
        if self._node is not None:
            autograd.retain_grad(self)
        return self

    def backward(self, grad=None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf that requires grad (see `xpgrad.autograd`)."""
        autograd.run_backward((self,), (grad,), retain_graph=retain_graph or create_graph, create_graph=create_graph)


from . import autograd  # noqa: E402  (autograd builds Tensors; imported after the class exists)
