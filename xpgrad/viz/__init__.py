"""Draw the computational graph the way the cs231n notes do: gates, with the forward value above
every wire and the gradient below it.

    import xpgrad as xg
    f = xg.viz.example("sigmoid-circuit")      # built, backpropagated, every gradient kept
    print(xg.viz.to_dot(f))                    # Graphviz DOT source (needs nothing installed)
    xg.viz.render(f, "circuit.svg")            # runs Graphviz `dot` (.svg, .png, .pdf; .dot/.gv need no Graphviz)
    xg.viz.draw(f)                             # in Jupyter: shows the drawing inline (a text listing without Graphviz)

What is drawn:

* one node per op (a circle with the gate's symbol, e.g. ``*``, ``+``, ``exp``, ``1/x``; the op
  name is always the node's tooltip, and ``labels="names"`` puts it in the circle instead);
  Python scalars an op was given fold into the gate (``x * -1`` is the gate ``*-1``);
* one node per leaf: its ``name`` (``xg.tensor(2.0, name="w0")``), else its shape;
* one wire per tensor: the forward value above the line (green) and, when known, the gradient
  of the output with respect to that tensor below it (red). Scalars show 2-3 significant
  digits as in the notes (0.73, -0.20, 2.00, 220); arrays show their shape and a summary
  (mean, [min, max]), or their values when they hold at most 4. A tensor used twice gets one
  wire that forks after its label, so the gradient shown is the summed one.
* ``collapse=True`` (automatic above `COLLAPSE_ABOVE` nodes) folds each MLP layer (a
  ``linear`` op, or ``x @ W + b``, with its own W/b leaves and a following activation) into
  one labelled box ("Linear 3->4 + sigmoid", with the parameters' shapes and gradient norms),
  and ``mean((a - b) * (a - b))`` into one "mse_loss" box.

Where the gradients come from:

``.grad`` is kept on leaves, and on interior tensors only after ``t.retain_grad()``; a backward
without ``retain_graph=True`` also frees the graph (the drawing then raises GraphFreedError).
So draw in one of these ways:

* ``xg.viz.backward_and_draw(out)``: marks every interior tensor with retain_grad, runs
  ``out.backward(retain_graph=True)`` and returns the DOT (``path=`` renders it as well);
* ``to_dot(out, grads="compute")``: computes every gradient afresh with ``xg.grad`` on the
  retained graph, touching no ``.grad`` field (what `render_step` does in a training loop);
* ``to_dot(out)`` after your own ``retain_grads(out); out.backward(retain_graph=True)``;
* ``to_dot(out, show_grads=False)`` (or before any backward): forward values only.

Where each part lives:

`trace` walks the recorded graph, `graph` turns it into the display model (`VizGraph`),
`dot` writes that model as DOT, `graphviz` runs the `dot` program, `display` shows the model
in Jupyter, `drawing` holds the entry points that take a tensor, `examples` the notes'
circuits and `command` the ``xpgrad graph`` subcommand.
"""

from .command import add_graph_subcommand, run_graph
from .dot import LEAVES_LEFT_UP_TO
from .drawing import backward_and_draw, draw, render, render_step, to_dot
from .examples import EXAMPLES, example
from .graph import ACTIVATIONS, COLLAPSE_ABOVE, VizGraph, VizNode, VizWire, build_graph
from .graphviz import INSTALL_HINT, GraphvizError, GraphvizNotFoundError
from .style import CONST_COLOR, GRAD_COLOR, GROUP_FILL, VALUE_COLOR, format_value
from .trace import compute_grads, retain_grads

__all__ = [
    "ACTIVATIONS",
    "COLLAPSE_ABOVE",
    "CONST_COLOR",
    "EXAMPLES",
    "GRAD_COLOR",
    "GROUP_FILL",
    "INSTALL_HINT",
    "LEAVES_LEFT_UP_TO",
    "VALUE_COLOR",
    "GraphvizError",
    "GraphvizNotFoundError",
    "VizGraph",
    "VizNode",
    "VizWire",
    "add_graph_subcommand",
    "backward_and_draw",
    "build_graph",
    "compute_grads",
    "draw",
    "example",
    "format_value",
    "render",
    "render_step",
    "retain_grads",
    "run_graph",
    "to_dot",
]
