"""Eager fusion: an op absorbs the ops that made its input when that input is a temporary.

    h = xg.sigmoid(X @ W)              # matmul, sigmoid           -> one linear_act node
    h = xg.relu(X @ W + b)             # matmul, add, relu         -> one linear_act node with a bias
    loss = ((y_pred - y) ** 2).sum()   # sub, square, sum          -> one mse_loss node ("sum")
    loss = ((y_pred - y) ** 2).mean()  # sub, square, mean         -> one mse_loss node ("mean")

The notes' 20-line two-layer net written with tensors then records three nodes, not six, as
if it had been written with `xg.linear` and `xg.mse_loss`. A skipped tensor (`X @ W`, `y_pred - y`,
its square) must be a temporary: held by nothing but the call or the one node that consumes it
(`autograd.TEMPORARY_REFS`). Nobody can then ask for its gradient (retain_grad, xg.grad, a
later op), and the fused node computes the same values and leaf gradients, so fusion changes
the cost only. Anything else, or a skipped node under retain_grad or XPGRAD_DEBUG, runs op by op.

These are the public `sigmoid`, `relu`, `sum` and `mean` (and the Tensor methods); the
reference count is read first thing, before the argument is passed on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ..autograd import HELD_BY_SLOTS_REFS, TEMPORARY_REFS, array_fns, link_fused, skippable
from ..tensor import Tensor
from . import activation, reduce
from .arith import Add, Mul, Pow, Sub, is_square
from .linalg import LinearAct, MatMul, TableMatMul
from .loss import SquaredError

Entry = TypeVar("Entry", bound=Callable[..., Tensor])

_PRODUCTS = (MatMul, TableMatMul)  # the nodes of x @ W (NumPy's, and every other library's)


def _named_like(entry: Entry, plain: Callable[..., Any]) -> Entry:
    entry.__name__ = entry.__qualname__ = plain.__name__
    entry.__doc__ = plain.__doc__
    return entry


def _activation(plain: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """`plain` (activation.sigmoid or relu), fused with a temporary affine map that feeds it."""
    name = plain.__name__

    def entry(x: Tensor) -> Tensor:
        if sys.getrefcount(x) == TEMPORARY_REFS and type(x) is Tensor:
            fused = _affine_activation(x, name)
            if fused is not None:
                return fused
        return plain(x)

    return _named_like(entry, plain)


def _reduction(plain: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """`plain` (reduce.sum or mean), fused over all axes with a temporary squared difference."""
    name = plain.__name__

    def entry(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
        if axis is None and not keepdims and sys.getrefcount(x) == TEMPORARY_REFS and type(x) is Tensor:
            fused = _squared_error(x, name)
            if fused is not None:
                return fused
        return plain(x, axis, keepdims)

    return _named_like(entry, plain)


sigmoid, relu = _activation(activation.sigmoid), _activation(activation.relu)
sum, mean = _reduction(reduce.sum), _reduction(reduce.mean)  # noqa: A001


def _held_only_by(node, i: int, slots: int) -> bool:
    """node.inputs[i] is held by `slots` slots of node.inputs and nothing else."""
    return sys.getrefcount(node.inputs[i]) == HELD_BY_SLOTS_REFS + slots


def _affine_activation(x: Tensor, activation_name: str):
    """act(a @ W) or act(a @ W + b), with a temporary product (and sum), as one LinearAct node."""
    node = x._node
    kind = type(node)
    if kind is Add:
        add = node
        if not _held_only_by(add, 0, 1):  # first: naming the product below adds a reference
            return None
        product, b = add.inputs
        if (
            type(product) is not Tensor
            or type(product._node) not in _PRODUCTS
            or type(b) is not Tensor
            or not skippable(add)
        ):
            return None
        node = product._node
    elif kind not in _PRODUCTS:
        return None
    else:
        add = b = None
    a, W = node.inputs
    if (
        type(a) is not Tensor
        or type(W) is not Tensor
        or len(a.data.shape) != 2
        or len(W.data.shape) != 2
        or not skippable(node)
    ):
        return None
    z = x.data
    dtype = z.dtype  # one dtype throughout
    if a.data.dtype != dtype or W.data.dtype != dtype:
        return None
    inputs, args, takes_grad = node.inputs, node.args, node.takes_grad
    if b is not None:
        if b.data.shape != W.data.shape[1:] or b.data.dtype != dtype:
            return None
        inputs, args = inputs + (b,), args + (b.data,)
        takes_grad = takes_grad + (2,) if b.requires_grad else takes_grad
    fused = LinearAct()
    fused.activation = activation_name
    out = array_fns(z).bias_act(z, None, activation_name)  # z already holds a @ W (+ b)
    return link_fused(fused, out, inputs, args, takes_grad, (node if add is None else add).gen)


def _squared_error(x: Tensor, reduction: str):
    """sum or mean of (p - t) ** 2 (or of d * d), with temporary d and square, as one SquaredError node."""
    square = x._node
    kind = type(square)
    if kind is Pow:
        if not is_square(square.args[1]) or not _held_only_by(square, 0, 1):
            return None
    elif kind is not Mul or square.inputs[0] is not square.inputs[1] or not _held_only_by(square, 0, 2):
        return None
    d = square.inputs[0]
    sub = d._node
    if type(sub) is not Sub or not skippable(square) or not skippable(sub):
        return None
    p, t = sub.inputs
    shape = d.data.shape
    if type(p) is not Tensor or p.data.shape != shape or (type(t) is Tensor and t.data.shape != shape):
        return None
    node = SquaredError.for_reduction(reduction, d.data.size)
    node.diff = d.data
    squares = x.data
    xp = array_fns(squares).xp
    value = xp.sum(squares) if reduction == "sum" else xp.mean(squares)  # what Sum / Mean would give
    return link_fused(node, value, sub.inputs, sub.args, sub.takes_grad, sub.gen)
