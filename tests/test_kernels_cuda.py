"""CUDA kernels (xpgrad.kernels.cuda) against kernels.reference, with the checks of the CPU tests.

Without an NVIDIA driver, tests/conftest.py has set NUMBA_ENABLE_CUDASIM=1 before anything
imports numba.cuda, so the kernels run under Numba's CUDA simulator on NumPy arrays with a tiny
grid (the simulator costs ~0.1 ms per launched thread). With a GPU the same checks run on the
device with the default grids (Numba copies the NumPy arrays), and the CuPy tests run too.
numba.cuda is imported only by the `kc` fixture.
"""

import sys
import types

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


class _CupyLike(np.ndarray):
    """A host array the kernels take for a CuPy one (its type's module is "cupy")."""

    @property
    def __cuda_array_interface__(self):
        return {}


_CupyLike.__module__ = "cupy"


@pytest.mark.skipif(
    not SIMULATOR, reason="stubs Numba's stream and array import, which a real device launch would then reject"
)
def test_cupy_launch_is_on_the_current_stream_without_a_sync(kc, monkeypatch):
    """A launch on CuPy arrays: each array is imported with sync=False (Numba would otherwise
    synchronize the stream CuPy exports in __cuda_array_interface__, and a synchronize breaks a
    CUDA-graph capture), on CuPy's current stream through one Numba wrapper per stream pointer
    (numba-cuda's configure() caches launch configurations on that object); no None reaches it."""
    current = [77]
    fake_cupy = types.SimpleNamespace(
        cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=current[0]))
    )
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    imports, streams, launched = [], [], []
    monkeypatch.setattr(kc, "_external_streams", {})
    monkeypatch.setattr(
        kc.cuda, "as_cuda_array", lambda a, sync=True: imports.append(sync) or a.view(np.ndarray), raising=False
    )
    monkeypatch.setattr(kc.cuda, "external_stream", lambda ptr: streams.append(ptr) or f"stream {ptr}")
    launch = kc._launch
    monkeypatch.setattr(kc, "_launch", lambda kernel, grid, *args: launched.append(args) or launch(kernel, grid, *args))
    param, grad = np.ones(5).view(_CupyLike), np.full(5, 2.0).view(_CupyLike)
    kc.sgd_update(param, grad, None, 0.25, **GRID)  # plain SGD: no velocity
    kc.sgd_update(param, grad, None, 0.25, **GRID)
    np.testing.assert_array_equal(param.view(np.ndarray), 0.0)
    z, out = np.full((2, 3), -1.0).view(_CupyLike), np.empty((2, 3)).view(_CupyLike)
    kc.unchecked.bias_act_forward(z, None, 2, out)  # xg.relu: no bias
    np.testing.assert_array_equal(out.view(np.ndarray), 0.0)
    assert streams == [77]  # one wrapper, reused
    assert imports and not any(imports)  # sync=False on every array
    assert all(a is not None for args in launched for a in args)
    current[0] = 0  # CuPy's legacy default stream: Numba's default stream, no wrapper
    kc.sgd_update(param, grad, None, 0.25, **GRID)
    assert streams == [77]
