"""Tape semantics: accumulation, fan-out, freeing, retain_graph, create_graph, xg.grad, no_grad, debug."""

import gc
import weakref

import numpy as np
import pytest

import xpgrad as xg


def leaf(values, dtype="float64"):
    return xg.tensor(values, dtype=dtype, requires_grad=True)


def test_fan_out_sums_gradients():
    x = leaf(3.0)
    y = x * x + x  # x used three times
    y.backward()
    assert x.grad.item() == 7.0


def test_gradients_accumulate_across_backward_calls_until_cleared():
    x = leaf([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
    x.grad = None
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


def test_square_routes_one_gradient_and_shared_buffers_stay_separate():
    x = leaf([1.5, -2.0])
    (x * x).sum().backward()  # one node whose two inputs are the same Tensor
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, -4.0])
    x.grad = None
    (x * x.detach()).sum().backward()  # the same array, but only the first operand is x
    np.testing.assert_array_equal(x.grad.numpy(), [1.5, -2.0])
    a = leaf([1.0, 3.0])
    b = xg.Tensor(a.data, requires_grad=True)  # another leaf over the same buffer
    (a * b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 3.0])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 3.0])


def test_interior_gradients_only_with_retain_grad():
    x = leaf(2.0)
    h = x * 3.0
    k = x * 4.0
    k.retain_grad()
    (h * k).backward()
    assert h.grad is None
    assert k.grad.item() == 6.0
    assert not h.is_leaf and x.is_leaf


def test_second_backward_through_freed_graph_raises_and_retain_graph_allows_it():
    x = leaf(2.0)
    y = xg.exp(x) * x
    y.backward()
    with pytest.raises(xg.GraphFreedError, match="'mul'.*retain_graph=True"):
        y.backward()
    x.grad = None
    z = xg.exp(x) * x
    z.backward(retain_graph=True)
    z.backward()
    assert x.grad.item() == pytest.approx(2 * 3 * np.exp(2.0))


def test_backward_on_non_scalar_needs_grad_of_matching_shape():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    with pytest.raises(xg.ShapeError, match=r"backward: output has shape \(2,\)"):
        y.backward()
    with pytest.raises(xg.ShapeError, match=r"grad has shape \(3,\) but the output has shape \(2,\)"):
        y.backward(np.ones(3))
    y.backward(np.array([1.0, -1.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, -2.0])


def test_no_grad_records_nothing():
    x = leaf(1.0)
    with xg.no_grad():
        y = x * 2.0
    assert y._node is None and not y.requires_grad
    assert xg.is_grad_enabled()
    with pytest.raises(xg.NoGraphError, match="does not require grad"):
        y.backward()


def test_grad_switches_nest_restore_on_errors_and_decorate():
    x = leaf(1.0)
    switch_off = xg.no_grad()

    @switch_off
    def depth_first(n):
        assert not xg.is_grad_enabled()
        with xg.set_grad_enabled(True):
            assert (x * 2.0).requires_grad
        return depth_first(n - 1) if n else x * 2.0

    assert depth_first(3)._node is None  # one decorator object entered four times, nested
    assert xg.is_grad_enabled()
    with pytest.raises(ZeroDivisionError):
        with xg.no_grad():
            1 / 0  # noqa: B018 - the division raises inside the context manager
    assert xg.is_grad_enabled() and (x * 2.0).requires_grad


def test_graph_is_freed_by_reference_counting_alone():
    gc.collect()
    gc.disable()
    try:
        x = leaf(np.ones(1000))
        h = xg.exp(x) * 2.0
        node_ref = weakref.ref(h._node)
        h_ref = weakref.ref(h)
        loss = (h * h).sum()
        del h
        assert h_ref() is not None  # held by the consumer node while the graph lives
        loss.backward()
        del loss
        assert h_ref() is None and node_ref() is None
    finally:
        gc.enable()


def test_graph_dropped_without_backward_is_freed_too():
    gc.disable()
    try:
        x = leaf(np.ones(10))
        y = xg.sigmoid(x * 2.0).sum()
        node_ref = weakref.ref(y._node)
        del y
        assert node_ref() is None
    finally:
        gc.enable()


def test_deep_chain_backpropagates_without_recursion():
    x = leaf(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad.item() == 1.0
    del y  # freeing a 200k-node chain must not recurse either


def test_grad_returns_tuple_and_leaves_dot_grad_alone():
    x, w = leaf([1.0, 2.0]), leaf([3.0, -1.0])
    unused = leaf(5.0)
    y = (x * w).sum()
    gx, gw, gu = xg.grad(y, [x, w, unused])
    np.testing.assert_array_equal(gx.numpy(), [3.0, -1.0])
    np.testing.assert_array_equal(gw.numpy(), [1.0, 2.0])
    assert gu.item() == 0.0
    assert x.grad is None and w.grad is None


def test_grad_of_interior_tensor():
    x = leaf(3.0)
    h = x * x
    y = h * 2.0 + h
    (gh,) = xg.grad(y, [h])
    assert gh.item() == 3.0


@pytest.mark.parametrize(
    "fn,second",
    [
        (lambda t: xg.sigmoid(t), lambda v: (s := 1 / (1 + np.exp(-v))) * (1 - s) * (1 - 2 * s)),
        (lambda t: xg.tanh(t), lambda v: -2 * np.tanh(v) * (1 - np.tanh(v) ** 2)),
        (lambda t: xg.exp(t) * t, lambda v: np.exp(v) * (v + 2)),
        (lambda t: t**3, lambda v: 6 * v),
        (lambda t: xg.log(t * t + 1.0), lambda v: (2 - 2 * v**2) / (v**2 + 1) ** 2),
    ],
)
def test_create_graph_gives_second_derivatives(fn, second):
    v = np.array([-1.3, 0.2, 0.9])
    x = leaf(v)
    (g,) = xg.grad(fn(x).sum(), [x], create_graph=True)
    assert g.requires_grad
    (g2,) = xg.grad(g.sum(), [x])
    np.testing.assert_allclose(g2.numpy(), second(v), rtol=1e-10)


def test_backward_create_graph_then_differentiate_grad():
    x = leaf(2.0)
    y = x**3
    y.backward(create_graph=True)
    gx = x.grad
    assert gx.item() == 12.0 and gx.requires_grad
    x.grad = None
    gx.backward()
    assert x.grad.item() == 12.0  # d/dx 3x^2 = 6x


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(xg.DTypeError, match="requires_grad: only floating-point tensors.*int64"):
        xg.tensor([1, 2, 3], requires_grad=True)


def test_debug_mode_names_op_and_user_line():
    xg.set_debug(True)
    try:
        x = leaf([1.0, -1.0])
        with pytest.raises(xg.NonFiniteError, match=r"log forward output contains NaN.*test_tape\.py:\d+"):
            xg.log(x)
        y = leaf([0.0])
        z = xg.sqrt(y)  # forward is fine (0), its gradient 1/(2*0) is infinite
        with pytest.raises(xg.NonFiniteError, match="gradient"):
            (z * 1.0).sum().backward()
    finally:
        xg.set_debug(False)
    xg.log(leaf([-1.0]))  # off again: no check


def test_dtype_promotion_follows_array_api():
    a = xg.tensor([1.0], dtype="float32")
    b = xg.tensor([1.0], dtype="float64")
    assert (a + b).dtype == np.float64
    assert (a * 2.0).dtype == np.float32
    assert (xg.tensor([1, 2]) + xg.tensor([1, 2])).dtype == np.int64


def test_numpy_array_on_the_left_defers_to_tensor():
    x = leaf([1.0, 2.0])
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, xg.Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
