"""The worked examples of the source notes (../shared/seeds/), with their exact values."""

import numpy as np
import pytest

import xpgrad as xg
from helpers import BACKENDS


@pytest.fixture(params=BACKENDS)
def on_backend(request):
    with xg.use_backend(request.param):
        yield request.param


def leaves(*values, dtype="float64"):
    return [xg.tensor(v, dtype=dtype, requires_grad=True) for v in values]


def test_add_then_multiply_circuit(on_backend):
    # f = (x + y) z at x=-2, y=5, z=-4: q = 3, f = -12; df/dx = df/dy = z = -4, df/dz = q = 3
    x, y, z = leaves(-2.0, 5.0, -4.0)
    q = x + y
    q.retain_grad()
    f = q * z
    f.backward()
    assert f.item() == -12.0 and q.item() == 3.0
    assert (x.grad.item(), y.grad.item(), z.grad.item()) == (-4.0, -4.0, 3.0)
    assert q.grad.item() == -4.0  # add distributes the upstream gradient, mul swaps


SIGMOID_INPUTS = (2.0, -1.0, -3.0, -2.0, -3.0)  # w0, x0, w1, x1, w2
# The notes: out 0.73; gradients w0 -0.20, x0 0.39, w1 -0.39, x1 -0.59, w2 0.20.
NOTES_GRADS = (-0.20, 0.39, -0.39, -0.59, 0.20)


def _exact_sigmoid_circuit_grads():
    w0, x0, w1, x1, w2 = SIGMOID_INPUTS
    s = 1 / (1 + np.exp(-(w0 * x0 + w1 * x1 + w2)))
    local = s * (1 - s)
    return s, (local * x0, local * w0, local * x1, local * w1, local)


def test_sigmoid_circuit_from_primitive_gates(on_backend):
    w0, x0, w1, x1, w2 = leaves(*SIGMOID_INPUTS)
    dot = w0 * x0 + w1 * x1 + w2
    f = 1.0 / (1.0 + xg.exp(-dot))  # the notes' gates: *, +, *-1, exp, +1, 1/x
    f.backward()
    s, exact = _exact_sigmoid_circuit_grads()
    assert f.item() == pytest.approx(s, rel=1e-12) and round(f.item(), 2) == 0.73
    grads = [t.grad.item() for t in (w0, x0, w1, x1, w2)]
    np.testing.assert_allclose(grads, exact, rtol=1e-12)
    np.testing.assert_allclose(np.round(grads, 2), NOTES_GRADS, atol=1e-12)


def test_sigmoid_circuit_with_one_sigmoid_gate(on_backend):
    w0, x0, w1, x1, w2 = leaves(*SIGMOID_INPUTS)
    f = xg.sigmoid(w0 * x0 + w1 * x1 + w2)
    f.backward()
    assert f._node.name == "sigmoid"  # one node whose local gradient is (1 - s) s
    s, exact = _exact_sigmoid_circuit_grads()
    assert f.item() == pytest.approx(s, rel=1e-12)
    np.testing.assert_allclose([t.grad.item() for t in (w0, x0, w1, x1, w2)], exact, rtol=1e-12)


def test_gate_rules_of_the_notes():
    # the "1/x" gate at 1.37 with upstream 1.00 gives -1/1.37^2 = -0.53
    x = leaves(1.37)[0]
    (1.0 / x).backward()
    assert round(x.grad.item(), 2) == -0.53
    # max routes the gradient to the larger input only
    a, b = leaves(4.0, 2.0)
    (xg.maximum(a, b) * 2.0).backward()
    assert (a.grad.item(), b.grad.item()) == (2.0, 0.0)


def test_vectorized_example_norm_of_Wx(on_backend):
    # f = ||W x||^2, W = [[0.1, 0.5], [-0.3, 0.8]], x = [0.2, 0.4]
    W = xg.tensor([[0.1, 0.5], [-0.3, 0.8]], dtype="float64", requires_grad=True)
    x = xg.tensor([0.2, 0.4], dtype="float64", requires_grad=True)
    q = W @ x
    q.retain_grad()
    f = (q * q).sum()
    f.backward()
    np.testing.assert_allclose(q.numpy(), [0.22, 0.26], rtol=1e-12)
    np.testing.assert_allclose(q.grad.numpy(), [0.44, 0.52], rtol=1e-12)
    np.testing.assert_allclose(W.grad.numpy(), [[0.088, 0.176], [0.104, 0.208]], rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), [-0.112, 0.636], rtol=1e-12)


def _numpy_two_layer_steps(x, y, w1, w2, steps, lr):
    """The notes' 20-line two-layer net, verbatim apart from returning the losses."""
    w1, w2, losses = w1.copy(), w2.copy(), []
    for _ in range(steps):
        h = 1 / (1 + np.exp(-x.dot(w1)))
        y_pred = h.dot(w2)
        losses.append(np.square(y_pred - y).sum())
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h.T.dot(grad_y_pred)
        grad_h = grad_y_pred.dot(w2.T)
        grad_w1 = x.T.dot(grad_h * h * (1 - h))
        w1 -= lr * grad_w1
        w2 -= lr * grad_w2
    return losses, w1, w2


def test_two_layer_net_matches_hand_written_backprop():
    rng = np.random.default_rng(0)
    N, D_in, H, D_out = 64, 1000, 100, 10
    x, y = rng.random((N, D_in)), rng.standard_normal((N, D_out))
    w1_0, w2_0 = rng.standard_normal((D_in, H)), rng.standard_normal((H, D_out))
    steps, lr = 5, 1e-4
    ref_losses, ref_w1, ref_w2 = _numpy_two_layer_steps(x, y, w1_0, w2_0, steps, lr)

    X, Y = xg.tensor(x), xg.tensor(y)
    w1 = xg.tensor(w1_0, requires_grad=True)
    w2 = xg.tensor(w2_0, requires_grad=True)
    losses = []
    for _ in range(steps):
        h = xg.sigmoid(X @ w1)
        y_pred = h @ w2
        loss = ((y_pred - Y) ** 2).sum()
        losses.append(loss.item())
        w1.grad = w2.grad = None
        loss.backward()
        w1.data -= lr * w1.grad.data
        w2.data -= lr * w2.grad.data
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-10)
    np.testing.assert_allclose(w1.numpy(), ref_w1, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(w2.numpy(), ref_w2, rtol=1e-10, atol=1e-10)
    assert losses[-1] < losses[0]


def test_apple_shopping_graph():
    # Deep Learning from Scratch 5.1: 2 apples at 100 each, 10% tax -> 220; d/dapple 2.2, d/dnum 110, d/dtax 200
    apple, num, tax = leaves(100.0, 2.0, 1.1)
    price = apple * num * tax
    price.backward()
    assert price.item() == pytest.approx(220.0)
    np.testing.assert_allclose([apple.grad.item(), num.grad.item(), tax.grad.item()], [2.2, 110.0, 200.0], rtol=1e-12)
