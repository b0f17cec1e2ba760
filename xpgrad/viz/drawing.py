"""Drawing a tensor's graph: DOT source, image files, and one step of a training loop."""

from __future__ import annotations

import os
import pathlib
from typing import Any

from ..files import atomic_write
from ..tensor import Tensor
from .graph import VizGraph, build_graph
from .graphviz import FORMATS, run_dot
from .trace import compute_grads, retain_grads


def to_dot(
    output: Tensor,
    show_grads: bool = True,
    collapse: bool | None = None,
    grads: str | dict[int, Any] | None = None,
    labels: str = "symbols",
    names: object = None,
    rankdir: str = "LR",
    legend: bool = True,
    leaves_left: bool | None = None,
) -> str:
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


def render(
    output: Tensor | VizGraph | str,
    path: str | os.PathLike[str],
    format: str | None = None,  # noqa: A002
    **to_dot_kwargs: Any,
) -> pathlib.Path:
    """Draw `output`'s graph (a Tensor, a `VizGraph`, or DOT source as a str) into the file `path` with Graphviz.

    The format comes from the suffix (.svg, .png, .pdf, ...) unless `format` is given; .dot/.gv
    write the DOT source and need no Graphviz. Other keyword arguments go to `to_dot`.
    The file is written atomically. Raises GraphvizNotFoundError (with the install command) when
    `dot` is missing and GraphvizError when it fails. Returns the path written.
    """
    path = pathlib.Path(path)
    fmt = (format or path.suffix.lstrip(".") or "svg").lower()
    if isinstance(output, Tensor):
        source = to_dot(output, **to_dot_kwargs)
    elif to_dot_kwargs:
        raise TypeError(f"render: options {sorted(to_dot_kwargs)} apply to a Tensor, not to a {type(output).__name__}")
    elif isinstance(output, VizGraph):
        source = output.to_dot(**output.layout)
    elif isinstance(output, str):
        source = output
    else:
        raise TypeError(f"render: expected a Tensor, a VizGraph or DOT source (str), got {type(output).__name__}")
    if fmt in ("dot", "gv"):
        return atomic_write(path, lambda f: f.write(source), mode="w")
    if fmt not in FORMATS:
        raise ValueError(
            f"render: unknown output format {fmt!r} (from {str(path)!r}); use one of "
            f"{', '.join(FORMATS + ('dot', 'gv'))}"
        )
    image = run_dot(source, fmt)
    return atomic_write(path, lambda f: f.write(image))


def draw(
    output: Tensor,
    show_grads: bool = True,
    collapse: bool | None = None,
    grads: str | dict[int, Any] | None = None,
    labels: str = "symbols",
    names: object = None,
    rankdir: str = "LR",
    legend: bool = True,
    leaves_left: bool | None = None,
) -> VizGraph:
    """The graph of `output` as a `VizGraph`, which Jupyter shows inline as the drawing.

    The options are `to_dot`'s. As the last value of a notebook cell it displays as SVG (or, without
    Graphviz, as a text listing with a one-line install hint, never an error); ``.svg()``,
    ``.to_dot()`` and ``.to_text()`` give the same drawing as text, and ``render(graph, path)``
    saves it. Gradients show where they are known: after `backward_and_draw`, after
    ``retain_grads(out); out.backward(retain_graph=True)``, or with ``grads="compute"``.
    """
    graph = build_graph(output, show_grads=show_grads, collapse=collapse, grads=grads, labels=labels, names=names)
    graph.layout = {"rankdir": rankdir, "legend": legend, "leaves_left": leaves_left}
    return graph


def backward_and_draw(
    output: Tensor, path: str | os.PathLike[str] | None = None, grad: Tensor | None = None, **to_dot_kwargs: Any
) -> str:
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


def render_step(
    loss: Tensor, path: str | os.PathLike[str], model: object = None, collapse: bool = True, show_grads: bool = True
) -> pathlib.Path:
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
