"""Eager fusion of temporaries (xpgrad.ops.fused): same values and gradients, fewer nodes, and
nothing fused over a tensor someone still holds."""

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import autograd
from xpgrad.testing import gradcheck

rng = np.random.default_rng(7)


def leaf(*shape, grad=True):
    return xg.tensor(rng.standard_normal(shape), requires_grad=grad)


def test_the_interpreter_separates_temporaries():
    assert autograd.TEMPORARY_REFS > 0 and autograd.HELD_BY_SLOTS_REFS > 0  # else these tests fuse nothing


def square(d):
    return d * d  # returns d * d with d held only by the product's node


# name: (fused expression, the same computation with every intermediate named, fused node name)
def _sigmoid_named(x, W, b, t):
    z = x @ W
    return xg.sigmoid(z)


def _relu_bias_named(x, W, b, t):
    z = x @ W
    zb = z + b
    return xg.relu(zb)


def _sum_sq_named(x, W, b, t):
    p = x @ W
    d = p - t
    return (d**2).sum()


def _mean_sq_named(x, W, b, t):
    p = x @ W
    d = p - t
    return xg.mean(d * d)


CASES = {
    "sigmoid(x @ W)": (lambda x, W, b, t: xg.sigmoid(x @ W), _sigmoid_named, "linear_act"),
    "(x @ W).relu()": (lambda x, W, b, t: (x @ W).relu(), lambda x, W, b, t: xg.relu(_keep(x @ W)), "linear_act"),
    "relu(x @ W + b)": (lambda x, W, b, t: xg.relu(x @ W + b), _relu_bias_named, "linear_act"),
    "sigmoid(x @ W + b)": (
        lambda x, W, b, t: xg.sigmoid(x @ W + b),
        lambda x, W, b, t: xg.sigmoid(_keep(x @ W + b)),
        "linear_act",
    ),
    "((x @ W - t) ** 2).sum()": (lambda x, W, b, t: ((x @ W - t) ** 2).sum(), _sum_sq_named, "mse_loss"),
    "mean(square(x @ W - t))": (lambda x, W, b, t: xg.mean(square(x @ W - t)), _mean_sq_named, "mse_loss"),
    "xg.sum((x @ W - 0.5) ** 2.0)": (
        lambda x, W, b, t: xg.sum((x @ W - 0.5) ** 2.0),
        lambda x, W, b, t: xg.sum(_keep(_keep(x @ W) - 0.5) ** 2.0),
        "mse_loss",
    ),
}

_kept = []


def _keep(t):
    """Hold `t` (as a user's variable would), so nothing is fused over it."""
    _kept.append(t)
    return t


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_matches_op_by_op(case, backend):
    fused_fn, named_fn, node_name = CASES[case]
    with xg.use_backend(backend):
        x, W, b, t = leaf(4, 3), leaf(3, 5), leaf(5), leaf(4, 5, grad=False)
        check_fused_matches_op_by_op(fused_fn, named_fn, node_name, x, W, b, t)


def check_fused_matches_op_by_op(fused_fn, named_fn, node_name, x, W, b, t):
    fused = fused_fn(x, W, b, t)
    plain = named_fn(x, W, b, t)
    _kept.clear()
    assert fused._node.name == node_name and plain._node.name != node_name
    np.testing.assert_allclose(fused.numpy(), plain.numpy(), rtol=1e-13)
    leaves = [x, W, b]
    g_fused = xg.grad(fused.sum(), leaves)
    g_plain = xg.grad(plain.sum(), leaves)
    for gf, gp in zip(g_fused, g_plain):
        np.testing.assert_allclose(gf.numpy(), gp.numpy(), rtol=1e-12, atol=1e-14)
    assert gradcheck(lambda x, W, b: fused_fn(x, W, b, t), leaves)


def test_second_derivatives_through_fused_nodes():
    x, W, t = leaf(4, 3), leaf(3, 2), leaf(4, 2, grad=False)

    def curvature(loss_of):
        (g,) = xg.grad(loss_of(W), [W], create_graph=True)
        (hv,) = xg.grad((g * g).sum(), [W])
        return hv.numpy()

    def fused(W):
        return ((xg.sigmoid(x @ W) - t) ** 2).sum()

    def op_by_op(W):
        return (_keep(_keep(xg.sigmoid(_keep(x @ W))) - t) ** 2).sum()

    assert fused(W)._node.name == "mse_loss" and op_by_op(W)._node.name == "sum"
    np.testing.assert_allclose(curvature(fused), curvature(op_by_op), rtol=1e-10)
    _kept.clear()


def test_a_held_intermediate_keeps_its_gradient():
    x, W, t = leaf(4, 3), leaf(3, 5), leaf(4, 5, grad=False)
    z = x @ W
    loss = ((xg.sigmoid(z) - t) ** 2).sum()  # z is named: the sigmoid is its own node
    assert loss._node.name == "mse_loss" and loss._node.inputs[0]._node.name == "sigmoid"
    (gz,) = xg.grad(loss, [z], retain_graph=True)
    y = 1 / (1 + np.exp(-z.numpy()))
    np.testing.assert_allclose(gz.numpy(), 2 * (y - t.numpy()) * y * (1 - y), rtol=1e-12)
    z.retain_grad()
    loss.backward()
    np.testing.assert_allclose(z.grad.numpy(), gz.numpy(), rtol=1e-12)


def test_held_difference_is_not_fused():
    p, t = leaf(3, 4), leaf(3, 4)
    d = p - t
    loss = (d * d).sum()
    assert loss._node.name == "sum"
    (gd,) = xg.grad(loss, [d])
    np.testing.assert_allclose(gd.numpy(), 2 * d.numpy(), rtol=1e-12)


def test_retain_grad_on_a_temporary_blocks_fusion():
    x, W = leaf(4, 3), leaf(3, 5)
    assert xg.sigmoid((x @ W).retain_grad())._node.name == "sigmoid"


def test_no_fusion_in_debug_mode_or_without_recording():
    x, W = leaf(4, 3), leaf(3, 5)
    autograd.set_debug(True)
    try:
        assert xg.sigmoid(x @ W)._node.name == "sigmoid"
    finally:
        autograd.set_debug(False)
    with xg.no_grad():
        assert xg.sigmoid(x @ W)._node is None


@pytest.mark.parametrize("case", ["broadcast target", "mixed dtypes", "bias of another shape", "batched product"])
def test_shapes_and_dtypes_outside_the_fused_ops_run_op_by_op(case):
    x, W = leaf(4, 3), leaf(3, 5)
    if case == "broadcast target":
        out, expected_name = ((x @ W - leaf(5, grad=False)) ** 2).sum(), "sum"
    elif case == "mixed dtypes":
        out, expected_name = xg.sigmoid(x @ xg.tensor(W.numpy().astype(np.float32), requires_grad=True)), "sigmoid"
    elif case == "bias of another shape":
        out, expected_name = xg.relu(x @ W + leaf(4, 1)), "relu"
    else:
        out, expected_name = xg.sigmoid(leaf(2, 4, 3) @ W), "sigmoid"
    assert out._node.name == expected_name
    assert np.all(np.isfinite(out.numpy()))
