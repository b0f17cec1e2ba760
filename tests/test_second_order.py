"""Second (and some third) derivatives: `create_graph=True` results against finite differences.

For every op with a non-zero second derivative, `xg.grad(..., create_graph=True)` gives the
gradient as a differentiable Tensor; its own gradient (a Hessian-vector product) is checked by
`xg.testing.gradcheck` against central finite differences *of the gradient*, in float64:
`hvp_fn` below is a function of the inputs whose value is the gradient, so gradcheck
perturbs the inputs, recomputes the gradient, and compares with the engine's second
derivative. Each case also checks that the create_graph gradient equals the plain one.

Ops whose second derivative is zero almost everywhere (relu, abs, max, getitem, ...) are
composed with a square so that the second-order path through their backward still matters.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpgrad as xg
from xpgrad.testing import GradcheckError, gradcheck

RNG_SEED = 1234


def leaf(rng, *shape, lo=-1.5, hi=1.5, backend="numpy"):
    with xg.use_backend(backend):
        return xg.tensor(rng.uniform(lo, hi, shape), dtype="float64", requires_grad=True)


def away_from_zero(rng, *shape, backend="numpy"):
    """Values in +-[0.3, 1.5]: far from the kinks of relu/abs/leaky_relu/elu."""
    v = rng.uniform(0.3, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    with xg.use_backend(backend):
        return xg.tensor(v, dtype="float64", requires_grad=True)


def gradient_fn(fn, n_inputs, weights_seed=7):
    """x -> d sum(fn(x) * w) / dx as one flat Tensor, built with create_graph=True.

    gradcheck evaluates it under no_grad for its finite differences, so recording is switched
    back on inside: each evaluation really computes the gradient at the perturbed point.
    """
    cache = {}

    def g(*inputs):
        with xg.set_grad_enabled(True):
            out = fn(*inputs)
            if "w" not in cache:
                cache["w"] = np.random.default_rng(weights_seed).uniform(0.5, 1.5, size=out.shape)
            xp = xg.backend.namespace_of(out.data)
            w = xg.Tensor(xp.asarray(cache["w"], dtype=out.dtype, device=out.data.device))
            grads = xg.grad([out], list(inputs)[:n_inputs], grad_outputs=[w], create_graph=True)
            return xg.concat([gr.reshape(-1) for gr in grads])

    return g


def check_second_order(fn, inputs):
    g = gradient_fn(fn, len(inputs))
    first = g(*inputs)
    assert first.requires_grad, "create_graph=True returned a gradient with no graph"
    # the create_graph gradient equals the plain (array) backward pass
    out = fn(*inputs)
    w = np.random.default_rng(7).uniform(0.5, 1.5, size=out.shape)
    xp = xg.backend.namespace_of(out.data)
    plain = xg.grad([out], list(inputs), grad_outputs=[xg.Tensor(xp.asarray(w, dtype=out.dtype))])
    flat = np.concatenate([p.numpy().reshape(-1) for p in plain])
    np.testing.assert_allclose(first.numpy(), flat, rtol=1e-12, atol=1e-13)
    assert gradcheck(g, inputs)


LABELS = np.array([0, 2, 1, 2])


def _labels(like):
    return xg.Tensor(xg.backend.namespace_of(like.data).asarray(LABELS[: like.shape[0]]))


def _mask(like):
    return xg.Tensor(xg.backend.namespace_of(like.data).asarray(np.array([True, False, True])))


# name -> (fn, input factories). Every op with a non-zero second derivative appears bare;
# piecewise-linear ops appear composed with a square.
CASES = {
    "mul": (lambda a, b: a * b, [(2, 3), (3,)]),
    "mul_self": (lambda a: a * a * a, [(2, 3)]),
    "div": (lambda a, b: a / b, [(2, 3), ("pos", 3)]),
    "rdiv_scalar": (lambda a: 2.0 / a, [("pos", 2, 3)]),
    "pow_tensor": (lambda a, b: a**b, [("pos", 2, 3), (3,)]),
    "pow_scalar": (lambda a: a**3.0, [(2, 3)]),
    "pow_fractional": (lambda a: a**-1.5, [("pos", 4)]),
    "rpow_scalar": (lambda a: 2.0**a, [(2, 3)]),
    "exp": (lambda a: xg.exp(a), [(2, 3)]),
    "log": (lambda a: xg.log(a), [("pos", 2, 3)]),
    "sqrt": (lambda a: xg.sqrt(a), [("pos", 2, 3)]),
    "sigmoid": (lambda a: xg.sigmoid(a), [(2, 3)]),
    "tanh": (lambda a: xg.tanh(a), [(2, 3)]),
    "elu": (lambda a: xg.elu(a), [("far", 2, 3)]),
    "elu_alpha": (lambda a: xg.elu(a, alpha=0.3), [("far", 2, 3)]),
    "softmax_last": (lambda a: xg.softmax(a), [(2, 3)]),
    "softmax_axis0": (lambda a: xg.softmax(a, axis=0), [(3, 2)]),
    "log_softmax": (lambda a: xg.log_softmax(a, axis=1), [(2, 4)]),
    "log_softmax_axis0": (lambda a: xg.log_softmax(a, axis=0), [(3, 2)]),
    "matmul_2d": (lambda a, b: (a @ b) * (a @ b), [(2, 3), (3, 2)]),
    "matmul_vec_mat": (lambda a, b: (a @ b) ** 2, [(3,), (3, 2)]),
    "matmul_mat_vec": (lambda a, b: (a @ b) ** 2, [(2, 3), (3,)]),
    "matmul_vec_vec": (lambda a, b: (a @ b) ** 2, [(3,), (3,)]),
    "matmul_batched": (lambda a, b: (a @ b) ** 2, [(2, 2, 3), (3, 2)]),
    "matmul_gram": (lambda a: a.T @ a, [(3, 2)]),
    "linear": (lambda x, W, b: xg.linear(x, W, b) ** 2, [(3, 2), (2, 4), (4,)]),
    "linear_no_bias": (lambda x, W: xg.tanh(xg.linear(x, W)), [(3, 2), (2, 4)]),
    "linear_3d": (lambda x, W, b: xg.linear(x, W, b) ** 2, [(2, 3, 2), (2, 4), (4,)]),
    "linear_sigmoid": (lambda x, W, b: xg.linear(x, W, b, activation="sigmoid"), [(3, 2), (2, 4), (4,)]),
    "linear_sigmoid_3d_no_bias": (lambda x, W: xg.linear(x, W, activation="sigmoid"), [(2, 3, 2), (2, 4)]),
    "linear_relu_squared": (lambda x, W, b: xg.linear(x, W, b, activation="relu") ** 2, [(3, 2), (2, 4), (4,)]),
    "softmax_cross_entropy": (lambda z: xg.softmax_cross_entropy(z, _labels(z)), [(4, 3)]),
    "softmax_cross_entropy_of_linear": (
        lambda x, W: xg.softmax_cross_entropy(xg.linear(x, W), _labels(x)),
        [(4, 2), (2, 3)],
    ),
    "mse_loss": (lambda p, t: xg.mse_loss(p * p, t), [(2, 3), (2, 3)]),
    "mse_loss_sum": (lambda p, t: xg.mse_loss(p * p, t, reduction="sum"), [(2, 3), (2, 3)]),
    "hinge_loss_squared": (lambda s: xg.hinge_loss(s * s, _labels(s)), [(4, 3)]),
    "relu_squared": (lambda a: xg.relu(a) * a, [("far", 2, 3)]),
    "leaky_relu_squared": (lambda a: xg.leaky_relu(a, 0.1) ** 2, [("far", 2, 3)]),
    "abs_squared": (lambda a: xg.abs(a) * a, [("far", 2, 3)]),
    "max_squared": (lambda a: a.max(axis=1) ** 2, [(2, 3)]),
    "min_squared": (lambda a: xg.min(a, axis=0, keepdims=True) ** 2, [(2, 3)]),
    "maximum_squared": (lambda a, b: xg.maximum(a, b) ** 2, [(2, 3), (2, 3)]),
    "minimum_squared": (lambda a, b: xg.minimum(a, b) ** 2, [(2, 3), (3,)]),
    "maxout_squared": (lambda a: xg.maxout(a, 2) ** 2, [(2, 4)]),
    "where_squared": (lambda a, b: xg.where(_mask(a), a, b) ** 2, [(2, 3), (2, 3)]),
    "getitem_array_squared": (lambda a: a[xg.tensor(np.array([0, 0, 1]))] ** 2, [(2, 3)]),
    "getitem_slice_squared": (lambda a: a[:, 1:] ** 2, [(2, 3)]),
    "concat_squared": (lambda a, b: xg.concat([a, b], axis=1) ** 2, [(2, 3), (2, 1)]),
    "stack_squared": (lambda a, b: xg.stack([a, b], axis=1) ** 2, [(2, 3), (2, 3)]),
    "reshape_transpose": (lambda a: a.reshape(3, 2).T ** 2, [(2, 3)]),
    "broadcast_to_squared": (lambda a: xg.broadcast_to(a, (2, 3)) ** 2, [(3,)]),
    "sum_squared": (lambda a: a.sum(axis=0) ** 2, [(2, 3)]),
    "mean_squared": (lambda a: a.mean(axis=(0, 1)) ** 2, [(2, 3)]),
    "sub_neg_cubed": (lambda a, b: (-(a - b)) ** 3, [(2, 3), (3,)]),
    "sigmoid_of_sigmoid": (lambda a: xg.sigmoid(xg.sigmoid(a) * a), [(2, 3)]),
    "two_layer_net": (
        lambda x, W1, W2: xg.softmax_cross_entropy(xg.linear(xg.tanh(xg.linear(x, W1)), W2), _labels(x)),
        [(4, 3), (3, 5), (5, 3)],
    ),
}


def _make_inputs(specs, backend="numpy"):
    rng = np.random.default_rng(RNG_SEED)
    made = []
    for spec in specs:
        if spec and spec[0] == "pos":
            made.append(leaf(rng, *spec[1:], lo=0.5, hi=2.0, backend=backend))
        elif spec and spec[0] == "far":
            made.append(away_from_zero(rng, *spec[1:], backend=backend))
        else:
            made.append(leaf(rng, *spec, backend=backend))
    return made


@pytest.mark.parametrize("name", sorted(CASES))
def test_second_derivative_matches_finite_differences(name):
    fn, specs = CASES[name]
    inputs = _make_inputs(specs)
    if name.startswith("linear_relu"):  # finite differences need the pre-activations away from 0
        x, W, b = (i.numpy() for i in inputs)
        assert np.min(np.abs(x @ W + b)) > 1e-2, "the fixed inputs put a pre-activation at the relu kink"
    check_second_order(fn, inputs)


STRICT_CASES = [
    "sigmoid",
    "tanh",
    "softmax_cross_entropy",
    "log_softmax",
    "linear",
    "div",
    "pow_tensor",
    "getitem_slice_squared",
    "max_squared",
    "elu",
    "matmul_batched",
    "linear_sigmoid",
]


@pytest.mark.parametrize("name", STRICT_CASES)
def test_second_derivative_on_array_api_strict(name):
    pytest.importorskip("array_api_strict")
    fn, specs = CASES[name]
    inputs = _make_inputs(specs, backend="array_api_strict")
    assert "array_api_strict" in type(inputs[0].data).__module__
    check_second_order(fn, inputs)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "exp", "log", "softmax_last", "div", "sqrt"])
def test_third_derivative_matches_finite_differences(name):
    """The gradient of the gradient is itself differentiable (create_graph all the way)."""
    fn, specs = CASES[name]
    inputs = _make_inputs(specs)
    second = gradient_fn(gradient_fn(fn, len(inputs)), len(inputs), weights_seed=8)
    assert second(*inputs).requires_grad
    assert gradcheck(second, inputs)


def test_backward_create_graph_accumulates_a_differentiable_grad():
    """Tensor.backward(create_graph=True) leaves a .grad that can be differentiated again."""
    x = xg.tensor([0.5, -1.0, 2.0], dtype="float64", requires_grad=True)
    (x**3).sum().backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    np.testing.assert_allclose(g.numpy(), 3 * x.numpy() ** 2, rtol=1e-14)
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy(), rtol=1e-14)


def test_sigmoid_second_derivative_closed_form():
    """s'' = s (1 - s) (1 - 2 s): the sigmoid node's backward is itself one differentiable node."""
    v = np.array([-3.0, -0.5, 0.0, 0.7, 4.0])
    x = xg.tensor(v, dtype="float64", requires_grad=True)
    (g,) = xg.grad(xg.sigmoid(x).sum(), [x], create_graph=True)
    (h,) = xg.grad(g.sum(), [x])
    s = 1 / (1 + np.exp(-v))
    np.testing.assert_allclose(g.numpy(), s * (1 - s), rtol=1e-13)
    np.testing.assert_allclose(h.numpy(), s * (1 - s) * (1 - 2 * s), rtol=1e-12, atol=1e-15)


def test_softmax_cross_entropy_hessian_closed_form():
    """d2 L / dz2 for one row is (diag(p) - p p^T) / N, whatever the label."""
    z = np.array([[0.2, -1.0, 0.5]])
    t = xg.tensor(z, dtype="float64", requires_grad=True)
    (g,) = xg.grad(xg.softmax_cross_entropy(t, xg.tensor(np.array([1]))), [t], create_graph=True)
    p = np.exp(z[0] - z[0].max())
    p /= p.sum()
    hessian = np.diag(p) - np.outer(p, p)
    for j in range(3):
        (row,) = xg.grad(g[0, j], [t], retain_graph=True)
        np.testing.assert_allclose(row.numpy()[0], hessian[j], rtol=1e-12, atol=1e-15)


def test_second_order_check_catches_a_wrong_second_derivative(monkeypatch):
    """The harness can fail: a backward rule right to first order but with the wrong
    derivative of its own (d/dx of the gradient is gy instead of gy * e^x) is caught."""
    from xpgrad.ops import arith

    def detached_exp_backward(self, F, gy, args, y):
        if not isinstance(y, xg.Tensor):
            return (gy * y,)
        x = args[0]
        return (gy * (y.detach() + (x - x.detach())),)

    monkeypatch.setattr(arith.Exp, "backward", detached_exp_backward)
    inputs = _make_inputs([(2, 3)])
    with pytest.raises(GradcheckError, match="gradient wrong"):
        check_second_order(lambda a: xg.exp(a), inputs)


def test_every_op_with_curvature_is_covered():
    """The op list of the brief: each has a bare case above (not only a composed one)."""
    required = {
        "mul",
        "div",
        "pow_tensor",
        "exp",
        "log",
        "sqrt",
        "sigmoid",
        "tanh",
        "elu",
        "softmax_last",
        "log_softmax",
        "matmul_2d",
        "linear",
        "linear_sigmoid",
        "softmax_cross_entropy",
        "mse_loss",
    }
    assert required <= set(CASES)
