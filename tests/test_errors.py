"""Every error a user can meet in the core, each with its exception type and a message that
names the op (or setting) and the offending values. The table of these errors is
docs/errors.md; a test below keeps the table and the exception classes in step.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import backend as xg_backend

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


def t(*shape, dtype="float32", requires_grad=False):
    n = int(np.prod(shape)) if shape else 1
    return xg.tensor(np.arange(n, dtype=np.float64).reshape(shape) - 1.5, dtype=dtype, requires_grad=requires_grad)


def ints(*values):
    return xg.tensor(np.asarray(values, dtype=np.int64))


def raises(exc_type, fn, *fragments):
    """Call fn, require exc_type, and require every fragment (op name, values) in the message."""
    with pytest.raises(exc_type) as info:
        fn()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    assert isinstance(info.value, xg.XpgradError) or exc_type in (RuntimeError, ValueError, TypeError), message
    return message


# ---- wrong shapes, op by op ---------------------------------------------------------------------

SHAPE_ERRORS = {
    # name: (call, fragments the message must contain)
    "add": (lambda: t(2, 3) + t(4, 5), ["add:", "(2, 3)", "(4, 5)", "cannot be broadcast"]),
    "sub": (lambda: t(2, 3) - t(2), ["sub:", "(2, 3)", "(2,)", "cannot be broadcast"]),
    "mul": (lambda: t(3) * t(4), ["mul:", "(3,)", "(4,)"]),
    "div": (lambda: t(2, 3) / t(3, 2), ["div:", "(2, 3)", "(3, 2)"]),
    "pow": (lambda: t(2, 3) ** t(2, 2), ["pow:", "(2, 3)", "(2, 2)"]),
    "maximum": (lambda: xg.maximum(t(2), t(3)), ["maximum:", "(2,)", "(3,)"]),
    "minimum": (lambda: xg.minimum(t(2), t(3)), ["minimum:", "(2,)", "(3,)"]),
    "where": (lambda: xg.where(t(2, 3) > 0, t(2, 3), t(4, 5)), ["where:", "(2, 3)", "(4, 5)"]),
    "matmul_inner": (lambda: t(2, 3) @ t(4, 5), ["matmul:", "(2, 3) @ (4, 5)", "3 != 4"]),
    "matmul_vector": (lambda: t(3) @ t(4), ["matmul:", "(3,) @ (4,)", "3 != 4"]),
    "matmul_0d": (lambda: t() @ t(2), ["matmul:", "at least 1-D", "()", "(2,)"]),
    "matmul_batch": (lambda: t(2, 2, 3) @ t(3, 3, 2), ["matmul:", "batch dimensions (2,) and (3,)"]),
    "linear_x": (lambda: xg.linear(t(2, 3), t(4, 5)), ["linear:", "x has shape (2, 3)", "4 input features"]),
    "linear_W": (lambda: xg.linear(t(2, 3), t(3)), ["linear:", "W must be 2-D", "(3,)"]),
    "linear_b": (lambda: xg.linear(t(2, 3), t(3, 4), t(5)), ["linear:", "b must have shape (4,)", "(5,)"]),
    "reshape": (lambda: t(2, 3).reshape(4, 2), ["reshape:", "(2, 3)", "6 elements", "(4, 2)"]),
    "reshape_two_unknowns": (lambda: t(2, 3).reshape(-1, -1), ["reshape:", "(-1, -1)"]),
    "broadcast_to": (lambda: xg.broadcast_to(t(2, 3), (4, 3)), ["broadcast_to:", "(2, 3)", "(4, 3)"]),
    "concat_dims": (lambda: xg.concat([t(2, 3), t(4, 5)]), ["concat:", "(2, 3)", "(4, 5)", "axis 0"]),
    "concat_ndim": (lambda: xg.concat([t(2, 3), t(3)]), ["concat:", "same number of dimensions", "(3,)"]),
    "concat_axis": (lambda: xg.concat([t(2, 3), t(2, 3)], axis=2), ["concat:", "axis 2", "2-d"]),
    "concat_empty": (lambda: xg.concat([]), ["concat:", "at least one tensor"]),
    "stack_shapes": (lambda: xg.stack([t(2, 3), t(3, 2)]), ["stack:", "(2, 3)", "(3, 2)"]),
    "stack_axis": (lambda: xg.stack([t(2), t(2)], axis=3), ["stack:", "axis 3"]),
    "stack_empty": (lambda: xg.stack([]), ["stack:", "at least one tensor"]),
    "transpose_repeat": (lambda: t(2, 3).transpose(0, 0), ["transpose:", "(0, 0)", "(2, 3)"]),
    "transpose_count": (lambda: t(2, 3).transpose(0, 1, 2), ["transpose:", "(0, 1, 2)", "(2, 3)"]),
    "mT_1d": (lambda: t(3).mT, ["mT:", "(3,)"]),
    "sum_axis": (lambda: t(2, 3).sum(axis=2), ["sum:", "axis 2", "2 dimensions"]),
    "mean_axis": (lambda: xg.mean(t(2, 3), axis=-3), ["mean:", "axis -3", "2 dimensions"]),
    "max_axis": (lambda: t(2, 3).max(axis=(0, 5)), ["max:", "(0, 5)", "2 dimensions"]),
    "min_axis_repeat": (lambda: xg.min(t(2, 3), axis=(1, -1)), ["min:", "(1, -1)", "repeats"]),
    "max_empty": (lambda: xg.tensor(np.zeros((0, 3))).max(axis=0), ["max:", "empty axis", "(0, 3)"]),
    "softmax_axis": (lambda: xg.softmax(t(2, 3), axis=2), ["softmax:", "axis 2"]),
    "log_softmax_axis": (lambda: xg.log_softmax(t(2, 3), axis=-3), ["log_softmax:", "axis -3"]),
    "maxout_multiple": (lambda: xg.maxout(t(2, 3), 2), ["maxout:", "(3)", "pieces=2"]),
    "maxout_zero": (lambda: xg.maxout(t(2, 4), 0), ["maxout:", "pieces=0"]),
    "maxout_0d": (lambda: xg.maxout(t(), 2), ["maxout:", "pieces=2"]),
    "getitem_int": (lambda: t(2, 3)[5], ["getitem:", "(2, 3)", "index 5", "size 2"]),
    "getitem_array": (lambda: t(2, 3)[ints(0, 7)], ["getitem:", "index 7", "size 2"]),
    "sce_labels_shape": (
        lambda: xg.softmax_cross_entropy(t(2, 3), ints(0, 1, 2)),
        ["softmax_cross_entropy:", "labels must have shape (2,)", "(3,)"],
    ),
    "sce_labels_2d": (
        lambda: xg.softmax_cross_entropy(t(2, 3), xg.tensor(np.zeros((2, 1), dtype=np.int64))),
        ["softmax_cross_entropy:", "(2, 1)"],
    ),
    "sce_scores_1d": (
        lambda: xg.softmax_cross_entropy(t(3), ints(0)),
        ["softmax_cross_entropy:", "scores must be 2-D", "(3,)"],
    ),
    "sce_empty_batch": (
        lambda: xg.softmax_cross_entropy(xg.tensor(np.zeros((0, 3))), ints()),
        ["softmax_cross_entropy:", "empty"],
    ),
    "hinge_labels_shape": (
        lambda: xg.hinge_loss(t(4, 3), ints(0, 1)),
        ["hinge_loss:", "labels must have shape (4,)", "(2,)"],
    ),
    "mse_shapes": (lambda: xg.mse_loss(t(2, 3), t(3, 2)), ["mse_loss:", "(2, 3)", "(3, 2)"]),
    "backward_grad_shape": (
        lambda: (t(3, requires_grad=True) * 2).backward(t(2)),
        ["backward:", "grad has shape (2,)", "(3,)"],
    ),
}


@pytest.mark.parametrize("name", sorted(SHAPE_ERRORS))
def test_wrong_shapes(name):
    fn, fragments = SHAPE_ERRORS[name]
    raises(xg.ShapeError, fn, *fragments)


def test_shape_error_is_also_a_value_error():
    """Code written against NumPy (except ValueError) still catches xpgrad's shape errors."""
    with pytest.raises(ValueError):
        t(2, 3) + t(4, 5)


# ---- dtypes ------------------------------------------------------------------------------------

DTYPE_ERRORS = {
    "tensor_int_requires_grad": (
        lambda: xg.tensor([1, 2], requires_grad=True),
        ["requires_grad:", "dtype int64", "floating-point"],
    ),
    "requires_grad_on_int": (lambda: ints(1, 2).requires_grad_(), ["requires_grad:", "int64"]),
    "zeros_int_requires_grad": (lambda: xg.zeros(2, dtype="int32", requires_grad=True), ["requires_grad:", "int32"]),
    "bool_requires_grad": (lambda: xg.tensor(np.array([True]), requires_grad=True), ["requires_grad:", "bool"]),
    "sigmoid_int": (lambda: xg.sigmoid(ints(1, 2)), ["sigmoid:", "int64"]),
    "tanh_int": (lambda: xg.tanh(ints(1, 2)), ["tanh:", "int64"]),
    "relu_int": (lambda: xg.relu(ints(1, 2)), ["relu:", "int64"]),
    "softmax_int": (lambda: xg.softmax(ints(1, 2)), ["softmax:", "int64"]),
    "sce_float_labels": (
        lambda: xg.softmax_cross_entropy(t(2, 3), t(2)),
        ["softmax_cross_entropy:", "labels must be integer", "float32"],
    ),
    "hinge_int_scores": (
        lambda: xg.hinge_loss(xg.tensor(np.ones((2, 3), dtype=np.int64)), ints(0, 1)),
        ["hinge_loss:", "scores must be floating point", "int64"],
    ),
    "sce_labels_not_array": (
        lambda: xg.softmax_cross_entropy(t(2, 3), "cat"),
        ["softmax_cross_entropy:", "integer array", "'cat'"],
    ),
    "sce_float_label_list": (
        lambda: xg.softmax_cross_entropy(t(2, 3), [0.5, 1.0]),
        ["softmax_cross_entropy:", "integer class indices", "float64"],
    ),
}


@pytest.mark.parametrize("name", sorted(DTYPE_ERRORS))
def test_dtype_errors(name):
    fn, fragments = DTYPE_ERRORS[name]
    raises(xg.DTypeError, fn, *fragments)


def test_mixed_kinds_on_array_api_strict_name_the_op_and_dtypes():
    with xg.use_backend("array_api_strict"):
        a = ints(1, 2)
        b = t(2)
        raises(xg.DTypeError, lambda: a + b, "add:", "int64", "float32", ".astype")
        raises(xg.DTypeError, lambda: xg.exp(a), "exp:", "int64")


def test_unknown_dtype_name():
    raises(TypeError, lambda: xg.tensor([1.0], dtype="float128x"), "dtype:", "float128x")


# ---- mixed devices / libraries -------------------------------------------------------------------


@pytest.fixture
def strict_pair():
    with xg.use_backend("array_api_strict"):
        s = xg.tensor(np.ones((2, 3)), dtype="float32", requires_grad=True)
        labels = ints(0, 1)
    return t(2, 3, requires_grad=True), s, labels


MIXED = {
    "add": lambda a, s, lab: a + s,
    "mul": lambda a, s, lab: s * a,
    "matmul": lambda a, s, lab: a @ s.T,
    "maximum": lambda a, s, lab: xg.maximum(a, s),
    "where": lambda a, s, lab: xg.where(s > 0, a, a),
    "concat": lambda a, s, lab: xg.concat([a, s]),
    "stack": lambda a, s, lab: xg.stack([a, s]),
    "linear": lambda a, s, lab: xg.linear(a, s.T),
    "softmax_cross_entropy": lambda a, s, lab: xg.softmax_cross_entropy(a, lab),
    "hinge_loss": lambda a, s, lab: xg.hinge_loss(a, lab),
    "mse_loss": lambda a, s, lab: xg.mse_loss(a, s),
    "gt": lambda a, s, lab: a > s,
    "backward": lambda a, s, lab: (a * 2).backward(s),
}


@pytest.mark.parametrize("op", sorted(MIXED))
def test_mixed_devices_name_the_op_and_both_places(op, strict_pair):
    a, s, labels = strict_pair
    message = raises(
        xg.DeviceMismatchError, lambda: MIXED[op](a, s, labels), f"{op}:", "numpy:cpu", "array_api_strict:", ".to("
    )
    assert message.startswith(f"{op}:"), message


def test_unknown_fused_activation():
    raises(ValueError, lambda: xg.linear(t(2, 3), t(3, 4), activation="tanh"), "linear:", "'tanh'", "relu", "sigmoid")


def test_unknown_device_string():
    raises(ValueError, lambda: t(2).to("tpu"), "'tpu'", "'cpu', 'cuda' or 'cuda:N'")


# ---- backends ------------------------------------------------------------------------------------


@pytest.fixture
def restore_backend():
    previous = xg_backend._current
    yield
    xg_backend._current = previous


@pytest.mark.parametrize("value", ["nope", "tensorflow_not_here", "numpy-2"])
def test_unknown_backend_names_the_value_and_the_choices(value, restore_backend):
    before = xg.get_backend()
    message = raises(
        xg.UnknownBackendError, lambda: xg.set_backend(value), repr(value), "numpy, cupy, auto", "array_api_strict"
    )
    assert message.count(value) >= 1
    assert xg.get_backend() is before, "a failed set_backend changed the backend"


def test_backend_that_is_not_an_array_namespace(restore_backend):
    raises(
        xg.UnknownBackendError,
        lambda: xg.set_backend("json"),
        "'json'",
        "not an array-API namespace",
        "numpy, cupy, auto",
    )


def test_unknown_backend_from_the_environment(monkeypatch, restore_backend):
    monkeypatch.setenv("XPGRAD_BACKEND", "nope")
    raises(xg.UnknownBackendError, lambda: xg.set_backend(None), "'nope'", "numpy, cupy, auto")


_cupy_importable = True
try:  # noqa: SIM105
    import cupy  # noqa: F401
except ImportError:
    _cupy_importable = False


@pytest.mark.skipif(_cupy_importable, reason="CuPy is installed here: the not-installed error cannot occur")
@pytest.mark.parametrize("call", ["set_backend", "use_backend", "tensor_device", "to"])
def test_cupy_not_installed_says_how_to_install(call, restore_backend):
    fns = {
        "set_backend": lambda: xg.set_backend("cupy"),
        "use_backend": lambda: xg.use_backend("cupy").__enter__(),
        "tensor_device": lambda: xg.tensor([1.0], device="cuda"),
        "to": lambda: t(2).to("cuda:0"),
    }
    raises(xg.CupyNotInstalledError, fns[call], "CuPy is not installed", 'pip install "xpgrad[cuda13]"')


def test_cupy_without_gpu_says_which_and_how_to_install(monkeypatch, restore_backend):
    """CuPy importable but no usable device: NoGPUError, not a crash deep inside CuPy."""
    fake = types.ModuleType("cupy")
    fake.is_available = lambda: False
    monkeypatch.setitem(sys.modules, "cupy", fake)
    message = raises(
        xg.NoGPUError, lambda: xg.set_backend("cupy"), "'cupy'", "no usable CUDA GPU", 'pip install "xpgrad[cuda13]"'
    )
    assert "not installed" not in message
    assert xg.set_backend("auto").name == "numpy"  # auto falls back instead of raising


def test_backend_errors_from_the_environment_at_startup():
    """XPGRAD_BACKEND and XPGRAD_DEBUG read by a fresh process (the way users set them)."""
    script = textwrap.dedent("""
        import xpgrad as xg
        try:
            xg.tensor([1.0])
            print("NO ERROR")
        except xg.UnknownBackendError as e:
            print("BACKEND", type(e).__name__, e)
        with xg.use_backend("numpy"):
            x = xg.tensor([-1.0])
            try:
                xg.log(x)
                print("NO ERROR")
            except xg.NonFiniteError as e:
                print("DEBUG", type(e).__name__, e)
    """)
    env = dict(os.environ, XPGRAD_BACKEND="nope", XPGRAD_DEBUG="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("BACKEND UnknownBackendError unknown backend 'nope'"), proc.stdout
    assert "numpy, cupy, auto" in lines[0]
    assert lines[1].startswith("DEBUG NonFiniteError XPGRAD_DEBUG: log forward output contains NaN"), proc.stdout
    log_line = script.splitlines().index("        xg.log(x)") + 1
    assert f"<string>:{log_line}" in lines[1], lines[1]  # the user's file:line where log was called


# ---- labels --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_name", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "hinge_loss"])
@pytest.mark.parametrize("labels,low,high", [((0, 3), 0, 3), ((-1, 2), -1, 2), ((7, -2), -2, 7)])
def test_labels_out_of_range(loss, labels, low, high, backend_name):
    with xg.use_backend(backend_name):
        scores = t(2, 3, requires_grad=True)
        y = ints(*labels)
        message = raises(
            xg.LabelError,
            lambda: getattr(xg, loss)(scores, y),
            f"{loss}:",
            "[0, 3)",
            "3 classes",
            f"min {low}",
            f"max {high}",
        )
    assert "array_api_strict" not in message


def test_label_error_message_is_the_same_on_every_backend():
    """NumPy with the kernels checks in the forward kernel, without them (and array_api_strict) before."""
    from xpgrad.fns import use_kernels

    messages = set()
    for be, kernels, dtype in [
        ("numpy", True, "float32"),
        ("numpy", True, "float64"),
        ("numpy", False, "float32"),
        ("array_api_strict", True, "float32"),
    ]:
        with xg.use_backend(be), use_kernels(kernels):
            with pytest.raises(xg.LabelError) as info:
                xg.softmax_cross_entropy(t(2, 3, dtype=dtype), ints(0, 9))
            messages.add(str(info.value))
    assert len(messages) == 1, messages


# ---- NaN / Inf in debug mode -----------------------------------------------------------------------


@pytest.fixture
def debug_mode():
    xg.set_debug(True)
    try:
        yield
    finally:
        xg.set_debug(False)


def test_debug_nan_in_forward_names_op_and_call_site(debug_mode):
    x = xg.tensor([1.0, -1.0], requires_grad=True)
    line = sys._getframe().f_lineno + 2
    with pytest.raises(xg.NonFiniteError) as info:
        xg.log(x)
    message = str(info.value)
    assert "log forward output contains NaN or Inf" in message
    assert f"{HERE}:{line}" in message, message


def test_debug_inf_in_forward_without_grad(debug_mode):
    x = xg.tensor([0.0])
    line = sys._getframe().f_lineno + 2
    with pytest.raises(xg.NonFiniteError) as info:
        _ = 1.0 / x
    assert "div forward output" in str(info.value) and f"{HERE}:{line}" in str(info.value)


def test_debug_inf_in_backward_names_the_op_that_made_it(debug_mode):
    x = xg.tensor([0.0, 4.0], requires_grad=True)
    line = sys._getframe().f_lineno + 1
    y = xg.sqrt(x).sum()  # forward is finite (0 and 2); d sqrt / dx at 0 is inf
    with pytest.raises(xg.NonFiniteError) as info:
        y.backward()
    message = str(info.value)
    assert "sqrt backward" in message and f"{HERE}:{line}" in message, message


def test_debug_nan_gradient_seed(debug_mode):
    x = xg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    with pytest.raises(xg.NonFiniteError, match="mul backward"):
        y.backward(xg.tensor([float("nan"), 1.0]))


def test_debug_off_lets_nan_through():
    x = xg.tensor([-1.0])
    assert np.isnan(xg.log(x).item())


# ---- the tape ----------------------------------------------------------------------------------------


def test_backward_twice_raises_graph_freed():
    x = t(3, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    raises(xg.GraphFreedError, y.backward, "backward:", "'sum'", "already freed", "retain_graph=True")


def test_grad_twice_raises_graph_freed():
    x = t(3, requires_grad=True)
    y = xg.exp(x).sum()
    xg.grad(y, [x])
    raises(xg.GraphFreedError, lambda: xg.grad(y, [x]), "'sum'", "retain_graph=True")


def test_retain_graph_allows_a_second_backward():
    x = t(3, requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.numpy())


def test_backward_on_non_scalar_without_grad():
    x = t(2, 3, requires_grad=True)
    raises(xg.ShapeError, lambda: (x * 2).backward(), "backward:", "(2, 3)", "grad=")


def test_backward_on_a_tensor_without_graph():
    raises(RuntimeError, lambda: t(3).sum().backward(), "backward:", "does not require grad")
    with xg.no_grad():
        y = (t(3, requires_grad=True) * 2).sum()
    raises(RuntimeError, y.backward, "backward:", "no_grad()")


def test_grad_of_an_input_that_does_not_require_grad():
    x, c = t(3, requires_grad=True), t(3)
    raises(ValueError, lambda: xg.grad((x * c).sum(), [x, c]), "grad:", "inputs[1]", "requires_grad=True")


def test_item_of_a_non_scalar():
    raises(ValueError, lambda: t(2, 3).item(), "item:", "(2, 3)")


def test_requires_grad_off_on_a_non_leaf():
    y = t(2, requires_grad=True) * 2
    raises(ValueError, lambda: y.requires_grad_(False), "requires_grad_:", "non-leaf", ".detach()")


def test_gradcheck_names_the_worst_element():
    from xpgrad.ops import arith
    from xpgrad.testing import GradcheckError, gradcheck

    x = xg.tensor(np.array([0.5, 1.0, 2.0]), dtype="float64", requires_grad=True)
    original = arith.Exp.backward
    try:
        arith.Exp.backward = lambda self, F, gy, args, y: (gy * y * 1.5,)
        with pytest.raises(GradcheckError, match=r"input 0 \(shape \(3,\)\) gradient wrong at index \(\d,\)"):
            gradcheck(lambda a: xg.exp(a), [x])
    finally:
        arith.Exp.backward = original


# ---- docs/errors.md is complete -------------------------------------------------------------------


def test_every_exception_class_has_a_row_in_docs_errors_md():
    from xpgrad import checkpoint, data, errors

    table = (ROOT / "docs" / "errors.md").read_text()
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    classes += [
        checkpoint.CheckpointError,
        checkpoint.CheckpointNotFoundError,
        data.DatasetNotFoundError,
        data.DatasetFormatError,
        data.UnknownDatasetError,
    ]
    missing = [c.__name__ for c in classes if not re.search(rf"`(xg\.|[\w.]*\.)?{c.__name__}`", table)]
    assert not missing, f"docs/errors.md has no row for {missing}"


def test_labels_given_as_a_python_list_are_integer_labels():
    """Regression: a list of ints used to become float32 (the scores' dtype) and be rejected."""
    scores = t(2, 3, requires_grad=True)
    loss = xg.softmax_cross_entropy(scores, [0, 2])
    ref = xg.softmax_cross_entropy(scores, ints(0, 2))
    assert loss.item() == ref.item()
    raises(xg.LabelError, lambda: xg.hinge_loss(scores, [0, 3]), "hinge_loss:", "max 3")


ONE_TENSOR_OPS = {  # op: extra arguments after the tensor
    "sigmoid": (),
    "relu": (),
    "tanh": (),
    "exp": (),
    "log": (),
    "sqrt": (),
    "abs": (),
    "softmax": (),
    "log_softmax": (),
    "leaky_relu": (),
    "elu": (),
    "maxout": (1,),
    "sum": (),
    "mean": (),
    "max": (),
    "min": (),
    "transpose": (),
    "reshape": ((3, 2),),
    "broadcast_to": ((2, 2, 3),),
    "astype": ("float32",),
    "mse_loss": (np.ones((2, 3)),),
    "softmax_cross_entropy": ([0, 1],),
    "hinge_loss": ([0, 1],),
}


@pytest.mark.parametrize("given", [np.ones((2, 3)), [[1.0, 2.0, 3.0]] * 2, 3.0], ids=["ndarray", "list", "float"])
@pytest.mark.parametrize("name", sorted(ONE_TENSOR_OPS))
def test_an_array_where_a_tensor_is_needed_is_named(name, given):
    """Not an AttributeError from deep inside: the op, what it got, and how to fix it."""
    fn = getattr(xg, name)
    raises(xg.NotATensorError, lambda: fn(given, *ONE_TENSOR_OPS[name]), f"{name}:", type(given).__name__, "xg.tensor(")
    if not isinstance(given, float):
        raises(xg.NotATensorError, lambda: xg.concat([t(2, 3), given]), "concat:", type(given).__name__)
        raises(xg.NotATensorError, lambda: xg.stack([given]), "stack:", type(given).__name__)


@pytest.mark.parametrize("op", ["matmul", "linear"])
def test_products_take_one_array_like_beside_a_tensor(op):
    fn = getattr(xg, op)
    x, w = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    raises(xg.NotATensorError, lambda: fn(x, w), f"{op}:", "ndarray and ndarray")
    for a, b in [(xg.tensor(x), w), (x, xg.tensor(w)), (xg.tensor(x), w.tolist())]:
        np.testing.assert_allclose(fn(a, b).numpy(), x @ w)
    W = xg.tensor(w, requires_grad=True)
    out = xg.linear(x, W, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(out.numpy(), x @ w + [1.0, 2.0, 3.0, 4.0])
    out.sum().backward()
    np.testing.assert_allclose(W.grad.numpy(), x.T @ np.ones((2, 4)))
