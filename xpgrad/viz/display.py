"""Showing a display graph in Jupyter: the SVG drawing, or a text listing where Graphviz is missing.

IPython asks an object for ``_repr_mimebundle_()`` (and ``_repr_svg_()``) when a cell's last
value is shown; `VizGraph` answers with `mimebundle`, which never raises: without the `dot`
program (or when it fails) the cell shows `text_listing` under a one-line install hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .graphviz import INSTALL_HINT, GraphvizError, GraphvizNotFoundError, run_dot

if TYPE_CHECKING:
    from .graph import VizGraph, VizNode, VizWire

SVG = "image/svg+xml"
TEXT = "text/plain"


def svg(graph: VizGraph) -> str:
    """The graph drawn by Graphviz as SVG text (raises GraphvizNotFoundError without `dot`)."""
    return run_dot(graph.to_dot(**graph.layout), "svg").decode("utf-8")


def fallback_hint(err: GraphvizError) -> str:
    """The one line shown above the text listing when the drawing could not be made."""
    if isinstance(err, GraphvizNotFoundError):
        return f"(Graphviz `dot` not found, so the graph is shown as text; {INSTALL_HINT})"
    return f"(the graph is shown as text: {err})"


def mimebundle(graph: VizGraph) -> dict[str, str]:
    """``{"image/svg+xml": ..., "text/plain": ...}``, or only the text with a hint when Graphviz cannot draw."""
    text = text_listing(graph)
    try:
        return {SVG: svg(graph), TEXT: text}
    except GraphvizError as err:
        return {TEXT: fallback_hint(err) + "\n" + text}


def text_listing(graph: VizGraph) -> str:
    """The graph as lines in forward order: ``name = gate(inputs) = value  grad g``.

    Leaves come as ``name = value``; a collapsed layer lists its parameters under it.
    """
    names = _wire_names(graph)
    lines = []
    for node in graph.nodes:
        if node.kind == "output":
            continue
        wire = _wire_leaving(graph, node.id)
        value = _value_text(wire) if wire is not None else ""
        name = names.get(node.id, node.label)
        if node.kind == "leaf":
            lines.append(f"{name} = {value}")
            continue
        inputs = [names.get(src, src) for src in _input_sources(graph, node)]
        gate = f"[{node.label}]" if node.kind == "group" else node.label
        lines.append(f"{name} = {gate}({', '.join(inputs)}) = {value}")
        lines.extend(f"    {text}" for text, _ in node.details)
    return "\n".join(lines)


def _wire_names(graph: VizGraph) -> dict[str, str]:
    """A distinct name for each source node's wire: the leaf's label, the tensor's name, the output's, else t0, t1, ...

    A name already taken (two unnamed leaves both labelled by their shape, say) gets ``_2``, ``_3``, ... after it.
    """
    output = next((n for n in graph.nodes if n.kind == "output"), None)
    by_id = {n.id: n for n in graph.nodes}
    names: dict[str, str] = {}
    taken: set[str] = set()
    unnamed = 0
    for wire in graph.wires:
        source = by_id[wire.src]
        if source.kind == "leaf":
            name = source.label
        elif wire.name:
            name = wire.name
        elif output is not None and output.id in wire.dsts:
            name = output.label
        else:
            name, unnamed = f"t{unnamed}", unnamed + 1
        base, k = name, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        names[wire.src] = name
    return names


def _wire_leaving(graph: VizGraph, node_id: str) -> VizWire | None:
    return next((w for w in graph.wires if w.src == node_id), None)


def _input_sources(graph: VizGraph, node: VizNode) -> list[str]:
    """The nodes feeding `node`, in the op's argument order where it is known (op nodes)."""
    if node.inputs:
        return node.inputs
    return [w.src for w in graph.wires if node.id in w.dsts]


def _value_text(wire: VizWire) -> str:
    return wire.value if wire.grad is None else f"{wire.value}  grad {wire.grad}"
