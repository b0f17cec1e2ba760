"""The tutorial notebooks in docs/notebooks/ run top to bottom in a real Jupyter kernel (nbclient + ipykernel);
their cells check their own results with asserts, and here the circuit shows inline as an SVG."""

import os
import pathlib
import shutil
import xml.etree.ElementTree as ET

import pytest

nbclient = pytest.importorskip("nbclient", reason="nbclient comes with the [test] extra")
nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the [test] extra")
pytest.importorskip("ipykernel", reason="ipykernel comes with the [test] extra")

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "docs" / "notebooks").glob("*.ipynb"))
REQUIRE_DOT = os.environ.get("XPGRAD_REQUIRE_GRAPHVIZ", "") not in ("", "0")
CELL_TIMEOUT_S = 120


def run_notebook(path, folder):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()  # raises CellExecutionError (with the failing cell and traceback) on any error
    return nb


def svg_texts(svg):
    root = ET.fromstring(svg)
    return ["".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")]


def outputs(nb, mime):
    return [
        out["data"][mime]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if mime in out.get("data", {})
    ]


def test_the_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["01_circuits.ipynb", "02_two_layer_net.ipynb", "03_digits_mlp.ipynb"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Each notebook run once for the whole module: {path: the executed notebook}."""
    done = {}

    def get(path):
        if path not in done:
            done[path] = run_notebook(path, tmp_path_factory.mktemp(path.stem))
        return done[path]

    return get


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_its_asserts_hold(path, executed):
    nb = executed(path)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells and all(c.execution_count for c in code_cells)  # every cell ran
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors
    if path.stem != "01_circuits":
        assert outputs(nb, "image/png"), "the curves were not drawn"


def test_circuits_notebook_shows_the_circuit_inline(executed):
    nb = executed(NOTEBOOKS[0])
    texts = outputs(nb, "text/plain")
    if shutil.which("dot") or REQUIRE_DOT:
        svgs = outputs(nb, "image/svg+xml")
        assert len(svgs) == 4  # (x+y)z before and after backward, the sigmoid circuit from gates and in one gate
        before, after, sigmoid = (svg_texts(svg) for svg in svgs[:3])
        # before backward: values only (z = -4, q = 3); after: x, y and q get -4, z gets 3
        assert (before.count("-12.00"), before.count("q = 3.00"), before.count("-4.00"), before.count("3.00")) == (
            1,
            1,
            1,
            0,
        )
        assert (after.count("-12.00"), after.count("q = 3.00"), after.count("-4.00"), after.count("3.00")) == (
            1,
            1,
            4,
            1,
        )
        assert {"0.73", "-0.20", "0.39", "-0.39", "-0.59", "0.20", "1/x", "exp"} <= set(sigmoid)
    else:
        assert any("Graphviz" in t and "w0 = 2.00  grad -0.20" in t for t in texts)
