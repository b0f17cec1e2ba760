"""Draw the computational graph the way the cs231n notes do: gates, with the forward value above
every wire and the gradient below it.

    import xpgrad as xg
    f = xg.viz.example("sigmoid-circuit")      # built, backpropagated, every gradient kept
    print(xg.viz.to_dot(f))                    # Graphviz DOT source (needs nothing installed)
    xg.viz.render(f, "circuit.svg")            # runs Graphviz `dot` (.svg, .png, .pdf; .dot/.gv need no Graphviz)

What is drawn
    * one node per op (a circle with the gate's symbol, e.g. ``*``, ``+``, ``exp``, ``1/x``; the op
      name is always the node's tooltip, and ``labels="names"`` puts it in the circle instead);
      Python scalars an op was given fold into the gate (``x * -1`` is the gate ``*-1``);
    * one node per leaf: its ``name`` (``xg.tensor(2.0, name="w0")``), else its shape;
    * one wire per tensor: the forward value above the line (green) and, when known, the gradient
      of the output with respect to that tensor below it (red). Scalars show 2-3 significant
      digits as in the notes (0.73, -0.20, 2.00, 220); arrays show their shape and a summary
      (mean, [min, max]), or their values when they hold at most 4. A tensor used twice gets one
      wire that forks after its label, so the gradient shown is the summed one.
    * ``collapse=True`` (automatic above `COLLAPSE_ABOVE` nodes) folds each MLP layer - a
      ``linear`` op (or ``x @ W + b``) with its own W/b leaves and a following activation - into
      one labelled box ("Linear 3->4 + sigmoid", with the parameters' shapes and gradient norms),
      and ``mean((a - b) * (a - b))`` into one "mse_loss" box.

Where the gradients come from
    ``.grad`` is kept on leaves, and on interior tensors only after ``t.retain_grad()``; a backward
    without ``retain_graph=True`` also frees the graph (the drawing then raises GraphFreedError).
    So draw in one of these ways:

    * ``xg.viz.backward_and_draw(out)``: marks every interior tensor with retain_grad, runs
      ``out.backward(retain_graph=True)`` and returns the DOT (``path=`` renders it as well);
    * ``to_dot(out, grads="compute")``: computes every gradient afresh with ``xg.grad`` on the
      retained graph, touching no ``.grad`` field (what `render_step` does in a training loop);
    * ``to_dot(out)`` after your own ``retain_grads(out); out.backward(retain_graph=True)``;
    * ``to_dot(out, show_grads=False)`` (or before any backward): forward values only.
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np

from .errors import GraphFreedError, XpgradError
from .tensor import Tensor

__all__ = [
    "COLLAPSE_ABOVE", "EXAMPLES", "GraphvizError", "GraphvizNotFoundError", "VizGraph", "add_graph_subcommand",
    "backward_and_draw", "build_graph", "compute_grads", "example", "format_value", "render", "render_step",
    "retain_grads", "run_graph", "to_dot",
]

COLLAPSE_ABOVE = 30  # collapse=None collapses graphs with more op + leaf nodes than this

VALUE_COLOR = "#1a7f1a"  # forward values: green, as in the notes
GRAD_COLOR = "#d62728"  # gradients: red
CONST_COLOR = "#777777"  # leaves that need no gradient (data, labels, constants)
GROUP_FILL = "#e8f0fb"

ACTIVATIONS = frozenset({"sigmoid", "tanh", "relu", "leaky_relu", "elu", "softmax", "log_softmax"})

_SYMBOLS = {
    "add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "matmul": "@", "neg": "*-1",
    "maximum": "max", "minimum": "min",
}

INSTALL_HINT = (
    "install Graphviz: Debian/Ubuntu `apt-get install graphviz` (package `graphviz`), "
    "Fedora `dnf install graphviz`, macOS `brew install graphviz`, conda `conda install graphviz`"
)


class GraphvizError(XpgradError, RuntimeError):
    """The Graphviz `dot` program failed to render a graph."""


class GraphvizNotFoundError(GraphvizError):
    """The Graphviz `dot` program is not installed (or not on PATH)."""


# ---- number formatting --------------------------------------------------------------------------


def _fmt_number(x: float) -> str:
    """A scalar as the notes print it: 0.73, -0.20, 2.00, 1.37, 220, 1.2e-05."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    a = abs(x)
    if a == 0:
        return "0.00"
    if a < 1:
        s = f"{x:#.2g}"
        return s if abs(float(s)) < 1 else f"{x:.2f}"
    if a < 100:
        return f"{x:.2f}"
    if a < 1e6:
        return f"{x:.0f}"
    return f"{x:.3g}"


def _fmt_const(c) -> str:
    """A Python scalar folded into a gate label: 1, -1, 0.5, 1.1."""
    if isinstance(c, bool):
        return str(c)
    if isinstance(c, int):
        return str(c)
    return f"{float(c):g}"


def _fmt_shape(shape) -> str:
    return "\u00d7".join(str(n) for n in shape) if shape else "scalar"


def format_value(array) -> str:
    """One line describing an array (or Tensor) the way the wires show it.

    One element: the number (``0.73``). At most 4 elements: the values (``[0.10, -0.20]``).
    More: shape, mean and range (``2\u00d74 mean 0.52 [0.12, 0.93]``). Integer and boolean arrays
    print exactly. In an array, rounding noise (below a millionth of its largest magnitude)
    prints as 0.00.
    """
    a = np.asarray(_host(array))
    exact = a.dtype.kind in "biu"
    if a.size == 1:
        v = a.reshape(()).item()
        return str(v) if exact else _fmt_number(v)
    if a.size == 0:
        return f"{_fmt_shape(a.shape)} (empty)"
    if exact:
        if a.size <= 4:
            return "[" + ", ".join(str(v) for v in a.reshape(-1).tolist()) + "]"
        return f"{_fmt_shape(a.shape)} {a.dtype} [{a.min()}, {a.max()}]"
    af = a.astype(np.float64)
    finite = af[np.isfinite(af)]
    floor = float(np.abs(finite).max()) * 1e-6 if finite.size else 0.0

    def fmt(v):
        return "0.00" if abs(v) < floor else _fmt_number(v)

    if a.size <= 4:
        return "[" + ", ".join(fmt(v) for v in af.reshape(-1).tolist()) + "]"
    return f"{_fmt_shape(a.shape)} mean {fmt(af.mean())} [{fmt(af.min())}, {fmt(af.max())}]"


def _host(data) -> np.ndarray:
    if isinstance(data, Tensor):
        return data.numpy()
    if isinstance(data, np.ndarray):
        return data
    if hasattr(data, "get") and type(data).__module__.startswith("cupy"):
        return data.get()
    try:
        return np.from_dlpack(data)
    except Exception:  # noqa: BLE001 - last resort for exotic array types
        return np.asarray(data)


# ---- walking the recorded graph -----------------------------------------------------------------


@dataclass
class _Trace:
    """The recorded graph reachable from one output, in forward (post-order) order."""

    output: Tensor
    tensors: dict = field(default_factory=dict)  # id(tensor) -> tensor
    order: list = field(default_factory=list)  # ("leaf", tensor) / ("op", node, out_tensor), inputs first
    producer: dict = field(default_factory=dict)  # id(tensor) -> node (op outputs only)
    consumers: dict = field(default_factory=dict)  # id(tensor) -> [node, ...] with multiplicity


def _trace(output: Tensor) -> _Trace:
    if not isinstance(output, Tensor):
        raise TypeError(f"viz: expected the output Tensor of a computation, got {type(output).__name__}")
    tr = _Trace(output)
    tr.tensors[id(output)] = output
    done: set = set()
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


def retain_grads(output: Tensor) -> list:
    """Call retain_grad() on every interior tensor of `output`'s graph (and on `output` itself).

    Do it after the forward pass and before ``output.backward(retain_graph=True)``, so every
    wire of the drawing has its gradient in ``.grad``. Returns the tensors marked.
    """
    tr = _trace(output)
    marked = []
    for item in tr.order:
        if item[0] == "op":
            item[2].retain_grad()
            marked.append(item[2])
    return marked


def compute_grads(output: Tensor, grad=None) -> dict:
    """d(output)/d(t) for every tensor t of the graph that requires grad, as ``{id(t): Tensor}``.

    Uses `xg.grad` on the retained graph (``retain_graph=True``): no ``.grad`` field changes and
    the graph stays usable for the caller's own backward. `grad` seeds a non-scalar output.
    """
    from .autograd import grad as autograd_grad

    tr = _trace(output)
    if not output.requires_grad:
        return {}
    wanted = [t for t in tr.tensors.values() if t.requires_grad]
    found = autograd_grad(output, wanted, grad_outputs=grad, retain_graph=True)
    return {id(t): g for t, g in zip(wanted, found)}


# ---- the display graph --------------------------------------------------------------------------


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
    details: list = field(default_factory=list)  # group: (text, color) lines under the title
    requires_grad: bool = True


@dataclass
class VizWire:
    """One tensor flowing from `src` to each of `dsts` (node ids), drawn as value over gradient."""

    id: str
    src: str
    dsts: list
    value: str
    grad: str | None
    name: str | None = None
    shape: tuple = ()


@dataclass
class VizGraph:
    """What `to_dot` draws: nodes and wires, in forward order. `to_dot()` writes it as DOT."""

    nodes: list
    wires: list
    collapsed: bool
    has_grads: bool

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
        return _emit_dot(self, rankdir=rankdir, legend=legend, leaves_left=leaves_left)


def _is_const(t: Tensor) -> bool:
    """An unnamed one-element tensor needing no gradient: folded into its gate like a Python scalar."""
    return t._node is None and not t.requires_grad and t.name is None and t.size == 1


def _const_of(t: Tensor):
    v = t.numpy().reshape(()).item()
    return v


def _gate_label(node, labels: str) -> str:
    """The circle's text: cs231n symbols ("*", "+1", "1/x", "exp") or op names ("mul", "add(1, x)")."""
    inputs = node.inputs
    consts = [(i, _const_of(x) if isinstance(x, Tensor) else x) for i, x in enumerate(inputs)
              if not isinstance(x, Tensor) or _is_const(x)]
    name = node.name
    if labels == "names":
        if not consts:
            return name
        cmap = dict(consts)
        parts = [_fmt_const(cmap[i]) if i in cmap else "x" for i in range(len(inputs))]
        return f"{name}({', '.join(parts)})"
    sym = _SYMBOLS.get(name, name)
    if not consts or len(inputs) != 2 or len(consts) != 1:
        return sym
    pos, c = consts[0]
    cs = _fmt_const(c)
    if name in ("add", "mul"):
        return f"{sym}{cs}"
    if name in ("sub", "div", "pow"):
        return f"{sym}{cs}" if pos == 1 else f"{cs}{sym}x"
    if name in ("maximum", "minimum"):
        return f"{sym}(x,{cs})"
    return f"{name} {cs}"


def _names_of(names) -> dict:
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
    raise TypeError(f"viz: names must be a dict {{name: tensor}}, a dict {{id(tensor): name}} or a model with "
                    f"named_parameters(), got {type(names).__name__}")


def _grad_lookup(grads):
    if grads is None:
        return lambda t: t.grad
    return lambda t: grads.get(id(t))


def build_graph(output: Tensor, show_grads: bool = True, collapse: bool | None = None, grads=None,
                labels: str = "symbols", names=None) -> VizGraph:
    """The drawing of `output`'s graph as a `VizGraph` (what `to_dot` writes out); see `to_dot`."""
    names = _names_of(names)

    def name_of(t):
        return names.get(id(t)) or t.name

    if labels not in ("symbols", "names"):
        raise ValueError(f"viz: labels must be 'symbols' or 'names', got {labels!r}")
    tr = _trace(output)
    if isinstance(grads, str):
        if grads != "compute":
            raise ValueError(f"viz: grads must be None, 'compute' or a dict {{id(tensor): grad}}, got {grads!r}")
        grads = compute_grads(output) if show_grads else None
    grad_of = _grad_lookup(grads)

    # leaves folded into gates as constants are not drawn
    folded = set()
    for item in tr.order:
        if item[0] == "leaf" and item[1] is not output and _is_const(item[1]):
            folded.add(id(item[1]))

    n_items = sum(1 for item in tr.order if item[0] == "op" or id(item[1]) not in folded)
    if collapse is None:
        collapse = n_items > COLLAPSE_ABOVE
    groups = _find_groups(tr) if collapse else []

    owner: dict = {}  # id(node) / id(leaf tensor) -> display id of the group that swallowed it
    hidden: set = set()  # id(tensor) of wires inside a group
    for gi, g in enumerate(groups):
        gid = f"group_{gi}"
        for node in g["nodes"]:
            owner[id(node)] = gid
        for leaf in g["params"] + g["masks"]:
            owner[id(leaf)] = gid
            hidden.add(id(leaf))
        for t in g["internal"]:
            hidden.add(id(t))

    nodes: list = []
    display_of: dict = {}  # id(tensor) -> display id of its source
    dst_of_node: dict = {}  # id(op node) -> display id
    any_grad = False
    counters = {"leaf": 0, "op": 0}
    group_emitted: set = set()

    def grad_text(t):
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
            label = name_of(t) or _fmt_shape(t.shape)
            nodes.append(VizNode(lid, "leaf", label, requires_grad=t.requires_grad))
            display_of[id(t)] = lid
            continue
        node, out = item[1], item[2]
        gid = owner.get(id(node))
        if gid is not None:
            dst_of_node[id(node)] = gid
            display_of[id(out)] = gid
            if gid not in group_emitted:
                group_emitted.add(gid)
                g = groups[int(gid.split("_")[1])]
                gnode = _group_node(gid, g, grad_of if show_grads else None, name_of)
                any_grad = any_grad or any(color == GRAD_COLOR for _, color in gnode.details)
                nodes.append(gnode)
            continue
        oid = f"op_{counters['op']}"
        counters["op"] += 1
        nodes.append(VizNode(oid, "op", _gate_label(node, labels), op=node.name))
        dst_of_node[id(node)] = oid
        display_of[id(out)] = oid

    wires: list = []
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


def _single_consumer(tr: _Trace, t: Tensor, node) -> bool:
    users = tr.consumers.get(id(t), [])
    return len(users) == 1 and users[0] is node and t is not tr.output


def _own_param(tr: _Trace, t, node, ndim: int | None = None) -> bool:
    """`t` is a leaf parameter used by `node` alone."""
    return (isinstance(t, Tensor) and t._node is None and t.requires_grad and _single_consumer(tr, t, node)
            and (ndim is None or t.ndim == ndim))


def _find_groups(tr: _Trace) -> list:
    """Layers to collapse: linear (or matmul [+ add bias]) with own W/b leaves [+ activation]; mse."""
    node_out = {id(item[1]): item[2] for item in tr.order if item[0] == "op"}
    taken: set = set()
    groups = []

    def next_op(t):
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
                    groups.append({"title": "mse_loss", "nodes": [node, mul, mean], "params": [],
                                   "internal": [out, sq], "masks": []})
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
            if (isinstance(mask, Tensor) and mask is not out and mask._node is None and not mask.requires_grad
                    and mask.shape == out.shape and _single_consumer(tr, mask, drop)):
                members.append(drop)
                masks.append(mask)
                internal.append(out)
                title += " + dropout"
        groups.append({"title": title, "nodes": members, "params": params, "internal": internal, "masks": masks})
        taken.update(id(m) for m in members)
    return groups


def _group_node(gid: str, g: dict, grad_of, name_of) -> VizNode:
    """A collapsed layer: its title, its parameters' shapes and (with `grad_of`) their gradient norms."""
    details = []
    if g["params"]:
        names = [name_of(p) or ("W" if p.ndim == 2 else "b") for p in g["params"]]
        details.append(("  ".join(f"{n} {_fmt_shape(p.shape)}" for n, p in zip(names, g["params"])), "#333333"))
        norms = []
        for n, p in zip(names, g["params"]):
            grad = grad_of(p) if grad_of is not None else None
            if grad is not None:
                norm = float(np.linalg.norm(_host(grad).astype(np.float64).reshape(-1)))
                norms.append(f"|\u2207{n}| {_fmt_number(norm)}")
        if norms:
            details.append(("  ".join(norms), GRAD_COLOR))
    return VizNode(gid, "group", g["title"], op=",".join(n.name for n in g["nodes"]), details=details)


# ---- DOT ----------------------------------------------------------------------------------------


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wire_label(w: VizWire) -> str:
    top = _esc(w.value)
    if w.name:
        top = f"{_esc(w.name)} = {top}"
    bottom = (f'<FONT COLOR="{GRAD_COLOR}">{_esc(w.grad)}</FONT>' if w.grad is not None else "&#160;")
    return (
        '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
        f'<TR><TD BORDER="1" SIDES="B" WIDTH="44"><FONT COLOR="{VALUE_COLOR}">{top}</FONT></TD></TR>'
        f"<TR><TD>{bottom}</TD></TR></TABLE>>"
    )


def _node_attrs(n: VizNode) -> str:
    if n.kind == "leaf":
        color = "black" if n.requires_grad else CONST_COLOR
        return f'shape=plaintext, label={_q(n.label)}, fontcolor="{color}", tooltip={_q("leaf " + n.label)}'
    if n.kind == "output":
        return f"shape=plaintext, label={_q(n.label)}, tooltip={_q('output ' + n.label)}"
    if n.kind == "op":
        shape = "circle" if len(n.label) <= 4 else "box, style=rounded"
        return f"shape={shape}, label={_q(n.label)}, tooltip={_q(n.op)}"
    rows = f'<TR><TD><B>{_esc(n.label)}</B></TD></TR>'
    for text, color in n.details:
        rows += f'<TR><TD><FONT POINT-SIZE="9" COLOR="{color}">{_esc(text)}</FONT></TD></TR>'
    return (f'shape=box, style="rounded,filled", fillcolor="{GROUP_FILL}", margin="0.08,0.04", '
            f'label=<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{rows}</TABLE>>, '
            f"tooltip={_q(n.op)}")


LEAVES_LEFT_UP_TO = 16  # leaves_left=None lines the inputs up on the left in graphs this small


def _emit_dot(g: VizGraph, rankdir: str = "LR", legend: bool = True, leaves_left: bool | None = None) -> str:
    lines = [
        "digraph xpgrad {",
        f'  graph [rankdir={rankdir}, ordering=in, nodesep=0.18, ranksep=0.28, fontname="Helvetica", fontsize=10, '
        f'bgcolor="white", pad=0.15];',
        '  node [fontname="Helvetica", fontsize=12, width=0.42, height=0.42, margin="0.04,0.02"];',
        '  edge [fontname="Helvetica", arrowsize=0.6, penwidth=1.1];',
    ]
    if legend:
        text = f'<FONT COLOR="{VALUE_COLOR}">forward value</FONT>'
        if g.has_grads:
            text += f' over <FONT COLOR="{GRAD_COLOR}">gradient d(out)/d(wire)</FONT>'
        lines.append(f"  label=<{text}>; labelloc=b; labeljust=r;")
    lr = rankdir in ("LR", "RL")
    out_port, in_port = ("e", "w") if lr else ("s", "n")
    for n in g.nodes:
        if n.kind != "output":
            lines.append(f"  {n.id} [{_node_attrs(n)}];")
    for w in g.wires:
        tip = (w.name + " " if w.name else "") + w.value + (f" (grad {w.grad})" if w.grad is not None else "")
        lines.append(f"  {w.id} [shape=plaintext, margin=0, width=0, height=0, label={_wire_label(w)}, "
                     f"tooltip={_q(tip)}];")
    for n in g.nodes:
        if n.kind == "output":
            lines.append(f"  {n.id} [{_node_attrs(n)}];")
    for w in g.wires:
        lines.append(f"  {w.src} -> {w.id} [dir=none, headport={in_port}];")
        for d in w.dsts:
            lines.append(f"  {w.id} -> {d} [tailport={out_port}];")
    leaves = [n.id for n in g.nodes if n.kind == "leaf"]
    if leaves_left is None:
        leaves_left = not g.collapsed and sum(n.kind in ("leaf", "op") for n in g.nodes) <= LEAVES_LEFT_UP_TO
    if leaves_left and leaves:
        lines.append("  { rank=source; " + "; ".join(leaves) + "; }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_dot(output: Tensor, show_grads: bool = True, collapse: bool | None = None, grads=None,
           labels: str = "symbols", names=None, rankdir: str = "LR", legend: bool = True,
           leaves_left: bool | None = None) -> str:
    """Graphviz DOT source of the graph that computed `output`, drawn like the cs231n circuits.

    show_grads: draw gradients (red, under each value) where they are known.
    collapse: fold each MLP layer (linear/matmul+bias with its own W/b, plus an activation) and
        each mse_loss into one box; None (default) collapses graphs of more than `COLLAPSE_ABOVE`
        op + leaf nodes.
    grads: where gradients come from. None: the tensors' ``.grad`` (leaves after backward; interior
        tensors after `retain_grads` + ``backward(retain_graph=True)``). "compute": computed now
        with `compute_grads` (the graph must still be alive; no ``.grad`` is touched). Or a dict
        ``{id(tensor): grad}``.
    labels: "symbols" (cs231n gates: ``*``, ``+1``, ``1/x``, ``exp``) or "names" (``mul``, ``add(1, x)``).
    names: labels for tensors that have no ``name``: a model (its ``named_parameters()``, e.g.
        "0.weight"), a dict ``{name: tensor}`` or a dict ``{id(tensor): name}``.
    rankdir: "LR" (left to right, as in the notes) or "TB".
    legend: a small colour key under the drawing.
    leaves_left: put every input on the left edge, as the notes do; None (default) does so for
        uncollapsed graphs of at most `LEAVES_LEFT_UP_TO` op + leaf nodes, and otherwise lets
        each input sit next to the op that uses it.

    Raises GraphFreedError when a backward without retain_graph=True already freed the graph.
    """
    g = build_graph(output, show_grads=show_grads, collapse=collapse, grads=grads, labels=labels, names=names)
    return g.to_dot(rankdir=rankdir, legend=legend, leaves_left=leaves_left)


# ---- rendering ----------------------------------------------------------------------------------

_FORMATS = ("svg", "png", "pdf", "jpg", "jpeg", "gif", "ps", "eps", "json", "plain")


def _find_dot() -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizNotFoundError(
            "render: the Graphviz `dot` program was not found on PATH, so the graph cannot be drawn as an image; "
            f"{INSTALL_HINT}. Without it, xg.viz.to_dot(output) still returns the DOT source "
            "(and render() to a .dot/.gv file needs no Graphviz)."
        )
    return dot


def render(output, path, format: str | None = None, **to_dot_kwargs) -> pathlib.Path:  # noqa: A002
    """Draw `output`'s graph (a Tensor, or DOT source as a str) into the file `path` with Graphviz.

    The format comes from the suffix (.svg, .png, .pdf, ...) unless `format` is given; .dot/.gv
    write the DOT source and need no Graphviz. Other keyword arguments go to `to_dot`.
    Raises GraphvizNotFoundError (with the install command) when `dot` is missing and
    GraphvizError when it fails. Returns the path written.
    """
    path = pathlib.Path(path)
    fmt = (format or path.suffix.lstrip(".") or "svg").lower()
    source = output if isinstance(output, str) else to_dot(output, **to_dot_kwargs)
    if isinstance(output, str) and to_dot_kwargs:
        raise TypeError(f"render: options {sorted(to_dot_kwargs)} apply to a Tensor, not to DOT source")
    if fmt in ("dot", "gv"):
        path.write_text(source, encoding="utf-8")
        return path
    if fmt not in _FORMATS:
        raise ValueError(f"render: unknown output format {fmt!r} (from {str(path)!r}); use one of "
                         f"{', '.join(_FORMATS + ('dot', 'gv'))}")
    dot = _find_dot()
    try:
        proc = subprocess.run([dot, f"-T{fmt}", "-o", str(path)], input=source.encode("utf-8"),
                              capture_output=True, timeout=120)
    except OSError as exc:
        raise GraphvizError(f"render: could not run Graphviz `{dot}`: {exc}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise GraphvizError(f"render: Graphviz `dot -T{fmt}` failed (exit {proc.returncode}): {err}")
    return path


def backward_and_draw(output: Tensor, path=None, grad=None, **to_dot_kwargs) -> str:
    """Keep every gradient, backpropagate from `output` and return the drawing as DOT source.

    Calls `retain_grads(output)`, then ``output.backward(grad, retain_graph=True)`` (gradients
    accumulate into ``.grad`` as in any backward; the graph stays drawable), then `to_dot`. With
    `path`, the drawing is also rendered there (see `render`).
    """
    retain_grads(output)
    output.backward(grad, retain_graph=True)
    source = to_dot(output, **to_dot_kwargs)
    if path is not None:
        render(source, path)
    return source


def render_step(loss: Tensor, path, model=None, collapse: bool = True, show_grads: bool = True) -> pathlib.Path:
    """Draw one training step of a model: the graph that computed `loss`, collapsed, with gradients.

    Call it after the forward pass and before ``loss.backward()``: the gradients are computed on
    the side (`compute_grads`, retaining the graph), so no ``.grad`` changes and the training
    step's own backward runs as usual. `model` (anything with ``named_parameters()``) names the
    parameters in the drawing. The format follows the suffix of `path` (see `render`).
    Raises GraphFreedError after a backward that freed the graph, GraphvizNotFoundError without
    Graphviz (unless `path` ends in .dot/.gv). Returns the path written.
    """
    grads = compute_grads(loss) if show_grads and loss.requires_grad else None
    return render(loss, path, collapse=collapse, show_grads=show_grads, grads=grads, names=model)


# ---- the notes' examples ------------------------------------------------------------------------


def _leaf(value, name, requires_grad=True, dtype="float64"):
    from .creation import tensor

    return tensor(value, dtype=dtype, requires_grad=requires_grad, name=name)


def _sigmoid_circuit() -> Tensor:
    """cs231n "Backprop, intuitions": f = 1 / (1 + exp(-(w0*x0 + w1*x1 + w2))), from primitive gates."""
    w0, x0 = _leaf(2.0, "w0"), _leaf(-1.0, "x0")
    w1, x1 = _leaf(-3.0, "w1"), _leaf(-2.0, "x1")
    w2 = _leaf(-3.0, "w2")
    dot = w0 * x0 + w1 * x1 + w2
    f = 1.0 / (1.0 + (-dot).exp())
    f.name = "f"
    return f


def _apple() -> Tensor:
    """Deep Learning from Scratch ch. 5: 2 apples at 100 each, consumption tax 1.1."""
    apple, apple_num, tax = _leaf(100.0, "apple"), _leaf(2.0, "apple_num"), _leaf(1.1, "tax")
    price = apple * apple_num * tax
    price.name = "price"
    return price


def _apple_orange() -> Tensor:
    """Deep Learning from Scratch ch. 5: 2 apples at 100, 3 oranges at 150, tax 1.1."""
    apple, apple_num = _leaf(100.0, "apple"), _leaf(2.0, "apple_num")
    orange, orange_num = _leaf(150.0, "orange"), _leaf(3.0, "orange_num")
    tax = _leaf(1.1, "tax")
    price = (apple * apple_num + orange * orange_num) * tax
    price.name = "price"
    return price


def _two_layer() -> Tensor:
    """A small two-layer net: x -> linear -> sigmoid -> linear -> softmax cross-entropy, two samples."""
    from .ops import linear, sigmoid, softmax_cross_entropy

    x = _leaf([[1.0, -2.0, 0.5], [0.3, 0.8, -1.2]], "x", requires_grad=False)
    W1 = _leaf([[0.2, -0.5, 0.1, 0.4], [0.3, 0.2, -0.3, 0.1], [-0.4, 0.6, 0.5, -0.2]], "W1")
    b1 = _leaf([0.1, 0.0, -0.1, 0.2], "b1")
    W2 = _leaf([[0.5, -0.3], [-0.2, 0.4], [0.3, 0.3], [-0.6, 0.1]], "W2")
    b2 = _leaf([0.0, 0.1], "b2")
    y = _leaf([0, 1], "y", requires_grad=False, dtype="int64")
    h = sigmoid(linear(x, W1, b1))
    loss = softmax_cross_entropy(linear(h, W2, b2), y)
    loss.name = "loss"
    return loss


EXAMPLES = {
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


# ---- CLI: `xpgrad graph` ----------------------------------------------------------------------


def add_graph_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add the `graph` subcommand to an argparse subparsers object; its handler is `run_graph`.

    Sets ``func=run_graph`` as the parser default, so ``args.func(args)`` dispatches it.
    """
    p = subparsers.add_parser(
        "graph", help="draw a computational graph with values and gradients (cs231n style)",
        description="Draw one of the notes' examples as a circuit diagram: forward values above each wire, "
                    "gradients below. Needs Graphviz (`apt-get install graphviz`) except for .dot/.gv output.",
    )
    p.add_argument("--example", choices=list(EXAMPLES), default="sigmoid-circuit",
                   help="which graph to draw (default: sigmoid-circuit)")
    p.add_argument("--out", default="graph.svg",
                   help="output file; the suffix picks the format (.svg, .png, .pdf, .dot); '-' prints DOT")
    p.add_argument("--no-grads", action="store_true", help="draw forward values only")
    p.add_argument("--collapse", choices=["auto", "yes", "no"], default=None,
                   help="fold MLP layers into one box (default: the example's own choice)")
    p.add_argument("--labels", choices=["symbols", "names"], default="symbols",
                   help="gate labels: cs231n symbols (*, +1, 1/x) or op names (mul, add)")
    p.set_defaults(func=run_graph)
    return p


def run_graph(args) -> int:
    """Handle `xpgrad graph`: draw `args.example` into `args.out`. Returns the exit status."""
    name = getattr(args, "example", "sigmoid-circuit")
    out_path = getattr(args, "out", "graph.svg")
    options = dict(EXAMPLES[name][1]) if name in EXAMPLES else {}
    collapse = getattr(args, "collapse", None)
    if collapse is not None:
        options["collapse"] = {"auto": None, "yes": True, "no": False}[collapse]
    options["show_grads"] = not getattr(args, "no_grads", False)
    options["labels"] = getattr(args, "labels", "symbols")
    source = to_dot(example(name), **options)
    if out_path == "-":
        sys.stdout.write(source)
        return 0
    written = render(source, out_path)  # errors reach the CLI, which prints one `xpgrad: error:` line
    print(f"wrote {os.fspath(written)}")
    return 0
