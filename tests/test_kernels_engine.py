"""Engine-level: gradients through the ops with the Numba kernels on equal those with kernels off."""

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import buffers
from xpgrad.fns import kernels_enabled, use_kernels


def _grads(fn, arrays, kernels: bool):
    with use_kernels(kernels):
        leaves = [xg.tensor(a, requires_grad=True) for a in arrays]
        out = fn(*leaves)
        out.backward(np.ones(out.shape, dtype=arrays[0].dtype) if out.ndim else None)
        return out.numpy().copy(), [t.grad.numpy().copy() for t in leaves]


def _relu_of_held_linear(x, W, b):
    z = xg.linear(x, W, b)  # held in a variable: eager fusion leaves it a node of its own
    return xg.relu(z)


CASES = {
    "sigmoid": (lambda x: xg.sigmoid(x), [(7, 1023)]),
    "sigmoid_3d": (lambda x: xg.sigmoid(x) * 2.0, [(2, 3, 5)]),
    "linear_relu": (lambda x, W, b: xg.linear(x, W, b, activation="relu"), [(33, 17), (17, 9), (9,)]),
    "linear_sigmoid": (lambda x, W, b: xg.linear(x, W, b, activation="sigmoid"), [(33, 17), (17, 9), (9,)]),
    "linear_sigmoid_no_bias": (lambda x, W: xg.linear(x, W, activation="sigmoid"), [(5, 4), (4, 3)]),
    "linear_relu_3d": (lambda x, W, b: xg.linear(x, W, b, activation="relu"), [(2, 5, 4), (4, 3), (3,)]),
    "softmax_cross_entropy": (lambda z: xg.softmax_cross_entropy(z, xg.tensor(np.arange(13) % 4)), [(13, 4)]),
    "relu": (lambda x: xg.relu(x) * 2.0, [(7, 1023)]),
    "relu_pooled": (lambda x: xg.relu(x) * 2.0, [(256, 1025)]),  # forward and backward in pooled buffers
    "relu_3d": (lambda x: xg.relu(x) * 2.0, [(2, 3, 5)]),
    "relu_of_held_linear": (lambda x, W, b: _relu_of_held_linear(x, W, b), [(33, 17), (17, 9), (9,)]),
    "getitem_rows": (lambda x: x[xg.tensor(np.array([3, 0, 3, 1, 3]))] * 2.0, [(4, 6)]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_kernels_on_equal_kernels_off(name, dtype):
    fn, shapes = CASES[name]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    out_on, grads_on = _grads(fn, arrays, True)
    out_off, grads_off = _grads(fn, arrays, False)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out_on, out_off, rtol=tol, atol=tol)
    for on, off in zip(grads_on, grads_off):
        np.testing.assert_allclose(on, off, rtol=tol, atol=tol)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_fused_linear_matches_separate_ops(activation):
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    fused = _grads(lambda x, W, b: xg.linear(x, W, b, activation=activation), [x, W, b], True)
    act = xg.relu if activation == "relu" else xg.sigmoid
    separate = _grads(lambda x, W, b: act(xg.linear(x, W, b)), [x, W, b], False)
    np.testing.assert_allclose(fused[0], separate[0], rtol=1e-12)
    for a, c in zip(fused[1], separate[1]):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-14)


def test_pooled_gradient_buffers_never_alias_a_live_gradient():
    n = buffers.MIN_BYTES // 4 + 1  # large enough to be pooled (float32)
    rng = np.random.default_rng(2)
    x = xg.tensor(rng.standard_normal(n).astype(np.float32), requires_grad=True)
    xg.sigmoid(x).backward(np.ones(n, np.float32))
    first = x.grad  # keep it alive: the next backward must not write into it
    kept = first.numpy().copy()
    x.grad = None
    xg.sigmoid(x * 2.0).backward(np.ones(n, np.float32))
    np.testing.assert_array_equal(first.numpy(), kept)
    assert not np.shares_memory(first.numpy(), x.grad.numpy())
    del first
    x.grad = None
    xg.sigmoid(x).backward(np.ones(n, np.float32))  # now the first buffer is free again
    np.testing.assert_allclose(x.grad.numpy(), kept, rtol=1e-6)


def test_large_matrix_products_use_pooled_buffers_without_aliasing():
    rows = buffers.MIN_BYTES // (4 * 64) + 1  # (rows, 64) float32 outputs: just over the pooling size
    rng = np.random.default_rng(3)
    x = xg.tensor(rng.standard_normal((rows, 32)).astype(np.float32))
    W = xg.tensor(rng.standard_normal((32, 64)).astype(np.float32), requires_grad=True)
    first = xg.linear(x, W)
    kept = first.numpy().copy()
    second = xg.linear(x * 2.0, W)  # `first` is alive: its buffer must not be handed out again
    assert not np.shares_memory(first.numpy(), second.numpy())
    np.testing.assert_array_equal(first.numpy(), kept)
    np.testing.assert_allclose(second.numpy(), 2 * kept, rtol=1e-5, atol=1e-5)
    del first, second
    third = xg.linear(x, W)  # both buffers are free again: one is reused
    assert any(third.data is b for b in buffers._pool[((rows, 64), "<f4")])
    np.testing.assert_array_equal(third.numpy(), kept)
    (gx,) = xg.grad((xg.linear(x, W) * 3.0).sum(), [W])
    np.testing.assert_allclose(gx.numpy(), 3.0 * x.numpy().T @ np.ones((rows, 64), np.float32), rtol=1e-4)


def test_pool_hands_out_the_most_recently_used_free_buffer():
    """Of the free buffers, the one handed out last comes back first (its memory is likeliest in cache)."""
    shape = (buffers.MIN_BYTES // 4 + 3,)  # a shape no other test pools
    first = buffers.empty(shape, np.dtype(np.float32))
    second = buffers.empty(shape, np.dtype(np.float32))
    assert not np.shares_memory(first, second)
    first_id, second_id = id(first), id(second)
    del first, second
    again = buffers.empty(shape, np.dtype(np.float32))
    assert id(again) == second_id
    other = buffers.empty(shape, np.dtype(np.float32))  # `again` is alive: the other free one
    assert id(other) == first_id
    del again, other  # both free; `other` (the first buffer) was handed out last
    assert id(buffers.empty(shape, np.dtype(np.float32))) == first_id


@pytest.mark.parametrize("kernels", [True, False])
def test_softmax_cross_entropy_checks_the_label_range_once(monkeypatch, kernels):
    """With the kernels on the forward kernel checks the labels as it reads them (min/max only
    for the error message); with them off `_labels` checks first. The same LabelError either way."""
    from xpgrad.fns import KernelFns

    calls = []
    min_max = KernelFns.min_max
    monkeypatch.setattr(KernelFns, "min_max", lambda self, a: calls.append(a.shape) or min_max(self, a))
    logits = xg.tensor(np.zeros((4, 3), np.float32), requires_grad=True)
    with use_kernels(kernels):
        xg.softmax_cross_entropy(logits, xg.tensor(np.array([0, 2, 1, 2]))).backward()
        assert calls == ([] if kernels else [(4,)])
        calls.clear()
        with pytest.raises(xg.LabelError) as info:
            xg.softmax_cross_entropy(logits, xg.tensor(np.array([0, 3, -1, 2])))
    assert str(info.value) == "softmax_cross_entropy: labels must lie in [0, 3) for 3 classes, got min -1 and max 3"
    assert info.value.__suppress_context__  # not shown as raised while handling the kernel's IndexError
    assert calls == [(4,)]


def test_xpgrad_kernels_env_switch_is_read_at_import():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "from xpgrad.fns import kernels_enabled; print(kernels_enabled())"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "XPGRAD_KERNELS": "0"},
    )
    assert out.stdout.strip() == "False", out.stderr
    assert kernels_enabled() in (True, False)


def test_cuda_kernel_table_matches_cpu_table():
    """The engine's CuPy table (KernelFns over xpgrad.kernels.cuda) gives the CPU table's results.

    Without a GPU the CUDA kernels run under the Numba simulator on NumPy arrays; on a GPU host the
    real CuPy path is covered by tests/test_parity.py.
    """
    import array_api_compat.numpy as xp

    from xpgrad import kernels
    from xpgrad.fns import KernelFns

    cpu = KernelFns(xp, kernels, np.empty_like)
    gpu = KernelFns(xp, kernels.cuda, np.empty_like)
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5, 7)).astype(np.float32)
    y = 1 / (1 + np.exp(-z))
    gy = rng.standard_normal((5, 7)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    labels = np.array([0, 6, 3, 3, 1])
    checks = [
        (lambda f: f.sigmoid_grad(y, gy)),
        (lambda f: f.sigmoid(z)),
        (lambda f: f.bias_act(z.copy(), b, "relu")),
        (lambda f: f.bias_act_grad("relu", np.maximum(z, 0), gy, True)[1]),
        (lambda f: f.softmax_xent(z, labels)[1]),
        (lambda f: f.softmax_xent_grad(y / y.sum(1, keepdims=True), labels, np.array(1.0), 5)),  # scale 0.2
        (lambda f: f.index_grad(gy, np.array([1, 1, 4, 0, 1]), (6, 7))),
    ]
    for check in checks:
        np.testing.assert_allclose(check(gpu), check(cpu), rtol=1e-5, atol=1e-6)


def test_kernel_table_fast_and_checked_paths_agree_on_any_layout():
    """Contiguous arrays take the kernels' unchecked entries; strided and 0-d ones the checked
    kernels (which copy as needed): the same values either way."""
    from xpgrad.autograd import array_fns

    rng = np.random.default_rng(4)
    y = (1 / (1 + np.exp(-rng.standard_normal((6, 8))))).astype(np.float32)
    gy = rng.standard_normal((6, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    F = array_fns(y)
    for yy, gg in [(y, gy), (y.T, gy.T), (y[:, ::2], gy[:, ::2]), (y[0, 0].reshape(()), gy[0, 0].reshape(()))]:
        np.testing.assert_allclose(F.sigmoid_grad(yy, gg), gg * yy * (1 - yy), rtol=1e-6)
    for z in (gy, gy.T.copy().T):  # C-contiguous, then an F-ordered copy
        np.testing.assert_allclose(F.bias_act(z.copy(), b, "relu"), np.maximum(z + b, 0), rtol=1e-6)
        np.testing.assert_allclose(F.bias_act(z.copy(), b, "sigmoid"), 1 / (1 + np.exp(-(z + b))), rtol=1e-5)
