"""The notes' worked examples as graphs: the sigmoid circuit, Deep Learning from Scratch's apples, a two-layer net."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..creation import tensor
from ..ops import linear, sigmoid, softmax_cross_entropy
from ..tensor import Tensor
from .trace import retain_grads


def _leaf(value: object, name: str, requires_grad: bool = True, dtype: str = "float64") -> Tensor:
    leaf: Tensor = tensor(value, dtype=dtype, requires_grad=requires_grad, name=name)
    return leaf


def _sigmoid_circuit() -> Tensor:
    """cs231n "Backprop, intuitions": f = 1 / (1 + exp(-(w0*x0 + w1*x1 + w2))), from primitive gates."""
    w0, x0 = _leaf(2.0, "w0"), _leaf(-1.0, "x0")
    w1, x1 = _leaf(-3.0, "w1"), _leaf(-2.0, "x1")
    w2 = _leaf(-3.0, "w2")
    dot = w0 * x0 + w1 * x1 + w2
    f: Tensor = 1.0 / (1.0 + (-dot).exp())
    f.name = "f"
    return f


def _apple() -> Tensor:
    """Deep Learning from Scratch ch. 5: 2 apples at 100 each, consumption tax 1.1."""
    apple, apple_num, tax = _leaf(100.0, "apple"), _leaf(2.0, "apple_num"), _leaf(1.1, "tax")
    price: Tensor = apple * apple_num * tax
    price.name = "price"
    return price


def _apple_orange() -> Tensor:
    """Deep Learning from Scratch ch. 5: 2 apples at 100, 3 oranges at 150, tax 1.1."""
    apple, apple_num = _leaf(100.0, "apple"), _leaf(2.0, "apple_num")
    orange, orange_num = _leaf(150.0, "orange"), _leaf(3.0, "orange_num")
    tax = _leaf(1.1, "tax")
    price: Tensor = (apple * apple_num + orange * orange_num) * tax
    price.name = "price"
    return price


def _two_layer() -> Tensor:
    """A small two-layer net: x -> linear -> sigmoid -> linear -> softmax cross-entropy, two samples."""
    x = _leaf([[1.0, -2.0, 0.5], [0.3, 0.8, -1.2]], "x", requires_grad=False)
    W1 = _leaf([[0.2, -0.5, 0.1, 0.4], [0.3, 0.2, -0.3, 0.1], [-0.4, 0.6, 0.5, -0.2]], "W1")
    b1 = _leaf([0.1, 0.0, -0.1, 0.2], "b1")
    W2 = _leaf([[0.5, -0.3], [-0.2, 0.4], [0.3, 0.3], [-0.6, 0.1]], "W2")
    b2 = _leaf([0.0, 0.1], "b2")
    y = _leaf([0, 1], "y", requires_grad=False, dtype="int64")
    h = sigmoid(linear(x, W1, b1))
    loss: Tensor = softmax_cross_entropy(linear(h, W2, b2), y)
    loss.name = "loss"
    return loss


EXAMPLES: dict[str, tuple[Callable[[], Tensor], dict[str, Any]]] = {
    "sigmoid-circuit": (_sigmoid_circuit, {"collapse": False}),
    "apple": (_apple, {"collapse": False}),
    "apple-orange": (_apple_orange, {"collapse": False}),
    "two-layer": (_two_layer, {"collapse": True}),
}


def example(name: str) -> Tensor:
    """The output of one of the `EXAMPLES` ("sigmoid-circuit", "apple", "apple-orange", "two-layer").

    Built, then backpropagated with every interior gradient retained (`retain_grads`, then
    ``backward(retain_graph=True)``), so `to_dot` draws every value and gradient. Draw it with
    ``to_dot(out, **EXAMPLES[name][1])`` to get the example's own options (two-layer collapses).
    """
    try:
        build, _ = EXAMPLES[name]
    except KeyError:
        raise ValueError(f"viz.example: unknown example {name!r}; choose one of {', '.join(EXAMPLES)}") from None
    out = build()
    retain_grads(out)
    out.backward(retain_graph=True)
    return out
