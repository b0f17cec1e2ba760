"""xg.viz: the cs231n circuit drawing (DOT labels, collapse, rendering, the missing-Graphviz error, CLI)."""

import argparse
import os
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import viz
from xpgrad.errors import GraphFreedError, XpgradError
from xpgrad.viz.trace import trace_graph

HAS_DOT = shutil.which("dot") is not None
# CI sets XPGRAD_REQUIRE_GRAPHVIZ=1 so a failed Graphviz install fails these tests instead of skipping them
REQUIRE_DOT = os.environ.get("XPGRAD_REQUIRE_GRAPHVIZ", "") not in ("", "0")
needs_dot = pytest.mark.skipif(
    not HAS_DOT and not REQUIRE_DOT, reason="Graphviz `dot` not installed (apt-get install graphviz)"
)

# ---- a small parser for the DOT that viz writes ------------------------------------------------------

_NODE = re.compile(r"^\s*(\w+) \[(.*)\];$")
_EDGE = re.compile(r"^\s*(\w+) -> (\w+) \[(.*)\];$")
_FONT = re.compile(r'<FONT COLOR="(#[0-9a-f]{6})">(.*?)</FONT>')
_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|<<.*>>|[^,\s]+)')


class Dot:
    """Nodes (id -> attributes) and edges (tail, head) of one DOT text written by viz."""

    def __init__(self, text: str):
        self.text = text
        self.nodes, self.edges = {}, []
        for line in text.splitlines():
            m = _EDGE.match(line)
            if m:
                self.edges.append((m.group(1), m.group(2)))
                continue
            m = _NODE.match(line)
            if m and m.group(1) not in ("graph", "node", "edge"):
                attrs = {k: v.strip('"') for k, v in _ATTR.findall(m.group(2))}
                self.nodes[m.group(1)] = attrs

    def ids(self, prefix):
        return [n for n in self.nodes if n.startswith(prefix)]

    def leaf(self, label):
        (found,) = [n for n in self.ids("leaf_") if self.nodes[n]["label"] == label]
        return found

    def wire_after(self, node_id):
        """The value/gradient pair on the wire leaving `node_id`, as the two label strings."""
        (wire,) = [h for t, h in self.edges if t == node_id and h.startswith("v_")]
        return self.wire(wire)

    def wire_into(self, node_id):
        (wire,) = [t for t, h in self.edges if h == node_id and t.startswith("v_")]
        return self.wire(wire)

    def wire(self, wire_id):
        fonts = _FONT.findall(self.nodes[wire_id]["label"])
        value = [text for color, text in fonts if color == viz.VALUE_COLOR]
        grad = [text for color, text in fonts if color == viz.GRAD_COLOR]
        return value[0], (grad[0] if grad else None)

    def gates_fed_by(self, node_id):
        """The nodes the wire leaving `node_id` leads into (one per use)."""
        (wire,) = [h for t, h in self.edges if t == node_id and h.startswith("v_")]
        return [h for t, h in self.edges if t == wire]

    def count(self, *prefixes):
        return sum(len(self.ids(p)) for p in prefixes)


def svg_texts(path):
    root = ET.parse(path).getroot()
    return ["".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")]


# ---- the notes' sigmoid circuit ------------------------------------------------------------------------

NOTES_LEAVES = {  # name: (forward value, gradient) as printed in cs231n "Backprop, intuitions"
    "w0": ("2.00", "-0.20"),
    "x0": ("-1.00", "0.39"),
    "w1": ("-3.00", "-0.39"),
    "x1": ("-2.00", "-0.59"),
    "w2": ("-3.00", "0.20"),
}


def test_sigmoid_circuit_dot_carries_the_notes_values_and_gradients():
    d = Dot(viz.to_dot(viz.example("sigmoid-circuit")))
    for name, expected in NOTES_LEAVES.items():
        assert d.wire_after(d.leaf(name)) == expected, name
    assert d.wire_into("output") == ("0.73", "1.00")
    assert d.nodes["output"]["label"] == "f"


def test_sigmoid_circuit_gates_and_interior_wires_follow_the_notes():
    d = Dot(viz.to_dot(viz.example("sigmoid-circuit")))
    ops = {n: d.nodes[n] for n in d.ids("op_")}
    assert sorted(a["tooltip"] for a in ops.values()) == ["add", "add", "add", "div", "exp", "mul", "mul", "neg"]
    by_label = {a["label"]: n for n, a in ops.items()}
    for label in ("*-1", "exp", "+1", "1/x"):
        assert label in by_label
    # the chain after the dot product: 1.00 -> *-1 -> -1.00 -> exp -> 0.37 -> +1 -> 1.37 -> 1/x -> 0.73
    assert d.wire_into(by_label["*-1"]) == ("1.00", "0.20")
    assert d.wire_after(by_label["*-1"]) == ("-1.00", "-0.20")
    assert d.wire_after(by_label["exp"]) == ("0.37", "-0.53")
    assert d.wire_after(by_label["+1"]) == ("1.37", "-0.53")
    assert d.wire_after(by_label["1/x"]) == ("0.73", "1.00")
    assert "rankdir=LR" in d.text


def test_sigmoid_circuit_gradients_agree_with_the_engine():
    f = viz.example("sigmoid-circuit")
    g = viz.build_graph(f)
    leaves = {n.label: n for n in g.nodes if n.kind == "leaf"}
    assert set(leaves) == set(NOTES_LEAVES)
    assert sum(n.kind == "op" for n in g.nodes) == 8
    s = 1 / (1 + np.exp(-(2 * -1 + -3 * -2 - 3)))
    local = s * (1 - s)
    assert f.item() == pytest.approx(s)
    expected = {"w0": -1 * local, "x0": 2 * local, "w1": -2 * local, "x1": -3 * local, "w2": local}
    for name, value in expected.items():
        assert float(g.wire_from(leaves[name].id).grad) == pytest.approx(value, abs=0.005)


@pytest.mark.parametrize(
    "name, price, grads",
    [
        ("apple", "220", {"apple": "2.20", "apple_num": "110", "tax": "200"}),
        (
            "apple-orange",
            "715",
            {"apple": "2.20", "apple_num": "110", "orange": "3.30", "orange_num": "165", "tax": "650"},
        ),
    ],
)
def test_apple_examples_match_deep_learning_from_scratch(name, price, grads):
    d = Dot(viz.to_dot(viz.example(name)))
    assert d.wire_into("output") == (price, "1.00")
    for leaf, grad in grads.items():
        assert d.wire_after(d.leaf(leaf))[1] == grad, leaf
    assert d.wire_after(d.leaf("apple"))[0] == "100"
    assert d.wire_after(d.leaf("tax"))[0] == "1.10"


def test_apple_subtotal_wire():
    d = Dot(viz.to_dot(viz.example("apple")))
    assert d.wire_after(d.gates_fed_by(d.leaf("apple"))[0]) == ("200", "1.10")


# ---- what is shown when ------------------------------------------------------------------------------


def test_values_only_before_backward_and_with_show_grads_false():
    x = xg.tensor(3.0, requires_grad=True, name="x")
    y = x * x
    d = Dot(viz.to_dot(y))
    assert d.wire_after(d.leaf("x")) == ("3.00", None)
    assert "gradient" not in d.text  # the legend mentions gradients only when some are drawn
    y.backward(retain_graph=True)
    assert Dot(viz.to_dot(y)).wire_after(d.leaf("x")) == ("3.00", "6.00")
    assert Dot(viz.to_dot(y, show_grads=False)).wire_after(d.leaf("x")) == ("3.00", None)


def test_fan_out_draws_one_wire_with_the_summed_gradient():
    x = xg.tensor(3.0, requires_grad=True, name="x")
    y = x * x
    viz.backward_and_draw(y)
    d = Dot(viz.to_dot(y))
    assert d.gates_fed_by(d.leaf("x")) == ["op_0", "op_0"]
    assert d.wire_after(d.leaf("x")) == ("3.00", "6.00")


def test_freed_graph_raises_a_clear_error():
    x = xg.tensor(2.0, requires_grad=True)
    y = (x * 3.0).exp()
    y.backward()
    with pytest.raises(GraphFreedError, match="retain_graph=True"):
        viz.to_dot(y)


def test_compute_grads_leaves_grad_fields_alone_and_the_graph_alive():
    x = xg.tensor([1.0, 2.0], requires_grad=True, name="x")
    h = (x * 3.0).sum()
    d = Dot(viz.to_dot(h, grads="compute"))
    assert d.wire_after(d.leaf("x")) == ("[1.00, 2.00]", "[3.00, 3.00]")
    assert x.grad is None and h.grad is None
    h.backward()  # the caller's own backward still works
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_backward_and_draw_keeps_every_gradient():
    a = xg.tensor(2.0, requires_grad=True, name="a")
    b = xg.tensor(-4.0, requires_grad=True, name="b")
    q = a + b
    q.name = "q"
    f = q * 3.0
    d = Dot(viz.backward_and_draw(f))
    assert a.grad.item() == 3.0 and q.grad.item() == 3.0
    assert d.wire_into("op_1") == ("q = -2.00", "3.00")  # a named interior tensor shows its name
    assert d.nodes["op_1"]["label"] == "*3"


def test_unnamed_leaves_are_labelled_by_shape_and_constants_fold_into_gates():
    x = xg.tensor(np.ones((2, 3)), requires_grad=True)
    y = (x * xg.tensor(0.5)).sum()
    d = Dot(viz.to_dot(y))
    assert [d.nodes[n]["label"] for n in d.ids("leaf_")] == ["2\u00d73"]
    assert d.nodes["op_0"]["label"] == "*0.5"


def test_labels_names_uses_op_names():
    d = Dot(viz.to_dot(viz.example("sigmoid-circuit"), labels="names"))
    labels = sorted(d.nodes[n]["label"] for n in d.ids("op_"))
    assert labels == ["add", "add", "add(1, x)", "div(1, x)", "exp", "mul", "mul", "neg"]


@pytest.mark.parametrize(
    "value, text",
    [
        (0.7310585786, "0.73"),
        (-0.19661193, "-0.20"),
        (0.39322, "0.39"),
        (2.0, "2.00"),
        (1.3678794, "1.37"),
        (220.00000000000003, "220"),
        (-0.0, "0.00"),
        (0.0123, "0.012"),
        (1e-5, "1.0e-05"),
        (0.999, "1.00"),
        (2.5e7, "2.5e+07"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
    ],
)
def test_scalar_formatting_follows_the_notes(value, text):
    assert viz.format_value(np.float64(value)) == text


def test_array_formatting():
    assert viz.format_value(np.array([0.1, -0.2])) == "[0.10, -0.20]"
    assert viz.format_value(np.array([1.0, 2.8e-18, -1.0])) == "[1.00, 0.00, -1.00]"  # rounding noise
    assert viz.format_value(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])) == "2\u00d73 mean 3.50 [1.00, 6.00]"
    assert viz.format_value(np.array([0, 1])) == "[0, 1]"
    assert viz.format_value(np.arange(10)) == "10 int64 [0, 9]"
    assert viz.format_value(xg.tensor([[0.5]])) == "0.50"


def test_to_dot_rejects_non_tensors():
    with pytest.raises(TypeError, match="Tensor"):
        viz.to_dot(np.ones(3))


# ---- collapsing MLP layers -----------------------------------------------------------------------------


def _mlp(sizes, use_linear=True, seed=0):
    rng = np.random.default_rng(seed)
    x = xg.tensor(rng.normal(size=(5, sizes[0])), name="x")
    h = x
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = xg.tensor(rng.normal(size=(n_in, n_out)) * 0.5, requires_grad=True, name=f"W{i}")
        b = xg.tensor(np.zeros(n_out), requires_grad=True, name=f"b{i}")
        h = xg.linear(h, W, b) if use_linear else h @ W + b
        if i < len(sizes) - 2:
            h = xg.relu(h)
    d = h - xg.tensor(np.zeros((5, sizes[-1])))
    return (d * d).mean()  # written out: collapse folds it into an "mse_loss" box


def test_fused_mse_loss_is_one_op_box():
    loss = xg.mse_loss(
        xg.linear(xg.tensor(np.ones((5, 4))), xg.tensor(np.ones((4, 3)), requires_grad=True)),
        xg.tensor(np.zeros((5, 3))),
    )
    loss.backward(retain_graph=True)
    ops = [n.op for n in viz.build_graph(loss, collapse=True).nodes if n.kind == "op"]
    assert ops == ["mse_loss"]


@pytest.mark.parametrize("use_linear", [True, False], ids=["linear", "matmul-add"])
def test_collapse_folds_each_layer_into_one_node(use_linear):
    loss = _mlp([4, 8, 8, 3], use_linear=use_linear)
    loss.backward(retain_graph=True)
    full = Dot(viz.to_dot(loss, collapse=False))
    small = Dot(viz.to_dot(loss, collapse=True))
    n_full = full.count("op_", "leaf_", "group_")
    n_small = small.count("op_", "leaf_", "group_")
    assert n_small < n_full
    groups = viz.build_graph(loss, collapse=True)
    titles = [n.label for n in groups.nodes if n.kind == "group"]
    assert titles == ["Linear 4\u21928 + relu", "Linear 8\u21928 + relu", "Linear 8\u21923", "mse_loss"]
    # x, the target and four boxes; the W/b leaves live inside the boxes with their gradient norms
    assert n_small == 6
    first = next(n for n in groups.nodes if n.kind == "group")
    assert first.details[0][0] == "W0 4\u00d78  b0 8"
    assert first.details[1][1] == viz.GRAD_COLOR and first.details[1][0].startswith("|\u2207W0| ")
    W0 = next(t for t in trace_graph(loss).tensors.values() if t.name == "W0")
    shown = float(first.details[1][0].split()[1])
    assert shown == pytest.approx(np.linalg.norm(W0.grad.numpy()), rel=0.01)


def test_collapse_is_automatic_for_large_graphs_only():
    assert not viz.build_graph(_mlp([3, 4, 2])).collapsed  # 10 nodes
    deep = _mlp([3] + [4] * 8 + [2])
    assert viz.build_graph(deep, show_grads=False).collapsed
    assert not viz.build_graph(deep, collapse=False).collapsed


def test_shared_weights_are_not_swallowed_by_a_layer():
    W = xg.tensor(np.eye(3), requires_grad=True, name="W")
    x = xg.tensor(np.ones((2, 3)), name="x")
    y = xg.linear(xg.linear(x, W), W).sum()
    d = Dot(viz.to_dot(y, collapse=True))
    assert len(d.gates_fed_by(d.leaf("W"))) == 2  # still its own leaf, wired into both layers


def test_two_layer_example_is_collapsed():
    loss = viz.example("two-layer")
    g = viz.build_graph(loss, **viz.EXAMPLES["two-layer"][1])
    assert [n.label for n in g.nodes if n.kind == "group"] == ["Linear 3\u21924 + sigmoid", "Linear 4\u21922"]
    assert g.wire_from("group_0").value.startswith("2\u00d74 mean")
    d = Dot(g.to_dot())
    value, grad = d.wire_into("output")
    assert grad == "1.00" and float(value) == pytest.approx(loss.item(), abs=0.005)


# ---- rendering -------------------------------------------------------------------------------------


@needs_dot
def test_render_svg_contains_the_notes_labels(tmp_path):
    path = viz.render(viz.example("sigmoid-circuit"), tmp_path / "circuit.svg")
    texts = svg_texts(path)
    for value, grad in NOTES_LEAVES.values():
        assert value in texts and grad in texts
    for label in ("0.73", "1.00", "w0", "x0", "w1", "x1", "w2", "*-1", "exp", "+1", "1/x", "f"):
        assert label in texts, label


@needs_dot
def test_render_png(tmp_path):
    path = viz.render(viz.example("apple"), tmp_path / "apple.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_dot
def test_render_reports_graphviz_failures(tmp_path):
    with pytest.raises(viz.GraphvizError, match="failed"):
        viz.render("digraph { a -> }", tmp_path / "bad.svg")


def test_render_dot_source_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    path = viz.render(viz.example("apple"), tmp_path / "apple.dot")
    assert path.read_text().startswith("digraph xpgrad {")


def test_render_without_graphviz_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot` anywhere
    with pytest.raises(viz.GraphvizNotFoundError) as info:
        viz.render(viz.example("apple"), tmp_path / "apple.svg")
    assert isinstance(info.value, XpgradError) and isinstance(info.value, RuntimeError)
    message = str(info.value)
    assert "apt-get install graphviz" in message and "to_dot" in message
    assert not (tmp_path / "apple.svg").exists()


def test_render_rejects_unknown_formats(tmp_path):
    with pytest.raises(ValueError, match="format"):
        viz.render(viz.example("apple"), tmp_path / "apple.docx")


def test_render_step_draws_without_touching_grads(tmp_path):
    loss = _mlp([3, 4, 2])
    path = viz.render_step(loss, tmp_path / "step.dot")
    text = path.read_text()
    assert "Linear 3\u21924 + relu" in text and viz.GRAD_COLOR in text
    assert Dot(text).wire_into("output")[1] == "1.00"
    params = [t for t in trace_graph(loss).tensors.values() if t.requires_grad and t.is_leaf]
    assert len(params) == 4 and all(p.grad is None for p in params)
    loss.backward()  # the training step's own backward still runs
    assert all(p.grad is not None for p in params)


@needs_dot
def test_render_step_svg(tmp_path):
    path = viz.render_step(_mlp([3, 4, 2]), tmp_path / "step.svg")
    assert "mse_loss" in svg_texts(path)


# ---- the CLI handler -------------------------------------------------------------------------------


def _cli(argv):
    parser = argparse.ArgumentParser(prog="xpgrad")
    sub = parser.add_subparsers(dest="command")
    viz.add_graph_subcommand(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@needs_dot
def test_cli_graph_writes_the_svg(tmp_path, capsys):
    out = tmp_path / "graph.svg"
    assert _cli(["graph", "--example", "sigmoid-circuit", "--out", str(out)]) == 0
    assert "0.73" in svg_texts(out) and "-0.59" in svg_texts(out)
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize("name", list(viz.EXAMPLES))
def test_cli_every_example_as_dot(tmp_path, name):
    out = tmp_path / "graph.dot"
    assert _cli(["graph", "--example", name, "--out", str(out)]) == 0
    assert Dot(out.read_text()).wire_into("output")[1] == "1.00"


def test_cli_prints_dot_to_stdout_and_reports_missing_graphviz(tmp_path, monkeypatch, capsys):
    assert _cli(["graph", "--example", "apple", "--out", "-", "--no-grads"]) == 0
    printed = capsys.readouterr().out
    assert Dot(printed).wire_into("output") == ("220", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    from xpgrad.cli import main

    assert main(["graph", "--out", str(tmp_path / "g.svg")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xpgrad: error: ") and "apt-get install graphviz" in err[0]


def test_example_rejects_unknown_names():
    with pytest.raises(ValueError, match="sigmoid-circuit"):
        viz.example("nope")


def test_render_step_with_an_nn_model_names_parameters_and_folds_dropout(tmp_path):
    nn = xg.nn
    xg.manual_seed(0)
    model = nn.MLP([3, 8, 2], activation="relu", dropout=0.5, dtype="float64")
    model.train()
    x = xg.tensor(np.random.default_rng(0).normal(size=(4, 3)), name="x")
    loss = xg.softmax_cross_entropy(model(x), xg.tensor([0, 1, 1, 0]))
    g = viz.build_graph(loss, collapse=True, grads="compute", names=model)
    groups = [n for n in g.nodes if n.kind == "group"]
    assert [n.label for n in groups] == ["Linear 3\u21928 + relu + dropout", "Linear 8\u21922"]
    assert groups[0].details[0][0] == "0.weight 3\u00d78  0.bias 8"
    assert "\u22070.weight" in groups[0].details[1][0]
    assert sum(n.kind == "leaf" for n in g.nodes) == 2  # x and the labels; the dropout mask is inside
    text = viz.render_step(loss, tmp_path / "step.dot", model=model).read_text()
    assert "0.weight" in text
    assert all(p.grad is None for p in model.parameters())


# ---- Jupyter display: xg.viz.draw ------------------------------------------------------------------------


def svg_string_texts(svg: str):
    root = ET.fromstring(svg)
    return ["".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")]


@needs_dot
def test_draw_shows_itself_as_svg_with_gradients():
    graph = viz.draw(viz.example("sigmoid-circuit"))
    assert isinstance(graph, viz.VizGraph)
    bundle = graph._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml", "text/plain"}
    texts = svg_string_texts(bundle["image/svg+xml"])
    for value, grad in NOTES_LEAVES.values():
        assert value in texts and grad in texts
    assert "0.73" in texts and "1/x" in texts
    assert graph._repr_svg_() == bundle["image/svg+xml"]


@needs_dot
def test_draw_without_gradients_shows_values_only():
    x = xg.tensor(-2.0, requires_grad=True, name="x")
    y = xg.tensor(5.0, requires_grad=True, name="y")
    z = xg.tensor(-4.0, requires_grad=True, name="z")
    f = (x + y) * z  # no backward yet: no gradient anywhere
    svg = viz.draw(f)._repr_mimebundle_()["image/svg+xml"]
    texts = svg_string_texts(svg)
    assert "-12.00" in texts and "3.00" in texts and "x" in texts
    assert viz.GRAD_COLOR not in svg and "gradient" not in svg
    f.backward(retain_graph=True)  # leaves now have .grad, shown in red; the graph stays drawable
    svg = viz.draw(f)._repr_mimebundle_()["image/svg+xml"]
    assert viz.GRAD_COLOR in svg and "-4.00" in svg_string_texts(svg)


@needs_dot
def test_draw_keeps_its_layout_for_display_and_render(tmp_path):
    graph = viz.draw(viz.example("apple"), rankdir="TB", legend=False)
    assert "rankdir=TB" in graph.to_dot(**graph.layout) and "labelloc" not in graph.to_dot(**graph.layout)
    path = viz.render(graph, tmp_path / "apple.dot")
    assert path.read_text() == graph.to_dot(**graph.layout)
    assert [p.name for p in tmp_path.iterdir()] == ["apple.dot"]  # atomic: no temporary file left behind
    assert viz.render(graph, tmp_path / "apple.svg").read_text() == graph.svg()


def test_draw_without_graphviz_shows_a_text_listing_with_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot` anywhere
    graph = viz.draw(viz.example("sigmoid-circuit"))
    bundle = graph._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    hint, *listing = bundle["text/plain"].splitlines()
    assert "Graphviz" in hint and "apt-get install graphviz" in hint
    assert listing == graph.to_text().splitlines()
    assert "w0 = 2.00  grad -0.20" in listing and listing[-1] == "f = 1/x(t6) = 0.73  grad 1.00"
    assert graph._repr_svg_() is None
    with pytest.raises(viz.GraphvizNotFoundError):
        graph.svg()


def test_draw_falls_back_to_text_when_graphviz_fails(tmp_path, monkeypatch):
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'dot: broken install' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    text = viz.draw(viz.example("apple"))._repr_mimebundle_()["text/plain"]
    assert text.splitlines()[0].startswith("(the graph is shown as text:") and "broken install" in text
    assert "price = *(t0, tax) = 220  grad 1.00" in text.splitlines()


def test_text_listing_keeps_argument_order_and_distinct_names():
    a, b = xg.tensor(3.0, requires_grad=True), xg.tensor(4.0, requires_grad=True)  # unnamed: both "scalar"
    doubled = a * 2.0
    out = doubled - b  # b's wire comes before doubled's in forward order; the listing keeps (doubled, b)
    listing = viz.draw(out).to_text().splitlines()
    assert listing == ["scalar = 3.00", "t0 = *2(scalar) = 6.00", "scalar_2 = 4.00", "out = -(t0, scalar_2) = 2.00"]


def test_ipython_displays_the_graph():
    formatters = pytest.importorskip("IPython.core.formatters", reason="IPython comes with the [test] extra")
    data, _ = formatters.DisplayFormatter().format(viz.draw(viz.example("apple")))
    if shutil.which("dot") or REQUIRE_DOT:
        assert data["image/svg+xml"].lstrip().startswith("<?xml")
    assert "apple = 100" in data["text/plain"]
