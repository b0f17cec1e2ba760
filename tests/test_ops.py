"""Every op: gradients vs central finite differences (float64), on NumPy and array_api_strict.

Binary elementwise ops run over random mutually-broadcastable shapes (hypothesis), so the one
shared `unbroadcast` is exercised everywhere; a float32 pass checks the same ops at float32
tolerances.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import xpgrad as xg
from helpers import BACKENDS, away_from_zero, distinct, make
from xpgrad.testing import GradcheckError, gradcheck

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    with xg.use_backend(request.param):
        yield request.param


BINARY = {
    "add": (lambda a, b: a + b, "any"),
    "sub": (lambda a, b: a - b, "any"),
    "mul": (lambda a, b: a * b, "any"),
    "div": (lambda a, b: a / b, "nonzero"),
    "pow": (lambda a, b: a**b, "positive"),
    "maximum": (xg.maximum, "distinct"),
    "minimum": (xg.minimum, "distinct"),
}


def _values(rng, shape, kind, second=False):
    if kind == "positive":
        return rng.uniform(0.5, 2.0, size=shape)
    if kind == "nonzero":
        return away_from_zero(rng, shape)
    if kind == "distinct":
        return distinct(rng, shape, offset=0.185 if second else 0.0) + rng.uniform(-0.01, 0.01, size=shape)
    return rng.standard_normal(shape)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(BINARY))
@given(
    shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3), seed=st.integers(0, 2**16)
)
@settings(max_examples=15, deadline=None)
def test_binary_ops_broadcast(name, dtype, shapes, seed):
    fn, kind = BINARY[name]
    rng = np.random.default_rng(seed)
    a = make(_values(rng, shapes.input_shapes[0], kind), dtype=dtype)
    b = make(_values(rng, shapes.input_shapes[1], kind, second=True), dtype=dtype)
    assert gradcheck(fn, [a, b])
    out = fn(a, b)
    assert out.shape == shapes.result_shape and out.dtype == np.dtype(dtype)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_ops_on_backend(backend_name, name):
    fn, kind = BINARY[name]
    rng = np.random.default_rng(1)
    a, b = make(_values(rng, (2, 3), kind)), make(_values(rng, (3,), kind, second=True))
    assert gradcheck(fn, [a, b])


@pytest.mark.parametrize("scalar_side", ["left", "right"])
@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**"])
def test_python_scalars_both_sides(backend_name, op, scalar_side):
    rng = np.random.default_rng(2)
    x = make(rng.uniform(0.5, 2.0, size=(2, 3)))
    c = 1.7
    fn = {
        "+": (lambda t: c + t, lambda t: t + c),
        "-": (lambda t: c - t, lambda t: t - c),
        "*": (lambda t: c * t, lambda t: t * c),
        "/": (lambda t: c / t, lambda t: t / c),
        "**": (lambda t: c**t, lambda t: t**c),
    }[op][0 if scalar_side == "left" else 1]
    assert gradcheck(fn, [x])
    expected = eval(f"c {op} v" if scalar_side == "left" else f"v {op} c", {"c": c, "v": x.numpy()})
    np.testing.assert_allclose(fn(x).numpy(), expected, rtol=1e-12)


UNARY = {
    "neg": (lambda x: -x, "any"),
    "exp": (xg.exp, "any"),
    "log": (xg.log, "positive"),
    "sqrt": (xg.sqrt, "positive"),
    "abs": (xg.abs, "nonzero"),
    "sigmoid": (xg.sigmoid, "any"),
    "tanh": (xg.tanh, "any"),
    "relu": (xg.relu, "nonzero"),
    "leaky_relu": (lambda x: xg.leaky_relu(x, negative_slope=0.05), "nonzero"),
    "elu": (lambda x: xg.elu(x, alpha=0.7), "nonzero"),
    "softmax": (xg.softmax, "any"),
    "softmax_axis0": (lambda x: xg.softmax(x, axis=0), "any"),
    "log_softmax": (xg.log_softmax, "any"),
    "maxout": (lambda x: xg.maxout(x, 2), "distinct"),
    "sum_all": (lambda x: x.sum(), "any"),
    "sum_axis": (lambda x: x.sum(axis=1), "any"),
    "sum_tuple_keepdims": (lambda x: xg.sum(x, axis=(0, 2), keepdims=True), "any"),
    "mean_axis": (lambda x: x.mean(axis=-1), "any"),
    "mean_all": (xg.mean, "any"),
    "max_axis": (lambda x: x.max(axis=1), "distinct"),
    "max_all": (xg.max, "distinct"),
    "min_axis_keepdims": (lambda x: xg.min(x, axis=2, keepdims=True), "distinct"),
    "reshape": (lambda x: x.reshape(6, -1), "any"),
    "transpose": (lambda x: x.transpose(2, 0, 1), "any"),
    "T": (lambda x: x.T, "any"),
    "broadcast_to": (lambda x: xg.broadcast_to(x[:, :1, :], (2, 3, 4)), "any"),
    "getitem_slice": (lambda x: x[1, ::2, 1:3], "any"),
    "getitem_ellipsis_none": (lambda x: x[..., None, 0], "any"),
    "pow_scalar": (lambda x: x**3, "any"),
    "square": (lambda x: x**2, "any"),  # its own backward path (2 x gy)
    "square_float": (lambda x: x**2.0, "any"),
    "where": (lambda x: xg.where(x > 0, x * 2.0, x * x), "nonzero"),
    "astype_roundtrip": (lambda x: xg.astype(x, "float32").astype("float64") * 1.0, "any"),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops(backend_name, name):
    fn, kind = UNARY[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    x = make(_values(rng, (2, 3, 4), kind))
    if name == "astype_roundtrip":
        assert gradcheck(fn, [x], atol=1e-4, eps=1e-3)
    else:
        assert gradcheck(fn, [x])


@pytest.mark.parametrize("name", sorted(set(UNARY) - {"astype_roundtrip"}))
def test_unary_ops_float32(name):
    fn, kind = UNARY[name]
    rng = np.random.default_rng(3)
    x = make(_values(rng, (2, 3, 4), kind), dtype="float32")
    assert gradcheck(fn, [x])
    assert fn(x).dtype == np.float32


@pytest.mark.parametrize(
    "shapes",
    [
        ((3,), (3,)),
        ((2, 3), (3, 4)),
        ((3,), (3, 4)),
        ((2, 3), (3,)),
        ((5, 2, 3), (3, 4)),
        ((2, 3), (5, 3, 4)),
        ((5, 2, 3), (5, 3, 4)),
        ((1, 2, 3), (4, 3, 2)),
        ((3,), (5, 3, 2)),
    ],
)
def test_matmul_shapes(backend_name, shapes):
    rng = np.random.default_rng(4)
    a, b = make(rng.standard_normal(shapes[0])), make(rng.standard_normal(shapes[1]))
    assert gradcheck(xg.matmul, [a, b])
    np.testing.assert_allclose((a @ b).numpy(), a.numpy() @ b.numpy(), rtol=1e-12)


@pytest.mark.parametrize("x_shape", [(4, 3), (2, 4, 3), (3,)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(backend_name, x_shape, with_bias):
    rng = np.random.default_rng(5)
    x, W = make(rng.standard_normal(x_shape)), make(rng.standard_normal((3, 5)))
    args = [x, W] + ([make(rng.standard_normal(5))] if with_bias else [])
    assert gradcheck(xg.linear, args)
    expected = x.numpy() @ W.numpy() + (args[2].numpy() if with_bias else 0)
    np.testing.assert_allclose(xg.linear(*args).numpy(), expected, rtol=1e-12)
    assert xg.linear(*args)._node.name == "linear"  # one node, not matmul + add


def test_linear_backward_matches_notes_formulas():
    rng = np.random.default_rng(6)
    x, W, b = make(rng.standard_normal((4, 3))), make(rng.standard_normal((3, 2))), make(rng.standard_normal(2))
    dy = rng.standard_normal((4, 2))
    xg.linear(x, W, b).backward(dy)
    np.testing.assert_allclose(x.grad.numpy(), dy @ W.numpy().T, rtol=1e-12)
    np.testing.assert_allclose(W.grad.numpy(), x.numpy().T @ dy, rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), dy.sum(axis=0), rtol=1e-12)


def test_getitem_integer_array_repeats_accumulate(backend_name):
    x = make(np.arange(12.0).reshape(4, 3))
    idx = xg.tensor(np.array([2, 0, 2, 2]))
    y = x[idx]
    y.backward(xg.ones(4, 3, dtype="float64"))
    expected = np.zeros((4, 3))
    expected[0] = 1
    expected[2] = 3
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    assert gradcheck(lambda t: t[idx] * t[idx], [x])


def test_getitem_fancy_numpy_paths():
    rng = np.random.default_rng(7)
    x = make(rng.standard_normal((4, 5)))
    rows, cols = np.array([0, 3, 3]), np.array([1, 1, 4])
    assert gradcheck(lambda t: t[rows, cols], [x])
    assert gradcheck(lambda t: t[x.numpy() > 0], [x])
    assert gradcheck(lambda t: t[[1, 1, 2]], [x])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_stack(backend_name, axis):
    rng = np.random.default_rng(8)
    a, b = make(rng.standard_normal((2, 3))), make(rng.standard_normal((2, 3)))
    assert gradcheck(lambda p, q: xg.concat([p, q * q, p], axis=axis), [a, b])
    assert gradcheck(lambda p, q: xg.stack([p, q, p * q], axis=axis), [a, b])
    np.testing.assert_array_equal(
        xg.concat([a, b], axis=axis).numpy(), np.concatenate([a.numpy(), b.numpy()], axis=axis)
    )
    np.testing.assert_array_equal(xg.stack([a, b], axis=axis).numpy(), np.stack([a.numpy(), b.numpy()], axis=axis))


def test_max_routes_and_splits_ties():
    x = make([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]])
    x.max(axis=1).backward(xg.tensor([1.0, 1.0], dtype="float64"))
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0.5, 0.5], [1, 0, 0]])
    a, b = make([1.0, 2.0, 5.0]), make([1.0, 3.0, 4.0])
    xg.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 0, 1])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 1, 0])


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "hinge_loss"])
def test_classification_losses(backend_name, loss):
    rng = np.random.default_rng(9)
    logits = make(rng.standard_normal((6, 4)))
    labels = xg.tensor(np.array([0, 3, 1, 1, 2, 3]))
    fn = getattr(xg, loss)
    assert gradcheck(lambda z: fn(z, labels), [logits])


def test_softmax_cross_entropy_value_and_gradient_formula():
    rng = np.random.default_rng(10)
    z = rng.standard_normal((5, 3)) * 4
    y = np.array([2, 0, 1, 1, 2])
    logits = make(z)
    loss = xg.softmax_cross_entropy(logits, xg.tensor(y))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(loss.item(), -np.mean(np.log(p[np.arange(5), y])), rtol=1e-12)
    loss.backward()
    onehot = np.eye(3)[y]
    np.testing.assert_allclose(logits.grad.numpy(), (p - onehot) / 5, rtol=1e-10)


def test_softmax_cross_entropy_is_stable_for_large_logits():
    logits = make([[1000.0, 0.0, -1000.0], [-800.0, 800.0, 0.0]])
    loss = xg.softmax_cross_entropy(logits, xg.tensor([0, 1]))
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(0.0, abs=1e-12)
    loss.backward()
    assert np.all(np.isfinite(logits.grad.numpy()))


def test_hinge_loss_matches_cs231n_formula():
    s = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    y = np.array([0, 1, 2])
    loss = xg.hinge_loss(make(s), xg.tensor(y))
    margins = np.maximum(0, s - s[np.arange(3), y][:, None] + 1.0)
    margins[np.arange(3), y] = 0
    assert loss.item() == pytest.approx(margins.sum() / 3)  # the lecture's cat/car/frog example: 5.27
    assert loss.item() == pytest.approx((2.9 + 0 + 12.9) / 3, rel=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(backend_name, reduction):
    rng = np.random.default_rng(11)
    p, t = make(rng.standard_normal((4, 2))), make(rng.standard_normal((4, 2)))
    squares = (p.numpy() - t.numpy()) ** 2
    assert gradcheck(lambda q, u: xg.mse_loss(q, u, reduction=reduction), [p, t])  # both sides differentiable
    expected = {"mean": squares.mean(), "sum": squares.sum(), "none": squares}[reduction]
    np.testing.assert_allclose(xg.mse_loss(p, t, reduction=reduction).numpy(), expected, rtol=1e-12)
    loss = xg.mse_loss(p, t.detach(), reduction=reduction)
    loss.sum().backward()
    n = squares.size if reduction == "mean" else 1
    np.testing.assert_allclose(p.grad.numpy(), 2 * (p.numpy() - t.numpy()) / n, rtol=1e-12)


def test_mse_loss_float32_and_constant_targets():
    rng = np.random.default_rng(12)
    p = xg.tensor(rng.standard_normal((64, 10)).astype(np.float32), requires_grad=True)
    t = rng.standard_normal((64, 10)).astype(np.float32)  # a plain array, no gradient asked
    loss = xg.mse_loss(p, t, reduction="sum")
    assert loss.dtype == np.float32 and loss.shape == ()
    loss.backward()
    d = p.numpy().astype(np.float64) - t
    assert loss.item() == pytest.approx((d * d).sum(), rel=1e-5)
    np.testing.assert_allclose(p.grad.numpy(), 2 * d, rtol=1e-5)


def test_mse_loss_rejects_an_unknown_reduction_and_is_nan_when_empty():
    p = xg.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match="mse_loss: reduction must be one of .* got 'avg'"):
        xg.mse_loss(p, np.zeros((2, 3)), reduction="avg")
    assert np.isnan(xg.mse_loss(xg.tensor(np.ones((0, 3))), np.zeros((0, 3))).item())


def test_gradcheck_catches_a_wrong_gradient():
    class BadExp(xg.ops.arith.Exp):
        __slots__ = ()

        def backward(self, F, gy, args, y):
            return (gy * y * 1.01,)

    from xpgrad.autograd import apply1

    x = make([0.1, 0.5, -0.3])
    with pytest.raises(GradcheckError, match=r"input 0 .* gradient wrong at index \(\d+,\)"):
        gradcheck(lambda t: apply1(BadExp(), t), [x])


def test_comparisons_have_no_grad(backend_name):
    x = make([1.0, -2.0, 3.0])
    for mask in (x > 0, x >= 1.0, x < 0, x <= 0, x == 3.0, x != 3.0):
        assert not mask.requires_grad and "bool" in str(mask.dtype)
    np.testing.assert_array_equal((x > 0).numpy(), [True, False, True])
