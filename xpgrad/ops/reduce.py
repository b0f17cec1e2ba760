"""Reductions: sum, mean, max, min over an axis (int or tuple) with keepdims."""

from __future__ import annotations

import builtins

from ..autograd import Node, apply1, require_tensor
from ..errors import ShapeError
from ..tensor import Tensor


def normalize_axis(op: str, axis, ndim: int) -> tuple:
    """`axis` (None, int or tuple) as a sorted tuple of non-negative ints, validated against `ndim`."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, int) or not -ndim <= a < builtins.max(ndim, 1):
            raise ShapeError(f"{op}: axis {axis!r} is out of range for a tensor with {ndim} dimensions")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: axis {axis!r} repeats an axis")
    return tuple(sorted(out))


class _Reduce(Node):
    __slots__ = ("axes", "keepdims", "in_shape")

    def setup(self, x: Tensor, axis, keepdims: bool):
        if type(x) is not Tensor:
            require_tensor(self.name, x)
        shape = tuple(x.data.shape)  # not x.shape / x.ndim: two property calls on every reduction
        self.axes = normalize_axis(self.name, axis, len(shape))
        self.keepdims = keepdims
        self.in_shape = shape
        return self

    def kept_shape(self) -> tuple:
        """The output shape with reduced axes kept as size 1 (for broadcasting back)."""
        return tuple(1 if i in self.axes else n for i, n in enumerate(self.in_shape))

    def expand(self, F, g):
        """Upstream gradient reshaped to keepdims form (broadcastable against the input; a 0-d
        gradient of a full reduction already is)."""
        return g if self.keepdims or not g.shape else F.reshape(g, self.kept_shape())


class Sum(_Reduce):
    __slots__ = ()
    name = "sum"

    def forward(self, xp, a):
        return xp.sum(a, axis=self.axes, keepdims=self.keepdims)

    def backward(self, F, gy, args, y):
        return (F.broadcast_to(self.expand(F, gy), self.in_shape),)


class Mean(_Reduce):
    __slots__ = ()
    name = "mean"

    def forward(self, xp, a):
        return xp.mean(a, axis=self.axes, keepdims=self.keepdims)

    def backward(self, F, gy, args, y):
        count = 1
        for i in self.axes:
            count *= self.in_shape[i]
        return (F.broadcast_to(self.expand(F, gy) / count, self.in_shape),)


class _Extremum(_Reduce):
    """max/min: the gradient is routed to the elements equal to the result; ties split it."""

    __slots__ = ()
    saves_output = True

    def backward(self, F, gy, args, y):
        x = args[0]
        mask = F.astype(x == self.expand(F, y), gy.dtype)
        share = self.expand(F, gy) / F.sum(mask, axis=self.axes, keepdims=True)
        return (mask * share,)


class Max(_Extremum):
    __slots__ = ()
    name = "max"

    def forward(self, xp, a):
        return xp.max(a, axis=self.axes, keepdims=self.keepdims)


class Min(_Extremum):
    __slots__ = ()
    name = "min"

    def forward(self, xp, a):
        return xp.min(a, axis=self.axes, keepdims=self.keepdims)


def _empty_check(op: str, x: Tensor, axes) -> None:
    if any(x.shape[i] == 0 for i in axes):
        raise ShapeError(f"{op}: cannot reduce over an empty axis (shape {x.shape})")


def sum(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over `axis` (None: all)."""
    return apply1(Sum().setup(x, axis, keepdims), x)


def mean(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """Mean over `axis` (None: all)."""
    node = Mean().setup(x, axis, keepdims)
    _empty_check("mean", x, node.axes)
    return apply1(node, x)


def max(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Maximum over `axis`; the gradient goes to the maximal elements (ties split evenly)."""
    node = Max().setup(x, axis, keepdims)
    _empty_check("max", x, node.axes)
    return apply1(node, x)


def min(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Minimum over `axis`; the gradient goes to the minimal elements (ties split evenly)."""
    node = Min().setup(x, axis, keepdims)
    _empty_check("min", x, node.axes)
    return apply1(node, x)
