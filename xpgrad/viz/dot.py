"""Writing a display graph as Graphviz DOT: HTML-like labels with the value over the gradient."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .style import CONST_COLOR, GRAD_COLOR, GROUP_FILL, VALUE_COLOR

if TYPE_CHECKING:
    from .graph import VizGraph, VizNode, VizWire


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wire_label(w: VizWire) -> str:
    top = _esc(w.value)
    if w.name:
        top = f"{_esc(w.name)} = {top}"
    bottom = f'<FONT COLOR="{GRAD_COLOR}">{_esc(w.grad)}</FONT>' if w.grad is not None else "&#160;"
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
    rows = f"<TR><TD><B>{_esc(n.label)}</B></TD></TR>"
    for text, color in n.details:
        rows += f'<TR><TD><FONT POINT-SIZE="9" COLOR="{color}">{_esc(text)}</FONT></TD></TR>'
    return (
        f'shape=box, style="rounded,filled", fillcolor="{GROUP_FILL}", margin="0.08,0.04", '
        f'label=<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{rows}</TABLE>>, '
        f"tooltip={_q(n.op)}"
    )


LEAVES_LEFT_UP_TO = 16  # leaves_left=None lines the inputs up on the left in graphs this small


def emit_dot(g: VizGraph, rankdir: str = "LR", legend: bool = True, leaves_left: bool | None = None) -> str:
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
        lines.append(
            f"  {w.id} [shape=plaintext, margin=0, width=0, height=0, label={_wire_label(w)}, tooltip={_q(tip)}];"
        )
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
