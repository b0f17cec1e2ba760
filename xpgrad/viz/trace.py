"""Walking the graph recorded behind an output tensor, and getting the gradient of every wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..backprop import grad as autograd_grad
from ..errors import GraphFreedError
from ..tensor import Tensor

# An autograd.Node: its per-op fields (inputs, args, name, ...) live in __slots__ without annotations, so
# mypy cannot read them; the viz code reads them as Any.
OpNode = Any


@dataclass
class Trace:
    """The recorded graph reachable from one output, in forward (post-order) order."""

    output: Tensor
    tensors: dict[int, Tensor] = field(default_factory=dict)  # id(tensor) -> tensor
    order: list[tuple[Any, ...]] = field(default_factory=list)  # ("leaf", tensor) / ("op", node, out), inputs first
    producer: dict[int, OpNode] = field(default_factory=dict)  # id(tensor) -> node (op outputs only)
    consumers: dict[int, list[OpNode]] = field(default_factory=dict)  # id(tensor) -> [node, ...] with multiplicity


def trace_graph(output: Tensor) -> Trace:
    """Every tensor and op reachable from `output`, in forward order; GraphFreedError if a backward freed it."""
    if not isinstance(output, Tensor):
        raise TypeError(f"viz: expected the output Tensor of a computation, got {type(output).__name__}")
    tr = Trace(output)
    tr.tensors[id(output)] = output
    done: set[int] = set()
    stack = [(output, False)]
    while stack:
        t, expanded = stack.pop()
        key = id(t)
        if key in done:
            continue
        node = t._node
        if node is None:
            done.add(key)
            tr.order.append(("leaf", t))
            continue
        if node.inputs is None:
            raise GraphFreedError(
                f"viz: the graph through op '{node.name}' was freed by a backward() without retain_graph=True, "
                f"so its inputs can no longer be drawn; run backward(retain_graph=True) (after "
                f"xg.viz.retain_grads(out) to keep every gradient), or use xg.viz.backward_and_draw(out), or draw "
                f"before backward with to_dot(out, grads='compute')"
            )
        if expanded:
            done.add(key)
            tr.order.append(("op", node, t))
            continue
        tr.producer[key] = node
        stack.append((t, True))
        pending = []
        for x in node.inputs:
            if isinstance(x, Tensor):
                tr.tensors.setdefault(id(x), x)
                tr.consumers.setdefault(id(x), []).append(node)
                if id(x) not in done:
                    pending.append((x, False))
        stack.extend(reversed(pending))  # first input drawn first (top)
    return tr


def retain_grads(output: Tensor) -> list[Tensor]:
    """Call retain_grad() on every interior tensor of `output`'s graph (and on `output` itself).

    Do it after the forward pass and before ``output.backward(retain_graph=True)``, so every
    wire of the drawing has its gradient in ``.grad``. Returns the tensors marked.
    """
    tr = trace_graph(output)
    marked: list[Tensor] = []
    for item in tr.order:
        if item[0] == "op":
            item[2].retain_grad()
            marked.append(item[2])
    return marked


def compute_grads(output: Tensor, grad: Tensor | None = None) -> dict[int, Tensor]:
    """d(output)/d(t) for every tensor t of the graph that requires grad, as ``{id(t): Tensor}``.

    Uses `xg.grad` on the retained graph (``retain_graph=True``): no ``.grad`` field changes and
    the graph stays usable for the caller's own backward. `grad` seeds a non-scalar output.
    """
    tr = trace_graph(output)
    if not output.requires_grad:
        return {}
    wanted = [t for t in tr.tensors.values() if t.requires_grad]
    found = autograd_grad(output, wanted, grad_outputs=grad, retain_graph=True)
    return {id(t): g for t, g in zip(wanted, found)}
