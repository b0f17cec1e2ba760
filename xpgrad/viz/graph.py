"""The display graph: the gates, leaves, collapsed layers and wires that a drawing shows (`build_graph`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..tensor import Tensor
from . import display
from .dot import emit_dot
from .graphviz import GraphvizError
from .style import GRAD_COLOR, fmt_const, fmt_number, fmt_shape, format_value, host_array
from .trace import OpNode, Trace, compute_grads, trace_graph

# A layer to collapse: {"title": str, "nodes": [OpNode], "params", "masks", "internal": [Tensor]}
Group = dict[str, Any]
GradOf = Callable[[Tensor], Any]  # a tensor -> its gradient (an array-like or Tensor), or None

COLLAPSE_ABOVE = 30  # collapse=None collapses graphs with more op + leaf nodes than this

ACTIVATIONS = frozenset({"sigmoid", "tanh", "relu", "leaky_relu", "elu", "softmax", "log_softmax"})

_SYMBOLS = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "div": "/",
    "pow": "**",
    "matmul": "@",
    "neg": "*-1",
    "maximum": "max",
    "minimum": "min",
}


@dataclass
class VizNode:
    """A box or circle of the drawing.

    kind: "op" (one recorded op), "leaf" (an input tensor), "group" (collapsed layer) or
    "output" (the end of the last wire). `label` is the plain text shown, `op` the op name(s).
    """

    id: str
    kind: str
    label: str
    op: str = ""
    details: list[tuple[str, str]] = field(default_factory=list)  # group: (text, color) lines under the title
    requires_grad: bool = True
    inputs: list[str] = field(default_factory=list)  # op: the ids of the nodes feeding its tensor arguments, in order


@dataclass
class VizWire:
    """One tensor flowing from `src` to each of `dsts` (node ids), drawn as value over gradient."""

    id: str
    src: str
    dsts: list[str]
    value: str
    grad: str | None
    name: str | None = None
    shape: tuple[int, ...] = ()


@dataclass
class VizGraph:
    """What `to_dot` draws: nodes and wires, in forward order. `to_dot()` writes it as DOT.

    In Jupyter the graph shows itself as the drawing (SVG from Graphviz), or, without Graphviz,
    as a text listing under a one-line install hint; `layout` holds the `to_dot` options
    (rankdir, legend, leaves_left) it is drawn with there and by `xg.viz.render`.
    """

    nodes: list[VizNode]
    wires: list[VizWire]
    collapsed: bool
    has_grads: bool
    layout: dict[str, Any] = field(default_factory=dict)

    def node(self, label: str) -> VizNode:
        """The first node whose label is `label` (e.g. a leaf's name)."""
        for n in self.nodes:
            if n.label == label:
                return n
        raise KeyError(f"no node labelled {label!r}")

    def wire_from(self, node_id: str) -> VizWire:
        """The wire leaving node `node_id`."""
        for w in self.wires:
            if w.src == node_id:
                return w
        raise KeyError(f"no wire leaves node {node_id!r}")

    def to_dot(self, rankdir: str = "LR", legend: bool = True, leaves_left: bool | None = None) -> str:
        """The graph as Graphviz DOT source (see `xg.viz.to_dot` for the options)."""
        return emit_dot(self, rankdir=rankdir, legend=legend, leaves_left=leaves_left)

    def to_text(self) -> str:
        """The graph as text, one line per node in forward order (what Jupyter shows without Graphviz)."""
        return display.text_listing(self)

    def svg(self) -> str:
        """The drawing as SVG text; raises GraphvizNotFoundError when Graphviz's `dot` is missing."""
        return display.svg(self)

    def _repr_svg_(self) -> str | None:
        try:
            return self.svg()
        except GraphvizError:
            return None  # IPython then shows the text/plain of _repr_mimebundle_

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        return display.mimebundle(self)


def _is_const(t: Tensor) -> bool:
    """An unnamed one-element tensor needing no gradient: folded into its gate like a Python scalar."""
    return t._node is None and not t.requires_grad and t.name is None and t.size == 1


def _const_of(t: Tensor) -> float:
    value: float = t.numpy().reshape(()).item()
    return value


def _gate_label(node: OpNode, labels: str) -> str:
    """The circle's text: cs231n symbols ("*", "+1", "1/x", "exp") or op names ("mul", "add(1, x)")."""
    inputs = node.inputs
    consts = [
        (i, _const_of(x) if isinstance(x, Tensor) else x)
        for i, x in enumerate(inputs)
        if not isinstance(x, Tensor) or _is_const(x)
    ]
    name: str = node.name
    if labels == "names":
        if not consts:
            return name
        cmap = dict(consts)
        parts = [fmt_const(cmap[i]) if i in cmap else "x" for i in range(len(inputs))]
        return f"{name}({', '.join(parts)})"
    sym = _SYMBOLS.get(name, name)
    if not consts or len(inputs) != 2 or len(consts) != 1:
        return sym
    pos, c = consts[0]
    cs = fmt_const(c)
    if name in ("add", "mul"):
        return f"{sym}{cs}"
    if name in ("sub", "div", "pow"):
        return f"{sym}{cs}" if pos == 1 else f"{cs}{sym}x"
    if name in ("maximum", "minimum"):
        return f"{sym}(x,{cs})"
    return f"{name} {cs}"


def _names_of(names: object) -> dict[int, str]:
    """`names` as {id(tensor): name}: a dict {name: tensor} or {id: name}, or a model's named_parameters()."""
    if names is None:
        return {}
    if hasattr(names, "named_parameters"):
        names = dict(names.named_parameters())
    if isinstance(names, dict):
        out = {}
        for k, v in names.items():
            if isinstance(v, Tensor):
                out[id(v)] = str(k)
            else:
                out[k] = str(v)
        return out
    raise TypeError(
        f"viz: names must be a dict {{name: tensor}}, a dict {{id(tensor): name}} or a model with "
        f"named_parameters(), got {type(names).__name__}"
    )


def _grad_lookup(grads: dict[int, Any] | None) -> GradOf:
    if grads is None:
        return lambda t: t.grad
    return lambda t: grads.get(id(t))


def build_graph(
    output: Tensor,
    show_grads: bool = True,
    collapse: bool | None = None,
    grads: str | dict[int, Any] | None = None,
    labels: str = "symbols",
    names: object = None,
) -> VizGraph:
    """The drawing of `output`'s graph as a `VizGraph` (what `to_dot` writes out); see `to_dot`."""
    given_names = _names_of(names)

    def name_of(t: Tensor) -> str | None:
        return given_names.get(id(t)) or t.name

    if labels not in ("symbols", "names"):
        raise ValueError(f"viz: labels must be 'symbols' or 'names', got {labels!r}")
    tr = trace_graph(output)
    if isinstance(grads, str):
        if grads != "compute":
            raise ValueError(f"viz: grads must be None, 'compute' or a dict {{id(tensor): grad}}, got {grads!r}")
        grads = compute_grads(output) if show_grads else None
    grad_of = _grad_lookup(grads)

    # leaves folded into gates as constants are not drawn
    folded: set[int] = set()
    for item in tr.order:
        if item[0] == "leaf" and item[1] is not output and _is_const(item[1]):
            folded.add(id(item[1]))

    n_items = sum(1 for item in tr.order if item[0] == "op" or id(item[1]) not in folded)
    if collapse is None:
        collapse = n_items > COLLAPSE_ABOVE
    groups = _find_groups(tr) if collapse else []

    owner: dict[int, str] = {}  # id(node) / id(leaf tensor) -> display id of the group that swallowed it
    hidden: set[int] = set()  # id(tensor) of wires inside a group
    for gi, g in enumerate(groups):
        gid = f"group_{gi}"
        for node in g["nodes"]:
            owner[id(node)] = gid
        for leaf in g["params"] + g["masks"]:
            owner[id(leaf)] = gid
            hidden.add(id(leaf))
        for t in g["internal"]:
            hidden.add(id(t))

    nodes: list[VizNode] = []
    display_of: dict[int, str] = {}  # id(tensor) -> display id of its source
    dst_of_node: dict[int, str] = {}  # id(op node) -> display id
    any_grad = False
    counters = {"leaf": 0, "op": 0}
    group_emitted: set[str] = set()

    def grad_text(t: Tensor) -> str | None:
        nonlocal any_grad
        if not show_grads:
            return None
        g = grad_of(t)
        if g is None:
            return None
        any_grad = True
        return format_value(g)

    for item in tr.order:
        if item[0] == "leaf":
            t = item[1]
            if id(t) in folded:
                continue
            if id(t) in owner:
                display_of[id(t)] = owner[id(t)]
                continue
            lid = f"leaf_{counters['leaf']}"
            counters["leaf"] += 1
            label = name_of(t) or fmt_shape(t.shape)
            nodes.append(VizNode(lid, "leaf", label, requires_grad=t.requires_grad))
            display_of[id(t)] = lid
            continue
        node, out = item[1], item[2]
        group_id = owner.get(id(node))
        if group_id is not None:
            dst_of_node[id(node)] = group_id
            display_of[id(out)] = group_id
            if group_id not in group_emitted:
                group_emitted.add(group_id)
                g = groups[int(group_id.split("_")[1])]
                gnode = _group_node(group_id, g, grad_of if show_grads else None, name_of)
                any_grad = any_grad or any(color == GRAD_COLOR for _, color in gnode.details)
                nodes.append(gnode)
            continue
        oid = f"op_{counters['op']}"
        counters["op"] += 1
        inputs = [display_of[id(x)] for x in node.inputs if isinstance(x, Tensor) and id(x) not in folded]
        nodes.append(VizNode(oid, "op", _gate_label(node, labels), op=node.name, inputs=inputs))
        dst_of_node[id(node)] = oid
        display_of[id(out)] = oid

    wires: list[VizWire] = []
    wire_n = 0
    out_id = "output"
    for item in tr.order:
        t = item[1] if item[0] == "leaf" else item[2]
        key = id(t)
        if key in folded or key in hidden:
            continue
        src = display_of[key]
        dsts = []
        for consumer in tr.consumers.get(key, []):
            d = dst_of_node[id(consumer)]
            if d != src:
                dsts.append(d)
        if t is output:
            dsts.append(out_id)
        if not dsts:
            continue
        name = name_of(t) if (item[0] == "op" and t is not output) else None
        wires.append(VizWire(f"v_{wire_n}", src, dsts, format_value(t), grad_text(t), name=name, shape=t.shape))
        wire_n += 1
    nodes.append(VizNode(out_id, "output", name_of(output) or "out", requires_grad=output.requires_grad))
    return VizGraph(nodes, wires, collapsed=bool(groups), has_grads=any_grad)


def _single_consumer(tr: Trace, t: Tensor, node: OpNode) -> bool:
    users = tr.consumers.get(id(t), [])
    return len(users) == 1 and users[0] is node and t is not tr.output


def _own_param(tr: Trace, t: object, node: OpNode, ndim: int | None = None) -> bool:
    """`t` is a leaf parameter used by `node` alone."""
    return (
        isinstance(t, Tensor)
        and t._node is None
        and t.requires_grad
        and _single_consumer(tr, t, node)
        and (ndim is None or t.ndim == ndim)
    )


def _find_groups(tr: Trace) -> list[Group]:
    """Layers to collapse: linear (or matmul [+ add bias]) with own W/b leaves [+ activation]; mse."""
    node_out = {id(item[1]): item[2] for item in tr.order if item[0] == "op"}
    taken: set[int] = set()
    groups: list[Group] = []

    def next_op(t: Tensor) -> OpNode | None:
        users = tr.consumers.get(id(t), [])
        if len(users) != 1 or t is tr.output or id(users[0]) in taken:
            return None
        return users[0]

    for item in tr.order:
        if item[0] != "op" or id(item[1]) in taken:
            continue
        node, out = item[1], item[2]
        members, params, internal = [node], [], []
        title = None
        if node.name in ("linear", "linear_act"):
            W = node.inputs[1]
            title = f"Linear {W.shape[0]}\u2192{W.shape[1]}" if W.ndim == 2 else "Linear"
            if node.name == "linear_act":  # xg.linear(..., activation=...): the activation is inside the node
                title += f" + {node.activation}"
            params = [p for p in node.inputs[1:] if _own_param(tr, p, node)]
        elif node.name == "matmul" and _own_param(tr, node.inputs[1], node, ndim=2):
            W = node.inputs[1]
            params = [W]
            title = f"Linear {W.shape[0]}\u2192{W.shape[1]}"
            add = next_op(out)
            if add is not None and add.name == "add":
                other = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
                if _own_param(tr, other, add, ndim=1):
                    members.append(add)
                    params.append(other)
                    internal.append(out)
                    out = node_out[id(add)]
        elif node.name == "sub":
            users = tr.consumers.get(id(out), [])
            mul = users[0] if len(users) == 2 and users[0] is users[1] and out is not tr.output else None
            if mul is not None and mul.name == "mul" and id(mul) not in taken and mul.inputs[0] is out:
                sq = node_out[id(mul)]
                mean = next_op(sq)
                if mean is not None and mean.name == "mean":
                    groups.append(
                        {
                            "title": "mse_loss",
                            "nodes": [node, mul, mean],
                            "params": [],
                            "internal": [out, sq],
                            "masks": [],
                        }
                    )
                    taken.update({id(node), id(mul), id(mean)})
            continue
        else:
            continue
        masks = []
        act = next_op(out)
        if act is not None and act.name in ACTIVATIONS:
            members.append(act)
            internal.append(out)
            title += f" + {act.name}"
            out = node_out[id(act)]
        drop = next_op(out)
        if drop is not None and drop.name == "mul":  # nn.Dropout: out * (a constant mask of out's shape)
            mask = drop.inputs[1] if drop.inputs[0] is out else drop.inputs[0]
            if (
                isinstance(mask, Tensor)
                and mask is not out
                and mask._node is None
                and not mask.requires_grad
                and mask.shape == out.shape
                and _single_consumer(tr, mask, drop)
            ):
                members.append(drop)
                masks.append(mask)
                internal.append(out)
                title += " + dropout"
        groups.append({"title": title, "nodes": members, "params": params, "internal": internal, "masks": masks})
        taken.update(id(m) for m in members)
    return groups


def _group_node(gid: str, g: Group, grad_of: GradOf | None, name_of: Callable[[Tensor], str | None]) -> VizNode:
    """A collapsed layer: its title, its parameters' shapes and (with `grad_of`) their gradient norms."""
    details = []
    if g["params"]:
        names = [name_of(p) or ("W" if p.ndim == 2 else "b") for p in g["params"]]
        details.append(("  ".join(f"{n} {fmt_shape(p.shape)}" for n, p in zip(names, g["params"])), "#333333"))
        norms = []
        for n, p in zip(names, g["params"]):
            grad = grad_of(p) if grad_of is not None else None
            if grad is not None:
                norm = float(np.linalg.norm(host_array(grad).astype(np.float64).reshape(-1)))
                norms.append(f"|\u2207{n}| {fmt_number(norm)}")
        if norms:
            details.append(("  ".join(norms), GRAD_COLOR))
    return VizNode(gid, "group", g["title"], op=",".join(n.name for n in g["nodes"]), details=details)
