"""CUDA kernels (xpgrad.kernels.cuda) against kernels.reference, with the checks of the CPU tests.

Without an NVIDIA driver, tests/conftest.py has set NUMBA_ENABLE_CUDASIM=1 before anything
imports numba.cuda, so the kernels run under Numba's CUDA simulator on NumPy arrays with a tiny
grid (the simulator costs ~0.1 ms per launched thread). With a GPU the same checks run on the
device with the default grids (Numba copies the NumPy arrays), and the CuPy tests run too.
numba.cuda is imported only by the `kc` fixture.
"""

import numpy as np
import pytest
from conftest import HAS_GPU, SIMULATOR
from test_kernels_cpu import (
    DTYPES,
    LAYOUTS,
    check_adam_update,
    check_bias_act_backward,
    check_bias_act_forward,
    check_scatter_add,
    check_sgd_update,
    check_sigmoid_backward,
    check_softmax_xent_backward,
    check_softmax_xent_backward_skips_bad_labels,
    check_softmax_xent_forward,
    check_softmax_xent_rejects_bad_labels,
)

from xpgrad.kernels import reference as ref

SIZES = [1, 7, 300]
SHAPES_2D = {1: (1, 1), 7: (7, 5), 300: (6, 50)}
GRID = {"grid": (2, 32)} if SIMULATOR else {}
SOFTMAX_GRID = {"grid": (2, 8)} if SIMULATOR else {}  # few threads: the simulator's barriers are slow
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
layouts = pytest.mark.parametrize("layout", LAYOUTS)
sizes = pytest.mark.parametrize("size", SIZES)


@pytest.fixture(scope="module")
def kc():
    if not (SIMULATOR or HAS_GPU):
        pytest.skip("neither a CUDA GPU nor the Numba CUDA simulator is available")
    from xpgrad.kernels import cuda

    return cuda


@dtypes
@layouts
@sizes
def test_sigmoid_backward(kc, size, dtype, layout):
    check_sigmoid_backward(kc, size, dtype, layout, **GRID)


@dtypes
@layouts
@sizes
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_bias_act_backward(kc, size, dtype, layout, activation):
    check_bias_act_backward(kc, SHAPES_2D[size], dtype, layout, activation, **GRID)


@dtypes
@layouts
@sizes
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "relu"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_bias_act_forward(kc, size, dtype, layout, activation, with_bias):
    check_bias_act_forward(kc, SHAPES_2D[size], dtype, layout, activation, with_bias, **GRID)


@dtypes
@layouts
@sizes
def test_softmax_xent_forward(kc, size, dtype, layout):
    check_softmax_xent_forward(kc, SHAPES_2D[size], dtype, layout, **SOFTMAX_GRID)


@dtypes
@layouts
@sizes
def test_softmax_xent_backward(kc, size, dtype, layout):
    check_softmax_xent_backward(kc, SHAPES_2D[size], dtype, layout, **GRID)


@dtypes
@layouts
@sizes
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_update(kc, size, dtype, layout, momentum, nesterov):
    check_sgd_update(kc, size, dtype, layout, momentum, nesterov, **GRID)


@dtypes
@layouts
@sizes
def test_adam_update(kc, size, dtype, layout):
    check_adam_update(kc, size, dtype, layout, **GRID)


@dtypes
@layouts
@sizes
def test_scatter_add(kc, size, dtype, layout):
    check_scatter_add(kc, SHAPES_2D[size], dtype, layout, **GRID)


def test_scatter_add_accumulates_repeated_indices(kc):
    target = np.zeros((2, 3), np.float32)
    kc.scatter_add(target, np.array([1] * 50 + [-2] * 14), np.ones((64, 3), np.float32), **GRID)
    np.testing.assert_array_equal(target, [[14] * 3, [50] * 3])


def test_softmax_xent_forward_rejects_bad_labels(kc):
    check_softmax_xent_rejects_bad_labels(kc, **SOFTMAX_GRID)


def test_softmax_xent_backward_skips_bad_labels(kc):
    check_softmax_xent_backward_skips_bad_labels(kc, **GRID)


def test_softmax_rejects_non_power_of_two_blocks(kc):
    with pytest.raises(ValueError, match="power-of-two"):
        kc.softmax_xent_forward(np.zeros((2, 3)), np.zeros(2, np.int64), grid=(1, 48))


@pytest.mark.gpu
@pytest.mark.skipif(
    not HAS_GPU,
    reason="needs a real CUDA GPU (no NVIDIA driver here); the kernels are tested above under the Numba CUDA simulator",
)
def test_cupy_arrays_on_a_non_default_stream(kc):
    cupy = pytest.importorskip("cupy", reason="needs CuPy (pip install 'xpgrad[cuda13]')")
    rng = np.random.default_rng(0)
    y, dy = rng.random((4096, 1024), np.float32), rng.standard_normal((4096, 1024), np.float32)
    labels = rng.integers(0, 1024, 4096)
    with cupy.cuda.Stream(non_blocking=True) as stream:
        dx = kc.sigmoid_backward(cupy.asarray(y), cupy.asarray(dy))
        dz, db = kc.bias_act_backward(cupy.asarray(y), cupy.asarray(dy), "sigmoid")
        loss, probs = kc.softmax_xent_forward(cupy.asarray(dy), cupy.asarray(labels))
        stream.synchronize()
    assert isinstance(dx, cupy.ndarray) and isinstance(loss, cupy.ndarray)
    np.testing.assert_allclose(dx.get(), ref.sigmoid_backward(y, dy), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dz.get(), ref.sigmoid_backward(y, dy), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db.get(), ref.sigmoid_backward(y, dy).astype(np.float64).sum(0), rtol=1e-4)
    expected_loss, expected_probs = ref.softmax_xent_forward(dy, labels)
    np.testing.assert_allclose(probs.get(), expected_probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(loss.get()), expected_loss, rtol=1e-5)
