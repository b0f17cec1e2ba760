"""Shape ops: reshape, transpose, broadcast_to, indexing, concat, stack, casts and device moves."""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Node, apply1, apply_n, array_fns, require_tensor, require_tensors, unbroadcast
from ..creation import resolve_dtype, shape_arg
from ..errors import ShapeError
from ..fns import is_basic_index
from ..tensor import Tensor


class Reshape(Node):
    __slots__ = ("shape", "in_shape")
    name = "reshape"

    def forward(self, xp, a):
        return xp.reshape(a, self.shape)

    def backward(self, F, gy, args, y):
        return (F.reshape(gy, self.in_shape),)


class Transpose(Node):
    __slots__ = ("axes",)
    name = "transpose"

    def forward(self, xp, a):
        return xp.permute_dims(a, self.axes)

    def backward(self, F, gy, args, y):
        inverse = tuple(int(i) for i in np.argsort(self.axes))
        return (F.transpose(gy, inverse),)


class BroadcastTo(Node):
    __slots__ = ("shape", "in_shape")
    name = "broadcast_to"

    def forward(self, xp, a):
        return xp.broadcast_to(a, self.shape)

    def backward(self, F, gy, args, y):
        return (unbroadcast(F, gy, self.in_shape),)


class GetItem(Node):
    """x[index]; backward scatters the gradient back, adding at repeated indices."""

    __slots__ = ("index", "in_shape")
    name = "getitem"

    def forward(self, xp, a):
        return array_fns(a).getitem(a, self.index)

    def backward(self, F, gy, args, y):
        return (F.index_grad(gy, self.index, self.in_shape),)


class IndexGrad(Node):
    """The gradient of getitem as a differentiable node (zeros with gy added at index)."""

    __slots__ = ("index", "shape")
    name = "getitem_backward"

    def forward(self, xp, gy):
        return array_fns(gy).index_grad(gy, self.index, self.shape)

    def backward(self, F, gg, args, y):
        return (gg[self.index],)


class Concat(Node):
    __slots__ = ("axis", "sizes")
    name = "concat"

    def forward(self, xp, *arrays):
        return xp.concat(arrays, axis=self.axis)

    def backward(self, F, gy, args, y):
        grads, start = [], 0
        full = [slice(None)] * len(gy.shape)
        for size in self.sizes:
            full[self.axis] = slice(start, start + size)
            grads.append(gy[tuple(full)])
            start += size
        return grads


class Stack(Node):
    __slots__ = ("axis",)
    name = "stack"

    def forward(self, xp, *arrays):
        return xp.stack(arrays, axis=self.axis)

    def backward(self, F, gy, args, y):
        full = [slice(None)] * len(gy.shape)
        grads = []
        for i in range(len(args)):
            full[self.axis] = i
            grads.append(gy[tuple(full)])
        return grads


class AsType(Node):
    __slots__ = ("dtype", "in_dtype")
    name = "astype"

    def forward(self, xp, a):
        return xp.astype(a, self.dtype)

    def backward(self, F, gy, args, y):
        return (F.astype(gy, self.in_dtype),)


class ToDevice(Node):
    __slots__ = ("moved", "source")
    name = "to"

    def forward(self, xp, a):
        return self.moved

    def backward(self, F, gy, args, y):
        return (F.to(gy, self.source),)


# ---- public functions ------------------------------------------------------------------------


def reshape(x: Tensor, *shape) -> Tensor:
    """x with a new shape of the same size (one -1 allowed)."""
    if type(x) is not Tensor:
        require_tensor("reshape", x)
    node = Reshape()
    node.shape = shape_arg(shape)
    node.in_shape = x.shape
    return apply1(node, x)


def transpose(x: Tensor, *axes) -> Tensor:
    """Permute dimensions (default: reverse them, as `.T`)."""
    if type(x) is not Tensor:
        require_tensor("transpose", x)
    axes = shape_arg(axes) if axes and axes != (None,) else tuple(reversed(range(x.ndim)))
    if sorted(a % max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
        raise ShapeError(f"transpose: axes {axes} are not a permutation of the {x.ndim} dimensions of shape {x.shape}")
    node = Transpose()
    node.axes = tuple(a % x.ndim for a in axes)
    return apply1(node, x)


def matrix_transpose(x: Tensor) -> Tensor:
    """Swap the last two dimensions (`.mT`)."""
    if x.ndim < 2:
        raise ShapeError(f"mT: needs at least 2 dimensions, got shape {x.shape}")
    axes = list(range(x.ndim))
    axes[-1], axes[-2] = axes[-2], axes[-1]
    return transpose(x, *axes)


def broadcast_to(x: Tensor, *shape) -> Tensor:
    """x broadcast to `shape`; backward sums the gradient back."""
    if type(x) is not Tensor:
        require_tensor("broadcast_to", x)
    node = BroadcastTo()
    node.shape = shape_arg(shape)
    node.in_shape = x.shape
    return apply1(node, x)


def _normalize_index(index, like: Tensor):
    """Turn Tensors, lists and boolean masks inside an index into backend arrays."""
    if isinstance(index, tuple):
        return tuple(_normalize_index(i, like) for i in index)
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, list):
        index = backend.namespace_of(like.data).asarray(np.asarray(index), device=like.data.device)
    if hasattr(index, "dtype") and "bool" in str(index.dtype) and type(index) is np.ndarray:
        return np.nonzero(index)
    if hasattr(index, "shape") and not hasattr(index, "__array_namespace__") and type(like.data) is not np.ndarray:
        index = backend.namespace_of(like.data).asarray(index, device=like.data.device)
    return index


def getitem(x: Tensor, index) -> Tensor:
    """x[index] for ints, slices, None, Ellipsis and integer arrays (repeated indices accumulate)."""
    node = GetItem()
    node.index = _normalize_index(index, x)
    if type(x.data) is not np.ndarray and is_basic_index(node.index):
        items = node.index if isinstance(node.index, tuple) else (node.index,)
        if not any(i is Ellipsis for i in items):  # the array API indexes every axis: x[0] means x[0, ...]
            node.index = items + (Ellipsis,)
    node.in_shape = x.shape
    return apply1(node, x)


def index_grad(gy: Tensor, index, shape) -> Tensor:
    """Differentiable scatter: zeros of `shape` with `gy` added at `index`."""
    node = IndexGrad()
    node.index = index
    node.shape = tuple(shape)
    return apply1(node, gy)


def _axis_for(op: str, tensors, axis: int, extra: int) -> int:
    ndim = tensors[0].ndim + extra
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{op}: axis {axis} is out of range for {ndim}-d results")
    return axis % ndim


def concat(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    tensors = list(tensors)
    if not tensors:
        raise ShapeError("concat: needs at least one tensor, got an empty sequence")
    require_tensors("concat", tensors)
    node = Concat()
    node.axis = _axis_for("concat", tensors, axis, 0)
    node.sizes = [t.shape[node.axis] if t.ndim > node.axis else 0 for t in tensors]
    return apply_n(node, tensors)


def stack(tensors, axis: int = 0) -> Tensor:
    """Join same-shape tensors along a new axis."""
    tensors = list(tensors)
    if not tensors:
        raise ShapeError("stack: needs at least one tensor, got an empty sequence")
    require_tensors("stack", tensors)
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ShapeError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    node = Stack()
    node.axis = _axis_for("stack", tensors, axis, 1)
    return apply_n(node, tensors)


def astype(x: Tensor, dtype) -> Tensor:
    """x converted to `dtype` (differentiable between floating dtypes)."""
    if type(x) is not Tensor:
        require_tensor("astype", x)
    xp = backend.namespace_of(x.data)
    node = AsType()
    node.dtype = resolve_dtype(xp, dtype)
    node.in_dtype = x.dtype
    if node.dtype == x.dtype:
        return x
    return apply1(node, x)


def to(x: Tensor, device) -> Tensor:
    """`x` on `device` ("cpu", "cuda", "cuda:N"): `x` itself when already there, else a differentiable copy."""
    moved = backend.move(x.data, device)
    if moved is x.data:
        return x
    node = ToDevice()
    node.moved = moved
    node.source = x.device
    return apply1(node, x)


def one_hot(labels, num_classes: int, dtype) -> Tensor:
    """Constant (N, C) one-hot rows of integer `labels`."""
    data = labels.data if isinstance(labels, Tensor) else labels
    return Tensor(array_fns(data).one_hot(data, num_classes, dtype))


__all__ = [
    "reshape",
    "transpose",
    "matrix_transpose",
    "broadcast_to",
    "getitem",
    "index_grad",
    "concat",
    "stack",
    "astype",
    "to",
    "one_hot",
]
