"""The backward pass: from the outputs, the recorded nodes (`xpgrad.autograd`) in reverse
topological order, each node's `backward` multiplying its local gradient into the upstream one,
summed where a value fans out; iterative (no recursion), so deep graphs never hit Python's stack.
`backward` accumulates into the leaves' `.grad`; `grad` returns the gradients instead.
"""

from __future__ import annotations

import operator

import numpy as np

from . import autograd, backend  # autograd's names are read through the module: tensor.py
from .errors import GraphFreedError, NoGraphError, ShapeError
from .tensor import Tensor

# (tensor.py imports this module at its end, which can be while autograd itself is still loading.)


def _output_alias(node: autograd.Node):
    """For a create_graph backward: a Tensor standing for `node`'s output (its saved array, made by
    `node`, so gradients through it reach the same graph), or None when the op saves no output."""
    if not node.saves_output:
        return None
    y = autograd._new_tensor(node.saved)
    y._node = node
    y.requires_grad = True
    return y


def _collect(roots) -> list:
    """All nodes reachable from `roots`, in reverse topological order (largest generation first)."""
    nodes = []
    for t in roots:
        if t._node is not None and t._node not in nodes:
            nodes.append(t._node)
    seen = set(nodes)
    for node in nodes:  # breadth first: the list grows while it is walked
        inputs = node.inputs
        if inputs is None:
            continue
        for i in node.takes_grad:
            tn = inputs[i]._node
            if tn is not None and tn not in seen:
                seen.add(tn)
                nodes.append(tn)
    nodes.sort(key=_by_generation, reverse=True)
    return nodes


_by_generation = operator.attrgetter("gen")


def _seed_grad(root: Tensor, grad, create_graph: bool):
    if grad is None:
        if root.data.ndim and root.size != 1:
            raise ShapeError(
                f"backward: output has shape {root.shape}; gradients can be implied only for one-element outputs, "
                f"pass grad= with the output's shape"
            )
        data = root.data
        if type(data) is np.ndarray:  # np.array(1) is ~5x cheaper than np.ones_like for the usual 0-d loss
            g = np.array(1, dtype=data.dtype) if data.ndim == 0 else np.ones(data.shape, data.dtype)
        else:
            g = backend.namespace_of(data).ones_like(data)
        return Tensor(g) if create_graph else g
    g = (
        grad
        if type(grad) is Tensor
        else Tensor(grad if hasattr(grad, "shape") else backend.namespace_of(root.data).asarray(grad, dtype=root.dtype))
    )
    if g.shape != root.shape:
        raise ShapeError(f"backward: grad has shape {g.shape} but the output has shape {root.shape}")
    backend.check_same_place("backward", root.data, g.data)
    return g if create_graph else g.data


def run_backward(roots, grads, *, retain_graph: bool, create_graph: bool, targets=None):
    """Backpropagate from `roots` seeded with `grads`.

    With `targets=None` gradients accumulate into `.grad` of leaves that require grad (and of
    tensors marked with retain_grad). Otherwise the gradients of the tensors in `targets` are
    returned (as arrays, or Tensors when `create_graph`) and no `.grad` is touched.
    """
    for r in roots:
        if not r.requires_grad:
            raise NoGraphError(
                "backward: tensor does not require grad and has no graph; create leaves with requires_grad=True "
                "and call ops outside no_grad()"
            )
    pending: dict = {}
    leaf_grads: dict = {}  # leaf -> summed gradient (Tensors hash by identity)
    for r, g in zip(roots, grads):
        g = _seed_grad(r, g, create_graph)
        if r._node is None:
            leaf_grads[r] = g
        else:
            pending[r._node] = pending[r._node] + g if r._node in pending else g
    nodes = _collect(roots)
    wanted = {id(t): t for t in targets} if targets is not None else None
    wanted_nodes = {t._node: t for t in targets if t._node is not None} if targets is not None else None
    found: dict = {}

    # recording on only for create_graph (a plain try/finally: cheaper than a context manager)
    thread = autograd._thread
    previous_enabled = thread.grad_enabled
    autograd._set_mode(thread, bool(create_graph))
    try:
        F = F_tensor = _tensor_fns() if create_graph else None
        gy_type = None
        debug, capture_all = autograd.is_debug(), wanted is not None
        # WeakKeyDictionary's own len() is Python code: test its dict
        retained = autograd._retained if autograd._retained.data else None
        for node in nodes:
            gy = pending.pop(node, None)
            if gy is None:
                continue
            inputs = node.inputs
            if inputs is None:
                raise GraphFreedError(
                    f"backward: the graph through op '{node.name}' was already freed by an earlier backward; "
                    f"pass retain_graph=True to the first backward to go through it twice"
                )
            if capture_all:
                if node in wanted_nodes:
                    found[id(wanted_nodes[node])] = gy
            elif retained is not None and node in retained:
                out = retained[node]()
                if out is not None:
                    _accumulate_grad(out, gy)
            if create_graph:
                in_grads = node.backward(F_tensor, gy, inputs, _output_alias(node))
            else:
                if type(gy) is not gy_type:
                    gy_type, F = type(gy), autograd.array_fns(gy)
                in_grads = node.backward(F, gy, node.args, node.saved)
            broadcasts = node.broadcasts
            for i in node.takes_grad:
                g = in_grads[i]
                if g is None:
                    continue
                t = inputs[i]
                if debug:
                    what = f"gradient computed by {node.name} backward"
                    autograd._check_finite(g.data if create_graph else g, what, autograd._sites.get(node))
                if broadcasts and g.shape != t.data.shape:
                    g = autograd.unbroadcast(F, g, t.data.shape)
                tn = t._node
                if tn is None:
                    previous = leaf_grads.get(t)
                    leaf_grads[t] = g if previous is None else previous + g
                else:
                    previous = pending.get(tn)
                    pending[tn] = g if previous is None else previous + g
            if not retain_graph:
                node.inputs = node.args = node.saved = None
    finally:
        autograd._set_mode(thread, previous_enabled)

    if wanted is None:
        for t, g in leaf_grads.items():
            _accumulate_grad(t, g)
        if thread.capture is not None:  # xg.capture: which leaves a step updates
            thread.capture.saw_leaves(leaf_grads)
        return None
    for t, g in leaf_grads.items():
        if id(t) in wanted:
            found[id(t)] = g
    return [found.get(id(t)) for t in targets]


def _as_tensor(g) -> Tensor:
    return g if type(g) is Tensor else autograd._new_tensor(g)


def _accumulate_grad(t: Tensor, g) -> None:
    """t.grad += g, out of place (a gradient array may be shared by several tensors)."""
    if t.grad is None:
        t.grad = g if type(g) is Tensor else autograd._new_tensor(g)
    else:
        t.grad = t.grad + _as_tensor(g)


def _tensor_fns():
    from .fns import TENSOR_FNS

    return TENSOR_FNS


def backward(tensors, grad_tensors=None, retain_graph: bool = False, create_graph: bool = False) -> None:
    """Accumulate gradients of `tensors` into the leaves' `.grad` (PyTorch semantics)."""
    tensors = list(tensors)
    grads = list(grad_tensors) if grad_tensors is not None else [None] * len(tensors)
    run_backward(tensors, grads, retain_graph=retain_graph or create_graph, create_graph=create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph: bool = False) -> tuple:
    """Gradients of `outputs` with respect to `inputs`, returned as a tuple of Tensors.

    `.grad` fields are left untouched. An input the outputs do not depend on gets a zero
    gradient. With `create_graph=True` the results are differentiable.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor) or not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise NoGraphError(
                f"grad: inputs[{i}] does not require grad; only tensors with requires_grad=True can be differentiated "
                "against"
            )
    keep = create_graph if retain_graph is None else retain_graph
    found = run_backward(outputs, grad_outputs, retain_graph=keep, create_graph=create_graph, targets=inputs)
    result = []
    for t, g in zip(inputs, found):
        if g is None:
            xp = backend.namespace_of(t.data)
            g = xp.zeros_like(t.data)
        result.append(_as_tensor(g))
    return tuple(result)
