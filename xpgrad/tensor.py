"""The Tensor: a backend array plus the link to the node that made it.

Operators (``+ - * / ** @``, comparisons, indexing) and math methods are attached by the op
modules in `xpgrad.ops`, so this file holds only state, conversion and `backward`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from . import backend
from .errors import DTypeError

_kinds: dict[tuple[type, Any], str] = {}


def dtype_kind(dtype: Any) -> str:
    """ "float", "int" or the dtype's name ("bool", ...), for any backend (cached: str(dtype) is slow on NumPy)."""
    key = (type(dtype), dtype)  # the type first: dtypes of different libraries never get compared
    kind = _kinds.get(key)
    if kind is None:
        name = dtype_name(dtype)
        kind = _kinds[key] = "float" if "float" in name else "int" if "int" in name else name
    return kind


def is_floating(dtype: Any) -> bool:
    """True for real floating dtypes of any backend."""
    if isinstance(dtype, np.dtype) and dtype.kind == "f":  # NumPy and CuPy: no look-up
        return True
    return dtype_kind(dtype) == "float"


def is_integer(dtype: Any) -> bool:
    """True for signed or unsigned integer dtypes of any backend."""
    return dtype_kind(dtype) == "int"


def dtype_name(dtype: Any) -> str:
    """The backend-independent name of a dtype for messages: ``float32``, not ``array_api_strict.float32``."""
    return str(dtype).rsplit(".", 1)[-1]


class Tensor:
    """An n-d array on one device that can record the ops applied to it.

    `data` is the backend array (NumPy, CuPy, or any array-API namespace). A tensor made by an
    op while gradients are enabled refers to its creating node (`_node`); leaves have none.
    """

    __slots__ = ("data", "grad", "requires_grad", "_node", "name", "__weakref__")
    data: Any  # the backend array
    grad: Tensor | None
    requires_grad: bool
    _node: Any  # the autograd.Node that made this tensor, None for a leaf
    name: str | None
    __array_priority__ = 1000  # make NumPy defer `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, name: str | None = None) -> None:
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
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        ndim: int = self.data.ndim  # annotated, not converted: no call on this hot path
        return ndim

    @property
    def size(self) -> int:
        return math.prod(self.data.shape)

    @property
    def device(self) -> Any:
        return backend.device_of(self.data)

    def __len__(self) -> int:
        if not self.data.shape:
            raise TypeError("len() of a 0-d tensor")
        first: int = self.data.shape[0]
        return first

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
            host: np.ndarray = self.data.get()
            from .fns_cupy import raise_device_errors  # a bad label a CuPy step left on the device

            raise_device_errors()
            return host
        return np.from_dlpack(self.data)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if backend.is_cupy(self.data):
            raise TypeError(
                f"np.asarray: tensor lives on {self.device}; call .numpy() or .to('cpu') to copy it to the host"
            )
        arr = self.numpy()
        return arr.astype(dtype) if dtype is not None else arr

    def item(self) -> Any:
        """The single value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a Python scalar, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        return bool(self.item())

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self) -> Any:
        return self.data.__dlpack_device__()

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data, cut from the graph."""
        return Tensor(self.data)

    if TYPE_CHECKING:
        # xpgrad.ops attaches these when it is imported (ops/__init__.py, _install_tensor_methods); they are
        # declared here so that type checkers know what a Tensor supports. An operand is a Tensor, a Python
        # number or an array-like of the tensor's own library.
        def __add__(self, other: object) -> Tensor: ...
        def __radd__(self, other: object) -> Tensor: ...
        def __sub__(self, other: object) -> Tensor: ...
        def __rsub__(self, other: object) -> Tensor: ...
        def __mul__(self, other: object) -> Tensor: ...
        def __rmul__(self, other: object) -> Tensor: ...
        def __truediv__(self, other: object) -> Tensor: ...
        def __rtruediv__(self, other: object) -> Tensor: ...
        def __pow__(self, other: object) -> Tensor: ...
        def __rpow__(self, other: object) -> Tensor: ...
        def __matmul__(self, other: object) -> Tensor: ...
        def __rmatmul__(self, other: object) -> Tensor: ...
        def __neg__(self) -> Tensor: ...
        def __pos__(self) -> Tensor: ...
        def __abs__(self) -> Tensor: ...
        def __getitem__(self, index: object) -> Tensor: ...
        def __lt__(self, other: object) -> Tensor: ...
        def __le__(self, other: object) -> Tensor: ...
        def __gt__(self, other: object) -> Tensor: ...
        def __ge__(self, other: object) -> Tensor: ...
        # elementwise, as in NumPy: a Tensor of booleans, not one bool
        def __eq__(self, other: object) -> Tensor: ...  # type: ignore[override]
        def __ne__(self, other: object) -> Tensor: ...  # type: ignore[override]
        def __hash__(self) -> int: ...
        def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor: ...
        def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor: ...
        def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor: ...
        def min(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor: ...
        def reshape(self, *shape: int | tuple[int, ...]) -> Tensor: ...
        def transpose(self, *axes: int | tuple[int, ...]) -> Tensor: ...
        def broadcast_to(self, *shape: int | tuple[int, ...]) -> Tensor: ...
        def astype(self, dtype: object) -> Tensor: ...
        def to(self, device: object) -> Tensor: ...
        def exp(self) -> Tensor: ...
        def log(self) -> Tensor: ...
        def sqrt(self) -> Tensor: ...
        def abs(self) -> Tensor: ...
        def sigmoid(self) -> Tensor: ...
        def tanh(self) -> Tensor: ...
        def relu(self) -> Tensor: ...
        def softmax(self, axis: int = -1) -> Tensor: ...
        def log_softmax(self, axis: int = -1) -> Tensor: ...
        @property
        def T(self) -> Tensor: ...
        @property
        def mT(self) -> Tensor: ...

    # ---- autograd ------------------------------------------------------------------------
    def retain_grad(self) -> Tensor:
        """Keep this non-leaf tensor's gradient in `.grad` after backward."""
        if self._node is not None:
            autograd.retain_grad(self)
        return self

    def backward(self, grad: Any = None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf that requires grad (see `xpgrad.backprop`)."""
        backprop.run_backward((self,), (grad,), retain_graph=retain_graph or create_graph, create_graph=create_graph)


from . import autograd, backprop  # noqa: E402  (they build Tensors; imported after the class exists)
