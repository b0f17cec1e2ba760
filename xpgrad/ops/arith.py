"""Elementwise arithmetic and math: each op's forward beside its backward (cs231n gate rules).

add distributes the upstream gradient, mul swaps its inputs, max routes to the larger one.
Broadcasting is undone by the engine (`broadcasts = True` → `autograd.unbroadcast`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

from .. import backend
from ..autograd import Node, apply1, apply2, operand
from ..tensor import Tensor


class Add(Node):
    __slots__ = ()
    name = "add"
    broadcasts = True
    array_op = operator.add  # forward: a + b

    def backward(self, F, gy, args, y):
        return gy, gy


class Sub(Node):
    __slots__ = ()
    name = "sub"
    broadcasts = True
    array_op = operator.sub  # forward: a - b

    def backward(self, F, gy, args, y):
        return gy, (-gy if 1 in self.takes_grad else None)


class Mul(Node):
    __slots__ = ()
    name = "mul"
    broadcasts = True
    array_op = operator.mul  # forward: a * b

    def backward(self, F, gy, args, y):
        a, b = args
        if a is b and self.inputs[0] is self.inputs[1]:  # x * x: one gradient, routed once
            return _square_grad(gy, a), None
        return (gy * b if 0 in self.takes_grad else None), (gy * a if 1 in self.takes_grad else None)


class Div(Node):
    __slots__ = ()
    name = "div"
    broadcasts = True
    array_op = operator.truediv  # forward: a / b

    def backward(self, F, gy, args, y):
        a, b = args
        ga = gy / b
        return ga, -ga * a / b


class Neg(Node):
    __slots__ = ()
    name = "neg"

    def forward(self, xp, a):
        return -a

    def backward(self, F, gy, args, y):
        return (-gy,)


def is_square(exponent) -> bool:
    """`exponent` is the Python number 2: x ** 2, whose gradient is 2 x gy."""
    return type(exponent) in (int, float) and exponent == 2


def _square_grad(gy, x):
    """The gradient of x ** 2 (or x * x): 2 x gy in two passes, not three."""
    g = gy * x
    return g + g


class Pow(Node):
    __slots__ = ()
    name = "pow"
    broadcasts = True
    saves_output = True
    array_op = operator.pow  # forward: a ** b

    def backward(self, F, gy, args, y):
        a, b = args
        ga = gb = None
        if 0 in self.takes_grad:
            if is_square(b):
                ga = _square_grad(gy, a)
            else:
                ga = gy * b * a ** (b - 1)
        if 1 in self.takes_grad:
            log_a = F.log(a) if hasattr(a, "shape") else math.log(a)
            gb = gy * y * log_a
        return ga, gb


class Exp(Node):
    __slots__ = ()
    name = "exp"
    saves_output = True

    def forward(self, xp, a):
        return xp.exp(a)

    def backward(self, F, gy, args, y):
        return (gy * y,)


class Log(Node):
    __slots__ = ()
    name = "log"

    def forward(self, xp, a):
        return xp.log(a)

    def backward(self, F, gy, args, y):
        return (gy / args[0],)


class Sqrt(Node):
    __slots__ = ()
    name = "sqrt"
    saves_output = True

    def forward(self, xp, a):
        return xp.sqrt(a)

    def backward(self, F, gy, args, y):
        return (gy / (y + y),)


class Abs(Node):
    __slots__ = ()
    name = "abs"

    def forward(self, xp, a):
        return xp.abs(a)

    def backward(self, F, gy, args, y):
        a = args[0]
        return (F.where(a > 0, gy, F.where(a < 0, -gy, gy * 0)),)


class Maximum(Node):
    """Elementwise max: the gradient goes to the larger input; ties split it evenly."""

    __slots__ = ()
    name = "maximum"
    broadcasts = True
    wins = operator.gt  # which input takes the gradient

    def forward(self, xp, a, b):
        pick = getattr(xp, self.name)
        return pick(a, b) if hasattr(a, "shape") else pick(b, a)

    def backward(self, F, gy, args, y):
        a, b = args
        ties = a == b
        return _route(F, gy, self.wins(a, b), ties), _route(F, gy, self.wins(b, a), ties)


class Minimum(Maximum):
    """Elementwise min: the gradient goes to the smaller input; ties split it evenly."""

    __slots__ = ()
    name = "minimum"
    wins = operator.lt


def _route(F, gy, wins, ties):
    zero = gy * 0
    return F.where(wins, gy, F.where(ties, gy * 0.5, zero))


class Where(Node):
    """where(cond, a, b): the gradient flows to `a` where cond holds and to `b` elsewhere."""

    __slots__ = ("cond",)
    name = "where"
    broadcasts = True

    def forward(self, xp, a, b):
        return xp.where(self.cond, a, b)

    def backward(self, F, gy, args, y):
        zero = gy * 0
        return F.where(self.cond, gy, zero), F.where(self.cond, zero, gy)


# ---- public functions ------------------------------------------------------------------------


def _binary(cls: type[Node], doc: str) -> Callable[[object, object], Tensor]:
    """The public function of a two-input op: Tensors, Python scalars or array-likes (apply2 sorts them)."""

    def op(a: object, b: object) -> Tensor:
        return apply2(cls(), a, b)

    op.__name__ = op.__qualname__ = cls.name
    op.__doc__ = doc
    return op


add = _binary(Add, "a + b (broadcasting).")
sub = _binary(Sub, "a - b (broadcasting).")
mul = _binary(Mul, "a * b (broadcasting).")
div = _binary(Div, "a / b (broadcasting).")
pow = _binary(Pow, "a ** b (broadcasting; either side may be a Python scalar).")  # noqa: A001
maximum = _binary(Maximum, "Elementwise maximum; the gradient is routed to the larger input (ties split).")
minimum = _binary(Minimum, "Elementwise minimum; the gradient is routed to the smaller input (ties split).")


def neg(x: Tensor) -> Tensor:
    return apply1(Neg(), x)


def exp(x: Tensor) -> Tensor:
    """e**x elementwise."""
    return apply1(Exp(), x)


def log(x: Tensor) -> Tensor:
    """Natural logarithm elementwise."""
    return apply1(Log(), x)


def sqrt(x: Tensor) -> Tensor:
    return apply1(Sqrt(), x)


def abs(x: Tensor) -> Tensor:  # noqa: A001
    """|x| elementwise (gradient 0 at 0)."""
    return apply1(Abs(), x)


def where(cond, a, b) -> Tensor:
    """Elements of `a` where `cond` is true, else of `b` (cond gets no gradient)."""
    node = Where()
    node.cond = cond.data if isinstance(cond, Tensor) else cond
    like = a if isinstance(a, Tensor) else b
    if not isinstance(like, Tensor):
        like = a = Tensor(backend.namespace_of(node.cond).asarray(a, device=node.cond.device))
    if type(node.cond) is not type(like.data):
        backend.check_same_place("where", node.cond, like.data)
    return apply2(node, operand(a, like), operand(b, like))


# ---- comparisons (no gradient) ---------------------------------------------------------------


def _compare(op):
    def method(self, other):
        other = operand(other, self)
        b = other.data if isinstance(other, Tensor) else other
        if isinstance(other, Tensor):
            backend.check_same_place(op.__name__, self.data, b)
        return Tensor(op(self.data, b))

    method.__name__ = op.__name__
    return method
