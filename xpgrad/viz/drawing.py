"""Drawing a tensor's graph: DOT source, image files, and one step of a training loop."""
from __future__ import annotations

import pathlib
import subprocess

from ..tensor import Tensor
from .graph import build_graph
from .graphviz import FORMATS, GraphvizError, find_dot
from .trace import compute_grads, retain_grads


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
    if fmt not in FORMATS:
        raise ValueError(f"render: unknown output format {fmt!r} (from {str(path)!r}); use one of "
                         f"{', '.join(FORMATS + ('dot', 'gv'))}")
    dot = find_dot()
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
