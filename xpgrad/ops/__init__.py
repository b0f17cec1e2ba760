"""All differentiable ops, and the Tensor operators and methods built on them."""

import operator

from ..tensor import Tensor
from .activation import act_grad, elu, leaky_relu, log_softmax, maxout, sigmoid_grad, softmax, tanh
from .arith import _compare, abs, add, div, exp, log, maximum, minimum, mul, neg, pow, sqrt, sub, where
from .fused import mean, relu, sigmoid, sum  # these four fuse with the ops that made a temporary input
from .linalg import bias_act_grad, linear, matmul
from .loss import hinge_loss, mse_loss, softmax_cross_entropy
from .reduce import max, min
from .shape import (
    astype,
    broadcast_to,
    concat,
    getitem,
    index_grad,
    matrix_transpose,
    one_hot,
    reshape,
    stack,
    to,
    transpose,
)


def _swap(fn):
    def reflected(self, other):
        return fn(other, self)

    return reflected


def _install_tensor_methods() -> None:
    T = Tensor
    T.__add__, T.__radd__ = add, _swap(add)
    T.__sub__, T.__rsub__ = sub, _swap(sub)
    T.__mul__, T.__rmul__ = mul, _swap(mul)
    T.__truediv__, T.__rtruediv__ = div, _swap(div)
    T.__pow__, T.__rpow__ = pow, _swap(pow)
    T.__matmul__, T.__rmatmul__ = matmul, _swap(matmul)
    T.__neg__ = neg
    T.__pos__ = lambda self: self
    T.__abs__ = abs
    T.__getitem__ = getitem
    for name, op in (
        ("lt", operator.lt),
        ("le", operator.le),
        ("gt", operator.gt),
        ("ge", operator.ge),
        ("eq", operator.eq),
        ("ne", operator.ne),
    ):
        setattr(T, f"__{name}__", _compare(op))
    T.__hash__ = object.__hash__  # __eq__ is elementwise; identity hashing keeps tensors usable as keys
    T.sum, T.mean, T.max, T.min = sum, mean, max, min
    T.reshape, T.transpose, T.broadcast_to, T.astype, T.to = reshape, transpose, broadcast_to, astype, to
    T.exp, T.log, T.sqrt, T.abs = exp, log, sqrt, abs
    T.sigmoid, T.tanh, T.relu, T.softmax, T.log_softmax = sigmoid, tanh, relu, softmax, log_softmax
    T.T = property(lambda self: transpose(self))
    T.mT = property(matrix_transpose)


_install_tensor_methods()

__all__ = [
    "abs",
    "act_grad",
    "add",
    "astype",
    "bias_act_grad",
    "broadcast_to",
    "concat",
    "div",
    "elu",
    "exp",
    "getitem",
    "hinge_loss",
    "index_grad",
    "leaky_relu",
    "linear",
    "log",
    "log_softmax",
    "matmul",
    "matrix_transpose",
    "max",
    "maximum",
    "maxout",
    "mean",
    "min",
    "minimum",
    "mse_loss",
    "mul",
    "neg",
    "one_hot",
    "pow",
    "relu",
    "reshape",
    "sigmoid",
    "sigmoid_grad",
    "softmax",
    "softmax_cross_entropy",
    "sqrt",
    "stack",
    "sub",
    "sum",
    "tanh",
    "transpose",
    "where",
]
