"""CPU Numba kernels (xpgrad.kernels.cpu) against the plain NumPy versions in kernels.reference.

Sizes 1, 7, 1023 and 10**5 (elements for the elementwise kernels, rows x columns below for the
2-D ones), float32 and float64, contiguous and strided (non-contiguous) inputs and outputs.
The array factories and tolerances are shared with test_kernels_cuda.py.
"""

import subprocess
import sys

import numba
import numpy as np
import pytest

from xpgrad.kernels import cpu
from xpgrad.kernels import reference as ref
from xpgrad.kernels._fastmath import exp as fast_exp

DTYPES = [np.float32, np.float64]
LAYOUTS = ["contiguous", "strided"]
SHAPES_2D = {1: (1, 1), 7: (7, 5), 1023: (1023, 10), 10**5: (100, 1000)}
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def make(shape, dtype, layout, seed=0, low=-2.0, high=2.0):
    """Random array; "strided" is a non-contiguous view (every other element of the last axis)."""
    rng = np.random.default_rng(seed)
    if layout == "contiguous":
        return rng.uniform(low, high, shape).astype(dtype)
    wide = rng.uniform(low, high, shape[:-1] + (2 * shape[-1],)).astype(dtype)
    return wide[..., ::2]


def out_buffer(shape, dtype, layout):
    """(out, outside): an output array in `layout` (NaN-filled) and the NaN elements around it
    that a write-back must leave alone (empty for a contiguous out)."""
    if layout == "contiguous":
        out = np.full(shape, np.nan, dtype)
        return out, out[..., :0]
    wide = np.full(shape[:-1] + (2 * shape[-1],), np.nan, dtype)
    return wide[..., ::2], wide[..., 1::2]


def labels_for(n, c, seed=1):
    return np.random.default_rng(seed).integers(0, c, n)


def close(actual, expected, dtype):
    np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype])


# ---- the kernel checks, parametrized over a kernel module (CPU here, CUDA in the CUDA tests) ----
def check_sigmoid_backward(k, size, dtype, layout, **kw):
    y, dy = make((size,), dtype, layout, 0, 0, 1), make((size,), dtype, layout, 1)
    close(k.sigmoid_backward(y, dy, **kw), ref.sigmoid_backward(y, dy), dtype)
    out, outside = out_buffer((size,), dtype, layout)
    assert k.sigmoid_backward(y, dy, out, **kw) is out
    close(out, ref.sigmoid_backward(y, dy), dtype)
    assert np.isnan(outside).all()


def check_bias_act_backward(k, shape, dtype, layout, activation, **kw):
    y = make(shape, dtype, layout, 0, 0 if activation == "sigmoid" else -1, 1)
    y[y < -0.5] = 0  # relu'(0) = 0
    dy = make(shape, dtype, layout, 1)
    expected_dz, _ = ref.bias_act_backward(y, dy, activation)
    dz, db = k.bias_act_backward(y, dy, activation, **kw)
    close(dz, expected_dz, dtype)
    assert db.dtype == dtype and db.shape == shape[1:]
    close(db, expected_dz.astype(np.float64).sum(axis=0), dtype)
    out, outside = out_buffer(shape, dtype, layout)
    assert k.bias_act_backward(y, dy, activation, out, **kw)[0] is out
    close(out, expected_dz, dtype)
    assert np.isnan(outside).all()


def check_bias_act_forward(k, shape, dtype, layout, activation, with_bias=True, **kw):
    z = make(shape, dtype, layout, 0, -30, 30)
    b = make(shape[-1:], dtype, layout, 1) if with_bias else None
    expected = ref.bias_act_forward(z, b, activation)
    close(k.bias_act_forward(z, b, activation, **kw), expected, dtype)
    assert k.bias_act_forward(z, b, activation, z, **kw) is z  # in place
    close(z, expected, dtype)


def check_softmax_xent_forward(k, shape, dtype, layout, **kw):
    logits, labels = make(shape, dtype, layout, 0, -20, 20), labels_for(*shape)
    expected_loss, expected_probs = ref.softmax_xent_forward(logits, labels)
    loss, probs = k.softmax_xent_forward(logits, labels, **kw)
    assert loss.shape == () and loss.dtype == dtype
    close(probs, expected_probs, dtype)
    close(loss, expected_loss, dtype)
    out, outside = out_buffer(shape, dtype, layout)
    assert k.softmax_xent_forward(logits, labels, out, **kw)[1] is out
    close(out, expected_probs, dtype)
    assert np.isnan(outside).all()


def check_softmax_xent_backward(k, shape, dtype, layout, **kw):
    probs, labels = make(shape, dtype, layout, 0, 0, 1), labels_for(*shape)
    expected = ref.softmax_xent_backward(probs, labels, 0.25)
    close(k.softmax_xent_backward(probs, labels, 0.25, **kw), expected, dtype)
    assert k.softmax_xent_backward(probs, labels, 0.25, probs, **kw) is probs  # in place
    close(probs, expected, dtype)


def check_softmax_xent_rejects_bad_labels(k, **kw):
    """A label outside [0, C) raises IndexError naming it and its row (never read through)."""
    logits = make((7, 5), np.float32, "contiguous", 0)
    for bad in (5, -1, 2**40):
        labels = labels_for(7, 5)
        labels[3] = bad
        with pytest.raises(IndexError, match=rf"softmax_xent_forward: labels must lie in \[0, 5\), got {bad} in row 3"):
            k.softmax_xent_forward(logits, labels, **kw)


def check_softmax_xent_backward_skips_bad_labels(k, **kw):
    """A label outside [0, C) is never indexed with: its row is probs * scale."""
    probs, labels = make((3, 4), np.float64, "contiguous", 0, 0, 1), np.array([1, 4, -1])
    expected = probs * 0.5
    expected[0, 1] -= 0.5
    close(k.softmax_xent_backward(probs, labels, 0.5, **kw), expected, np.float64)


def check_sgd_update(k, size, dtype, layout, momentum, nesterov, **kw):
    param, grad = make((size,), dtype, layout, 0), make((size,), dtype, layout, 1)
    velocity = make((size,), dtype, layout, 2, 0, 0) if momentum else None
    expected_param, expected_velocity = param.copy(), np.zeros(size, dtype)
    for _ in range(3):
        k.sgd_update(param, grad, velocity, 0.1, momentum, 0.01, nesterov, **kw)
        ref.sgd_update(expected_param, grad, expected_velocity, 0.1, momentum, 0.01, nesterov)
    close(param, expected_param, dtype)
    if momentum:
        close(velocity, expected_velocity, dtype)


def check_adam_update(k, size, dtype, layout, **kw):
    param, grad = make((size,), dtype, layout, 0), make((size,), dtype, layout, 1)
    m, v = make((size,), dtype, layout, 2, 0, 0), make((size,), dtype, layout, 3, 0, 0)
    param_ref, m_ref, v_ref = param.copy(), np.zeros(size, dtype), np.zeros(size, dtype)
    for step in (1, 2, 3):
        k.adam_update(param, grad, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.01, step, **kw)
        ref.adam_update(param_ref, grad, m_ref, v_ref, 1e-2, 0.9, 0.999, 1e-8, 0.01, step)
    for actual, expected in ((param, param_ref), (m, m_ref), (v, v_ref)):
        close(actual, expected, dtype)


def check_scatter_add(k, shape, dtype, layout, **kw):
    rows = max(1, shape[0] // 3)
    values = make(shape, dtype, layout, 0)
    indices = np.random.default_rng(1).integers(-rows, rows, shape[0])  # repeats and negatives
    target = make((rows,) + shape[1:], dtype, layout, 2)
    expected = target.copy()
    ref.scatter_add(expected, indices, values)
    k.scatter_add(target, indices, values, **kw)
    close(target, expected, dtype)


# ---- CPU tests --------------------------------------------------------------------------------
CPU_SIZES = [1, 7, 1023, 10**5]
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
layouts = pytest.mark.parametrize("layout", LAYOUTS)
sizes = pytest.mark.parametrize("size", CPU_SIZES)


@dtypes
@layouts
@sizes
def test_sigmoid_backward(size, dtype, layout):
    check_sigmoid_backward(cpu, size, dtype, layout)


@dtypes
@layouts
@sizes
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_bias_act_backward(size, dtype, layout, activation):
    check_bias_act_backward(cpu, SHAPES_2D[size], dtype, layout, activation)


@dtypes
@layouts
@sizes
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "relu"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_bias_act_forward(size, dtype, layout, activation, with_bias):
    check_bias_act_forward(cpu, SHAPES_2D[size], dtype, layout, activation, with_bias)


@dtypes
@layouts
@sizes
def test_softmax_xent_forward(size, dtype, layout):
    check_softmax_xent_forward(cpu, SHAPES_2D[size], dtype, layout)


@dtypes
@layouts
@sizes
def test_softmax_xent_backward(size, dtype, layout):
    check_softmax_xent_backward(cpu, SHAPES_2D[size], dtype, layout)


@dtypes
@layouts
@sizes
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_update(size, dtype, layout, momentum, nesterov):
    check_sgd_update(cpu, size, dtype, layout, momentum, nesterov)


@dtypes
@layouts
@sizes
def test_adam_update(size, dtype, layout):
    check_adam_update(cpu, size, dtype, layout)


@dtypes
@layouts
@sizes
def test_scatter_add(size, dtype, layout):
    check_scatter_add(cpu, SHAPES_2D[size], dtype, layout)


@dtypes
def test_elementwise_kernels_on_transposed_2d_arrays(dtype):
    y, dy = make((7, 5), dtype, "contiguous", 0, 0, 1).T, make((7, 5), dtype, "contiguous", 1).T
    close(cpu.sigmoid_backward(y, dy), ref.sigmoid_backward(y, dy), dtype)
    param, velocity = make((7, 5), dtype, "contiguous", 2).T, np.zeros((7, 5), dtype).T
    expected_param, expected_velocity = param.copy(), velocity.copy()
    cpu.sgd_update(param, dy, velocity, 0.1, 0.9, 0.01, True)
    ref.sgd_update(expected_param, dy, expected_velocity, 0.1, 0.9, 0.01, True)
    close(param, expected_param, dtype)
    close(velocity, expected_velocity, dtype)


@dtypes
def test_elementwise_kernels_on_3d_arrays_and_any_scalar_types(dtype):
    """Contiguous N-d arrays go to the kernels unflattened; NumPy or Python scalars alike."""
    y, dy = make((3, 4, 5), dtype, "contiguous", 0, 0, 1), make((3, 4, 5), dtype, "contiguous", 1)
    close(cpu.sigmoid_backward(y, dy, np.empty_like(y)), ref.sigmoid_backward(y, dy), dtype)
    for momentum in (0, 0.9):
        param, velocity = make((3, 4, 5), dtype, "contiguous", 2), np.zeros((3, 4, 5), dtype)
        expected_param, expected_velocity = param.copy(), velocity.copy()
        cpu.sgd_update(
            param, dy, velocity if momentum else None, np.float64(0.1), momentum, np.float32(0.25), np.bool_(momentum)
        )
        ref.sgd_update(expected_param, dy, expected_velocity, 0.1, momentum, 0.25, bool(momentum))
        close(param, expected_param, dtype)
        close(velocity, expected_velocity, dtype)
    param, m, v = make((3, 4, 5), dtype, "contiguous", 2), np.zeros((3, 4, 5), dtype), np.zeros((3, 4, 5), dtype)
    param_ref, m_ref, v_ref = param.copy(), m.copy(), v.copy()
    cpu.adam_update(param, dy, m, v, np.float64(1e-2), 0.9, 0.999, 1e-8, 0, 2)
    ref.adam_update(param_ref, dy, m_ref, v_ref, 1e-2, 0.9, 0.999, 1e-8, 0.0, 2)
    for actual, expected in ((param, param_ref), (m, m_ref), (v, v_ref)):
        close(actual, expected, dtype)


def test_elementwise_kernels_on_0d_arrays_and_numpy_scalars():
    """0-d arrays and NumPy scalars (what NumPy returns for 0-d arithmetic) take the general path."""
    y, dy = np.float64(0.25), np.asarray(2.0)
    close(cpu.sigmoid_backward(y, dy), ref.sigmoid_backward(y, dy), np.float64)
    param, velocity = np.asarray(1.0), np.asarray(0.0)
    cpu.sgd_update(param, np.float64(0.5), None, 0.1)
    cpu.sgd_update(param, np.float64(0.5), velocity, 0.1, 0.5)
    close(param, 0.9, np.float64)
    close(velocity, 0.5, np.float64)


def test_softmax_xent_forward_rejects_bad_labels_before_writing():
    check_softmax_xent_rejects_bad_labels(cpu)
    logits = make((4, 3), np.float64, "contiguous", 0)
    kept = logits.copy()
    with pytest.raises(IndexError, match="got 3 in row 2"):
        cpu.softmax_xent_forward(logits, np.array([0, 1, 3, 3]), logits)  # in place: nothing written
    np.testing.assert_array_equal(logits, kept)
    strided, _ = out_buffer((4, 3), np.float64, "strided")
    with pytest.raises(IndexError, match="got -2 in row 0"):
        cpu.softmax_xent_forward(logits, np.array([-2, 0, 0, 0], np.int32), strided)  # the general path
    assert np.isnan(strided).all()


def test_softmax_xent_backward_skips_bad_labels():
    check_softmax_xent_backward_skips_bad_labels(cpu)


def test_scatter_add_1d_and_3d_targets():
    target, expected = np.zeros(4), np.zeros(4)
    indices = np.array([3, 0, 3, -4], dtype=np.int32)
    cpu.scatter_add(target, indices, np.arange(4.0))
    ref.scatter_add(expected, indices, np.arange(4.0))
    np.testing.assert_array_equal(target, expected)
    target, expected = np.zeros((3, 2, 2), np.float32), np.zeros((3, 2, 2), np.float32)
    values = make((5, 2, 2), np.float32, "contiguous")
    cpu.scatter_add(target, np.array([2, 2, 0, 1, 2]), values)
    ref.scatter_add(expected, np.array([2, 2, 0, 1, 2]), values)
    close(target, expected, np.float32)


def test_scatter_add_rejects_out_of_range_before_writing():
    target = np.zeros((3, 2))
    with pytest.raises(IndexError, match="index 3 is out of bounds"):
        cpu.scatter_add(target, np.array([0, 3]), np.ones((2, 2)))
    assert not target.any()


def test_softmax_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [-1e30, 5e29, 1e30]], np.float32)
    loss, probs = cpu.softmax_xent_forward(logits, np.array([0, 1]))
    np.testing.assert_allclose(probs, [[1, 0, 0], [0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(loss, 5e29 / 2, rtol=1e-5)


def test_sigmoid_backward_in_place():
    y, dy = make((1023,), np.float64, "contiguous", 0, 0, 1), make((1023,), np.float64, "contiguous", 1)
    expected = ref.sigmoid_backward(y, dy)
    assert cpu.sigmoid_backward(y, dy, dy) is dy
    close(dy, expected, np.float64)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: cpu.sigmoid_backward(np.ones(3, np.float32), np.ones(3)), TypeError),
        (lambda: cpu.sigmoid_backward(np.ones(3), np.ones(4)), ValueError),
        (lambda: cpu.sigmoid_backward(np.ones(3, np.int64), np.ones(3, np.int64)), TypeError),
        (lambda: cpu.bias_act_backward(np.ones((2, 2)), np.ones((2, 2)), "identity"), ValueError),
        (lambda: cpu.bias_act_backward(np.ones(2), np.ones(2), "relu"), ValueError),
        (lambda: cpu.bias_act_forward(np.ones((2, 3)), np.ones(2), "relu"), ValueError),
        (lambda: cpu.bias_act_forward(np.ones((2, 3)), np.ones(3), "tanh"), ValueError),
        (lambda: cpu.softmax_xent_forward(np.ones((2, 3)), np.zeros(2)), TypeError),
        (lambda: cpu.softmax_xent_forward(np.ones((2, 3)), np.zeros(3, np.int64)), ValueError),
        (lambda: cpu.softmax_xent_backward(np.ones((2, 3)), np.zeros((2, 1), np.int64), 1.0), ValueError),
        (lambda: cpu.sgd_update(np.ones(3), np.ones(3), None, 0.1, 0.9, 0.0, False), ValueError),
    ],
)
def test_bad_arguments_raise(call, error):
    with pytest.raises(error):
        call()


@pytest.fixture
def parallel_kernels():
    """The parallel kernels for every size, on 2 Numba threads (restored afterwards)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread here, so the parallel kernels never run")
    threads = numba.get_num_threads()
    numba.set_num_threads(2)
    previous = cpu.set_parallel(0)
    yield
    cpu.set_parallel(previous)
    numba.set_num_threads(threads)


@dtypes
def test_parallel_kernels_match_reference(parallel_kernels, dtype):
    for size in (7, 1023):
        shape = SHAPES_2D[size]
        check_sigmoid_backward(cpu, size, dtype, "contiguous")
        check_bias_act_backward(cpu, shape, dtype, "contiguous", "sigmoid")
        check_bias_act_forward(cpu, shape, dtype, "contiguous", "sigmoid")
        check_bias_act_forward(cpu, shape, dtype, "contiguous", "relu", with_bias=False)
        check_softmax_xent_forward(cpu, shape, dtype, "contiguous")
        check_softmax_xent_backward(cpu, shape, dtype, "contiguous")
        check_sgd_update(cpu, size, dtype, "contiguous", 0.9, True)
        check_adam_update(cpu, size, dtype, "contiguous")


def test_runner_picks_parallel_only_above_threshold(parallel_kernels):
    calls = []
    run = cpu._runner(lambda a: calls.append("serial"), lambda a, parts: calls.append(f"parallel/{parts}"))
    cpu.set_parallel(100)
    run(np.ones(99))
    run(np.ones(100))
    numba.set_num_threads(1)
    run(np.ones(100))
    cpu.set_parallel(None)
    run(np.ones(10**6))
    assert calls == ["serial", "parallel/2", "serial", "serial"]


@numba.njit
def _exp_loop(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = fast_exp(x[i])
    return out


@dtypes
def test_fast_exp_within_one_ulp(dtype):
    info = np.finfo(dtype)
    lo, hi = (-110.0, 90.0) if dtype == np.float32 else (-750.0, 712.0)
    x = np.concatenate([np.linspace(lo, hi, 200_001), [np.nan, np.inf, -np.inf, 0.0]]).astype(dtype)
    got = _exp_loop(x)
    exact = np.exp(x.astype(np.longdouble))
    top = np.longdouble(info.max)
    normal = (exact > info.tiny) & (exact < top * (1 - info.eps))
    ulps = np.abs(got[normal] - exact[normal]) / (exact[normal] * info.eps)
    assert ulps.max() < 1.0
    tiny = np.isfinite(x) & (exact <= info.tiny)  # subnormal results and underflow to 0
    np.testing.assert_allclose(got[tiny], exact[tiny].astype(dtype), rtol=1e-2, atol=float(info.smallest_subnormal))
    assert np.isinf(got[np.isfinite(x) & (exact > top * (1 + info.eps))]).all()
    assert np.isnan(got[-4]) and got[-3] == np.inf and got[-2] == 0 and got[-1] == 1


def test_importing_kernels_does_not_import_numba_cuda():
    code = "import sys, xpgrad.kernels; assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compiled_kernels_are_cached_outside_the_package_folder():
    """A cache inside an installed package outlives `pip uninstall` and then shadows the next
    install (the README's two commands in order); the kernels cache in the user's folder."""
    import os

    import xpgrad
    from xpgrad.bench_kernels import _triad
    from xpgrad.kernels import cpu

    package = os.path.dirname(os.path.abspath(xpgrad.__file__))
    kernels_dir = os.path.dirname(os.path.abspath(cpu.__file__))
    for dispatcher in (cpu._act_grad, cpu._sgd_step, _triad):
        folder = os.path.abspath(dispatcher._cache._cache_path)
        assert not folder.startswith(package) and not folder.startswith(kernels_dir), folder
