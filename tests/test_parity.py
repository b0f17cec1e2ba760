"""Backend parity: every op's forward value and gradients on every available backend vs NumPy.

Backends: ``numpy`` (the reference), ``array_api_strict`` (the portable array-API code paths),
and ``cupy`` when CuPy sees a usable GPU (skipped with the reason otherwise). For each op the
same host values are put on each backend; forward values and the gradients of every input
(`xg.grad` with the same output weights) must match NumPy's, in float64 (rtol 1e-10) and in
float32 (rtol 1e-4), and every result array must live on the backend it came from (nothing
moves to NumPy behind the user's back).

The second half feeds the same bad inputs to each backend: the exception type and the full
message must be identical to NumPy's (for CuPy the device names aside).
"""

from __future__ import annotations

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import fns_cupy

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

HAS_CUPY_GPU = xg.cupy_gpu_available()
OTHER_BACKENDS = [
    "array_api_strict",
    pytest.param(
        "cupy",
        marks=pytest.mark.skipif(
            not HAS_CUPY_GPU,
            reason="no CuPy with a usable CUDA GPU on this machine: the CuPy parity runs "
            'only where one is present (pip install "xpgrad[cuda13]" on a GPU host)',
        ),
    ),
]


def _module_of(data) -> str:
    return type(data).__module__.split(".")[0]


EXPECTED_MODULE = {"numpy": "numpy", "array_api_strict": "array_api_strict", "cupy": "cupy"}

# ---- inputs -------------------------------------------------------------------------------------
# An input spec is ("f", shape, kind) for a float tensor that requires grad, ("c", shape, kind)
# for a float constant, or ("i", values) for an integer tensor (labels, indices).


def _host(rng, shape, kind):
    if kind == "pos":
        return rng.uniform(0.5, 2.0, size=shape)
    if kind == "far":  # |v| in [0.3, 1.5]: away from the kinks of relu/abs/...
        return rng.uniform(0.3, 1.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    if kind == "grid":  # distinct values: no ties for max/min/maximum
        n = int(np.prod(shape)) if shape else 1
        return (rng.permutation(n) * 0.37 - 1.0 + rng.uniform(-0.01, 0.01, n)).reshape(shape)
    if kind == "grid2":
        n = int(np.prod(shape)) if shape else 1
        return (rng.permutation(n) * 0.37 - 0.815 + rng.uniform(-0.01, 0.01, n)).reshape(shape)
    return rng.uniform(-1.5, 1.5, size=shape)


def F(*shape, kind="any"):
    return ("f", shape, kind)


def C(*shape, kind="any"):
    return ("c", shape, kind)


def I(*values):  # noqa: E743 - an integer constant
    return ("i", values)


def _build(specs, dtype, seed=0):
    """Host arrays for each spec, then tensors on the current backend."""
    rng = np.random.default_rng(seed)
    host = []
    for spec in specs:
        if spec[0] == "i":
            host.append(np.asarray(spec[1], dtype=np.int64))
        else:
            host.append(_host(rng, spec[1], spec[2]))
    tensors = []
    for spec, h in zip(specs, host):
        if spec[0] == "i":
            tensors.append(xg.tensor(h))
        else:
            tensors.append(xg.tensor(h, dtype=dtype, requires_grad=spec[0] == "f"))
    return tensors


# ---- every op ------------------------------------------------------------------------------------

OPS = {
    # elementwise arithmetic (tensors and Python scalars, both sides), broadcasting
    "add": (lambda a, b: a + b, [F(2, 3), F(3)]),
    "sub": (lambda a, b: a - b, [F(2, 1), F(3)]),
    "mul": (lambda a, b: a * b, [F(2, 3), F(2, 1)]),
    "div": (lambda a, b: a / b, [F(2, 3), F(3, kind="pos")]),
    "pow": (lambda a, b: a**b, [F(2, 3, kind="pos"), F(3)]),
    "scalars": (lambda a: (2.0 - a) * 3.0 / (a * a + 1.0) + 1.5**a - a**2, [F(2, 3)]),
    "rdiv": (lambda a: 2.0 / a, [F(4, kind="pos")]),
    "neg": (lambda a: -a, [F(2, 3)]),
    "exp": (lambda a: xg.exp(a), [F(2, 3)]),
    "log": (lambda a: xg.log(a), [F(2, 3, kind="pos")]),
    "sqrt": (lambda a: xg.sqrt(a), [F(2, 3, kind="pos")]),
    "abs": (lambda a: xg.abs(a), [F(2, 3, kind="far")]),
    "maximum": (lambda a, b: xg.maximum(a, b), [F(2, 3, kind="grid"), F(2, 3, kind="grid2")]),
    "minimum": (lambda a, b: xg.minimum(a, b), [F(2, 3, kind="grid"), F(2, 3, kind="grid2")]),
    "maximum_tie": (lambda a: xg.maximum(a, a * 1.0), [F(2, 3)]),
    "where": (lambda a, b: xg.where(a > 0, a, b), [F(2, 3, kind="far"), F(3)]),
    "with_constant": (lambda a, c: a * c + c, [F(2, 3), C(3)]),
    # matmul: 2-D, batched, 1-D
    "matmul_2d": (lambda a, b: a @ b, [F(2, 3), F(3, 4)]),
    "matmul_batched": (lambda a, b: a @ b, [F(2, 2, 3), F(3, 2)]),
    "matmul_batched_both": (lambda a, b: a @ b, [F(2, 1, 2, 3), F(3, 3, 2)]),
    "matmul_vec_mat": (lambda a, b: a @ b, [F(3), F(3, 2)]),
    "matmul_mat_vec": (lambda a, b: a @ b, [F(2, 3), F(3)]),
    "matmul_vec_vec": (lambda a, b: a @ b, [F(3), F(3)]),
    # reductions
    "sum_all": (lambda a: a.sum(), [F(2, 3)]),
    "sum_axis": (lambda a: xg.sum(a, axis=1, keepdims=True), [F(2, 3)]),
    "mean_tuple": (lambda a: a.mean(axis=(0, 2)), [F(2, 3, 2)]),
    "max_axis": (lambda a: a.max(axis=0), [F(3, 2, kind="grid")]),
    "max_ties": (lambda a: xg.broadcast_to(a, (3, 2)).max(axis=0), [F(2)]),
    "min_all": (lambda a: xg.min(a, keepdims=True), [F(2, 3, kind="grid")]),
    # shapes and indexing
    "reshape": (lambda a: a.reshape(3, -1) * 1.0, [F(2, 3)]),
    "transpose": (lambda a: a.transpose(2, 0, 1) * xg.arange(3.0).astype(a.dtype), [F(2, 3, 2)]),
    "T": (lambda a: a.T, [F(2, 3)]),
    "broadcast_to": (lambda a: xg.broadcast_to(a, (2, 3)), [F(3)]),
    "getitem_int": (lambda a: a[1], [F(3, 2)]),
    "getitem_slice": (lambda a: a[1:, ::2], [F(3, 4)]),
    "getitem_row_slice": (lambda a: a[:2], [F(3, 2)]),
    "getitem_int_array_repeats": (lambda a, i: a[i], [F(3, 2), I(0, 2, 0, 0)]),
    "concat": (lambda a, b: xg.concat([a, b, a], axis=1), [F(2, 3), F(2, 1)]),
    "stack": (lambda a, b: xg.stack([a, b], axis=-1), [F(2, 3), F(2, 3)]),
    "astype": (lambda a: a.astype("float32").astype("float64"), [F(2, 3)]),
    # activations
    "sigmoid": (lambda a: xg.sigmoid(a), [F(2, 3)]),
    "sigmoid_tails": (lambda a: xg.sigmoid(a * 40.0), [F(2, 3)]),
    "tanh": (lambda a: xg.tanh(a), [F(2, 3)]),
    "relu": (lambda a: xg.relu(a), [F(2, 3, kind="far")]),
    "leaky_relu": (lambda a: xg.leaky_relu(a, negative_slope=0.1), [F(2, 3, kind="far")]),
    "elu": (lambda a: xg.elu(a, alpha=0.5), [F(2, 3, kind="far")]),
    "softmax": (lambda a: xg.softmax(a, axis=0), [F(3, 2)]),
    "log_softmax": (lambda a: xg.log_softmax(a), [F(2, 4)]),
    "maxout": (lambda a: xg.maxout(a, 2), [F(2, 4, kind="grid")]),
    # layers and losses
    "linear": (lambda x, W, b: xg.linear(x, W, b), [F(4, 3), F(3, 2), F(2)]),
    "linear_no_bias_3d": (lambda x, W: xg.linear(x, W), [F(2, 2, 3), F(3, 2)]),
    "linear_relu": (lambda x, W, b: xg.linear(x, W, b, activation="relu"), [F(4, 3), F(3, 5), F(5)]),
    "linear_sigmoid": (lambda x, W, b: xg.linear(x, W, b, activation="sigmoid"), [F(4, 3), F(3, 5), F(5)]),
    "linear_sigmoid_3d_no_bias": (lambda x, W: xg.linear(x, W, activation="sigmoid"), [F(2, 2, 3), F(3, 2)]),
    "linear_relu_1d": (lambda x, W, b: xg.linear(x, W, b, activation="relu"), [F(3), F(3, 4), F(4)]),
    "softmax_cross_entropy": (lambda z, y: xg.softmax_cross_entropy(z, y), [F(4, 3), I(0, 2, 1, 2)]),
    "mse_loss": (lambda p, t: xg.mse_loss(p, t), [F(2, 3), C(2, 3)]),
    "hinge_loss": (lambda s, y: xg.hinge_loss(s, y), [F(4, 3, kind="grid"), I(1, 0, 2, 1)]),
}


def _run(name, dtype):
    """Forward value and the gradient of every float input, as host arrays."""
    fn, specs = OPS[name]
    inputs = _build(specs, dtype)
    out = fn(*inputs)
    wanted = [t for t in inputs if t.requires_grad]
    w = np.random.default_rng(99).uniform(0.5, 1.5, size=out.shape)
    xp = xg.backend.namespace_of(out.data)
    weights = xg.Tensor(xp.asarray(w, dtype=out.dtype, device=out.data.device))
    grads = xg.grad([out], wanted, grad_outputs=[weights])
    return out, grads


TOLERANCE = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend_name", OTHER_BACKENDS)
@pytest.mark.parametrize("name", sorted(OPS))
def test_forward_and_gradients_match_numpy(name, backend_name, dtype):
    with xg.use_backend("numpy"):
        ref_out, ref_grads = _run(name, dtype)
    with xg.use_backend(backend_name):
        out, grads = _run(name, dtype)
    want = EXPECTED_MODULE[backend_name]
    assert _module_of(out.data) == want, f"{name}: forward result lives in {_module_of(out.data)}, not {want}"
    assert str(out.dtype).rsplit(".", 1)[-1] == str(ref_out.dtype), f"{name}: dtype {out.dtype} vs {ref_out.dtype}"
    assert out.shape == ref_out.shape
    np.testing.assert_allclose(out.numpy(), ref_out.numpy(), **TOLERANCE[dtype], err_msg=f"{name} forward")
    assert len(grads) == len(ref_grads)
    for k, (g, r) in enumerate(zip(grads, ref_grads)):
        assert _module_of(g.data) == want, f"{name}: gradient {k} lives in {_module_of(g.data)}, not {want}"
        assert g.shape == r.shape
        np.testing.assert_allclose(g.numpy(), r.numpy(), **TOLERANCE[dtype], err_msg=f"{name} gradient {k}")


@pytest.mark.parametrize("backend_name", OTHER_BACKENDS)
def test_backward_accumulates_identically(backend_name):
    """.backward() twice into the same leaves (retain_graph) and a retained interior gradient."""
    results = {}
    for be in ("numpy", backend_name):
        with xg.use_backend(be):
            x, W, b = _build([F(4, 3), F(3, 2), F(2)], "float64")
            h = xg.tanh(xg.linear(x, W, b)).retain_grad()
            loss = xg.softmax_cross_entropy(h, xg.tensor(np.array([0, 1, 1, 0])))
            loss.backward(retain_graph=True)
            loss.backward()
            results[be] = [t.grad.numpy() for t in (x, W, b, h)] + [loss.numpy()]
            assert _module_of(W.grad.data) == EXPECTED_MODULE[be]
    for got, ref in zip(results[backend_name], results["numpy"]):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend_name", OTHER_BACKENDS)
def test_second_order_matches_numpy(backend_name):
    results = {}
    for be in ("numpy", backend_name):
        with xg.use_backend(be):
            x, W = _build([F(3, 2), F(2, 3)], "float64")
            loss = xg.softmax_cross_entropy(xg.sigmoid(x @ W), xg.tensor(np.array([2, 0, 1])))
            gx, gW = xg.grad(loss, [x, W], create_graph=True)
            hx, hW = xg.grad((gx * gx).sum() + (gW * gW).sum(), [x, W])
            results[be] = [a.numpy() for a in (gx, gW, hx, hW)]
    for got, ref in zip(results[backend_name], results["numpy"]):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-13)


# ---- bad inputs: the same exception type and message everywhere ------------------------------------


def _t(*shape, dtype="float32", requires_grad=False):
    n = int(np.prod(shape)) if shape else 1
    return xg.tensor(np.arange(n, dtype=np.float64).reshape(shape), dtype=dtype, requires_grad=requires_grad)


def _ints(*values):
    return xg.tensor(np.asarray(values, dtype=np.int64))


def _backward_twice():
    x = _t(3, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    y.backward()


BAD_INPUTS = {
    "add_broadcast": lambda: _t(2, 3) + _t(4, 5),
    "mul_broadcast": lambda: _t(2, 3) * _t(2),
    "maximum_broadcast": lambda: xg.maximum(_t(3), _t(4)),
    "where_broadcast": lambda: xg.where(_t(2, 3) > 0, _t(2, 3), _t(4, 5)),
    "matmul_inner": lambda: _t(2, 3) @ _t(4, 5),
    "matmul_0d": lambda: _t() @ _t(2),
    "linear_features": lambda: xg.linear(_t(2, 3), _t(4, 5)),
    "linear_bias": lambda: xg.linear(_t(2, 3), _t(3, 4), _t(5)),
    "reshape_size": lambda: _t(2, 3).reshape(4, 2),
    "broadcast_to_shape": lambda: xg.broadcast_to(_t(2, 3), (4, 3)),
    "concat_dims": lambda: xg.concat([_t(2, 3), _t(4, 5)]),
    "concat_ndim": lambda: xg.concat([_t(2, 3), _t(3)]),
    "concat_axis": lambda: xg.concat([_t(2, 3), _t(2, 3)], axis=2),
    "stack_shapes": lambda: xg.stack([_t(2, 3), _t(3, 2)]),
    "transpose_axes": lambda: _t(2, 3).transpose(0, 0),
    "sum_axis": lambda: _t(2, 3).sum(axis=2),
    "mean_axis": lambda: xg.mean(_t(2, 3), axis=-3),
    "max_axis_repeat": lambda: _t(2, 3).max(axis=(1, 1)),
    "softmax_axis": lambda: xg.softmax(_t(2, 3), axis=5),
    "maxout_pieces": lambda: xg.maxout(_t(2, 3), 2),
    "getitem_out_of_range": lambda: _t(2, 3)[5],
    "getitem_second_axis": lambda: _t(2, 3)[1, -4],
    "getitem_array_out_of_range": lambda: _t(2, 3)[_ints(0, 9)],
    "labels_shape": lambda: xg.softmax_cross_entropy(_t(2, 3), _ints(0, 1, 2)),
    "labels_dtype": lambda: xg.softmax_cross_entropy(_t(2, 3), _t(2)),
    "labels_too_big": lambda: xg.softmax_cross_entropy(_t(2, 3), _ints(0, 3)),
    "labels_negative": lambda: xg.hinge_loss(_t(2, 3), _ints(-1, 0)),
    "mse_shapes": lambda: xg.mse_loss(_t(2, 3), _t(3, 2)),
    "int_requires_grad": lambda: xg.tensor(np.array([1, 2]), requires_grad=True),
    "sigmoid_int": lambda: xg.sigmoid(_ints(1, 2)),
    "softmax_int": lambda: xg.softmax(_ints(1, 2)),
    "backward_twice": _backward_twice,
    "backward_non_scalar": lambda: (_t(2, 3, requires_grad=True) * 2).backward(),
}


def _outcome(backend_name, name):
    with xg.use_backend(backend_name):
        try:
            BAD_INPUTS[name]()
            fns_cupy.raise_device_errors()  # CuPy: a bad label is reported at the next host read (docs/errors.md)
        except Exception as exc:  # noqa: BLE001 - the exception itself is what is compared
            return type(exc), str(exc)
    return None, None


@pytest.mark.parametrize("backend_name", OTHER_BACKENDS)
@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_gives_the_same_error_on_every_backend(name, backend_name):
    ref_type, ref_message = _outcome("numpy", name)
    assert ref_type is not None, f"{name}: NumPy accepted a bad input"
    assert issubclass(ref_type, xg.XpgradError), f"{name}: {ref_type.__name__}: {ref_message}"
    got_type, got_message = _outcome(backend_name, name)
    assert got_type is ref_type, f"{name}: {backend_name} raised {got_type} ({got_message}), numpy {ref_type}"
    assert got_message == ref_message
    assert "array_api_strict" not in got_message and "cupy" not in got_message, got_message


# Mixed integer/floating operands and float-only math on integers: NumPy (and CuPy) promote as
# NumPy does; the array-API standard defines no such promotion, and array_api_strict rejects it.
# That is a documented difference (docs/errors.md): on the strict backend the error must still
# be a DTypeError that names the op and the dtypes in backend-independent words.
STRICT_ONLY = {
    "int_plus_float": ("add", lambda: _ints(1, 2) + _t(2), ["int64", "float32"]),
    "float_matmul_int": ("matmul", lambda: _t(2, 2) @ _ints(1, 2), ["float32", "int64"]),
    "concat_int_float": ("concat", lambda: xg.concat([_ints(1, 2), _t(2)]), ["int64", "float32"]),
    "exp_int": ("exp", lambda: xg.exp(_ints(1, 2)), ["int64"]),
    "log_int": ("log", lambda: xg.log(_ints(1, 2)), ["int64"]),
}


@pytest.mark.parametrize("name", sorted(STRICT_ONLY))
def test_non_portable_dtypes_promote_on_numpy_and_raise_clearly_on_strict(name):
    op, fn, dtypes = STRICT_ONLY[name]
    with xg.use_backend("numpy"):
        result = fn()
    assert "float" in str(result.dtype), f"{name}: NumPy gave {result.dtype}"
    with xg.use_backend("array_api_strict"):
        with pytest.raises(xg.DTypeError) as info:
            fn()
    message = str(info.value)
    assert message.startswith(f"{op}: "), message
    for d in dtypes:
        assert d in message, message
    assert "array_api_strict" not in message, message


def test_label_error_is_raised_before_any_backend_work():
    """Out-of-range labels never reach an indexing kernel (Chainer returned garbage on GPU)."""
    for be in ("numpy", "array_api_strict"):
        with xg.use_backend(be):
            with pytest.raises(xg.LabelError, match=r"\[0, 3\) for 3 classes, got min 0 and max 7"):
                xg.softmax_cross_entropy(_t(2, 3, requires_grad=True), _ints(0, 7))
