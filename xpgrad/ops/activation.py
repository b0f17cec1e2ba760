"""Activations, each one node whose local gradient is known (the sigmoid gate of the notes)."""

from __future__ import annotations

from ..autograd import Node, apply1, apply2, array_fns, require_tensor
from ..errors import DTypeError, ShapeError
from ..fns import log_softmax_array
from ..tensor import Tensor, dtype_name, is_floating
from .arith import where
from .reduce import max as reduce_max
from .reduce import normalize_axis
from .shape import reshape


def _require_float(op: str, x: Tensor) -> None:
    if type(x) is not Tensor:
        require_tensor(op, x)
    if not is_floating(x.dtype):
        raise DTypeError(f"{op}: expects a floating-point tensor, got dtype {dtype_name(x.dtype)}")


class Sigmoid(Node):
    """y = 1 / (1 + e^-x); dx = dy * y * (1 - y) (one node, not four gates)."""

    __slots__ = ()
    name = "sigmoid"
    saves_output = True

    def forward(self, xp, a):
        return array_fns(a).sigmoid(a)  # stable on both tails; one Numba pass on NumPy

    def backward(self, F, gy, args, y):
        return (F.sigmoid_grad(y, gy),)


class SigmoidGrad(Node):
    """dx = dy * y * (1 - y) as a node of its own, so a second derivative goes through sigmoid."""

    __slots__ = ()
    name = "sigmoid_backward"

    def forward(self, xp, y, gy):
        return array_fns(y).sigmoid_grad(y, gy)

    def backward(self, F, g, args, out):
        y, gy = args
        gy_grad = F.sigmoid_grad(y, g) if 1 in self.takes_grad else None
        y_grad = g * gy * (1 - (y + y)) if 0 in self.takes_grad else None
        return y_grad, gy_grad


class Tanh(Node):
    __slots__ = ()
    name = "tanh"
    saves_output = True

    def forward(self, xp, a):
        return xp.tanh(a)

    def backward(self, F, gy, args, y):
        return (gy * (1 - y * y),)


class ReLU(Node):
    __slots__ = ()
    name = "relu"

    def forward(self, xp, a):
        return array_fns(a).relu(a)  # one Numba pass into a pooled buffer on NumPy

    def backward(self, F, gy, args, y):
        return (F.act_grad("relu", args[0], gy),)  # x > 0 is the same mask as y > 0


class LeakyReLU(Node):
    __slots__ = ("slope",)
    name = "leaky_relu"

    def forward(self, xp, a):
        return xp.where(a > 0, a, a * self.slope)

    def backward(self, F, gy, args, y):
        return (F.where(args[0] > 0, gy, gy * self.slope),)


class ELU(Node):
    __slots__ = ("alpha",)
    name = "elu"
    saves_output = True

    def forward(self, xp, a):
        return xp.where(a > 0, a, self.alpha * (xp.exp(xp.minimum(a, 0)) - 1))

    def backward(self, F, gy, args, y):
        return (F.where(args[0] > 0, gy, gy * (y + self.alpha)),)


class Softmax(Node):
    __slots__ = ("axis",)
    name = "softmax"
    saves_output = True

    def forward(self, xp, a):
        e = xp.exp(log_softmax_array(xp, a, self.axis))
        return e

    def backward(self, F, gy, args, y):
        return (y * (gy - F.sum(gy * y, axis=self.axis, keepdims=True)),)


class LogSoftmax(Node):
    __slots__ = ("axis",)
    name = "log_softmax"
    saves_output = True

    def forward(self, xp, a):
        return log_softmax_array(xp, a, self.axis)

    def backward(self, F, gy, args, y):
        return (gy - F.exp(y) * F.sum(gy, axis=self.axis, keepdims=True),)


# ---- public functions ------------------------------------------------------------------------


def sigmoid(x: Tensor) -> Tensor:
    """Logistic sigmoid, one node: backward is dy * y * (1 - y)."""
    _require_float("sigmoid", x)
    return apply1(Sigmoid(), x)


def sigmoid_grad(y: Tensor, gy: Tensor) -> Tensor:
    """Differentiable sigmoid backward: gy * y * (1 - y)."""
    return apply2(SigmoidGrad(), y, gy)


def act_grad(activation: str, y: Tensor, gy: Tensor) -> Tensor:
    """Differentiable activation backward from the output y: sigmoid's gy*y*(1-y), or relu's gy where y > 0."""
    return sigmoid_grad(y, gy) if activation == "sigmoid" else where(y > 0, gy, gy * 0)


def tanh(x: Tensor) -> Tensor:
    _require_float("tanh", x)
    return apply1(Tanh(), x)


def relu(x: Tensor) -> Tensor:
    """max(x, 0); the gradient passes where x > 0."""
    _require_float("relu", x)
    return apply1(ReLU(), x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    _require_float("leaky_relu", x)
    node = LeakyReLU()
    node.slope = float(negative_slope)
    return apply1(node, x)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    _require_float("elu", x)
    node = ELU()
    node.alpha = float(alpha)
    return apply1(node, x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, computed stably."""
    _require_float("softmax", x)
    node = Softmax()
    node.axis = normalize_axis("softmax", axis, x.ndim)
    return apply1(node, x)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) along `axis` via log-sum-exp."""
    _require_float("log_softmax", x)
    node = LogSoftmax()
    node.axis = normalize_axis("log_softmax", axis, x.ndim)
    return apply1(node, x)


def maxout(x: Tensor, pieces: int) -> Tensor:
    """Maxout over the last axis: groups of `pieces` consecutive features, max of each group."""
    if type(x) is not Tensor:
        require_tensor("maxout", x)
    if pieces < 1 or x.ndim == 0 or x.shape[-1] % pieces:
        raise ShapeError(
            f"maxout: the last dimension ({x.shape[-1] if x.ndim else 'none'}) must be a positive multiple of "
            f"pieces={pieces}"
        )
    grouped = reshape(x, *x.shape[:-1], x.shape[-1] // pieces, pieces)
    return reduce_max(grouped, axis=-1)
