"""xg.capture on CuPy: piecewise CUDA-graph replay equals eager on the GPU (skipped without one)."""

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import backend, nn, optim
from xpgrad.train import batch_step

pytestmark = pytest.mark.skipif(
    not backend.cupy_gpu_available(),
    reason="no CUDA GPU with CuPy here: the CUDA-graph capture (xpgrad/capture/cuda.py) "
    "needs one; ci/gpu-check runs these on a GPU machine",
)


def _setup(optimizer, dropout, loss):
    xg.manual_seed(0)
    model = nn.MLP([16, 32, 32, 2], dropout=dropout)
    params = model.parameters()
    if optimizer == "adam":
        opt = optim.Adam(params, lr=0.01)
    else:  # "sgd0": plain SGD, whose kernels once took a None velocity (numba-cuda cannot pass None)
        opt = optim.SGD(params, lr=0.05, momentum=0.9 if optimizer == "sgd" else 0.0)
    loss_fn = {"ce": xg.softmax_cross_entropy, "mse": xg.mse_loss, "hinge": xg.hinge_loss}[loss]
    return model, batch_step(model, opt, loss_fn)


@pytest.mark.parametrize(
    ("optimizer", "dropout", "loss"),
    [
        ("sgd", 0.0, "ce"),
        ("adam", 0.0, "ce"),
        ("sgd", 0.3, "ce"),
        ("adam", 0.0, "mse"),
        ("sgd", 0.0, "hinge"),
        ("sgd0", 0.0, "ce"),
    ],
)
def test_graph_replay_equals_eager_on_the_gpu(optimizer, dropout, loss):
    """Exact equality assumes cuBLAS gives the same bits on the replay's side stream as eagerly on
    the caller's stream (cuBLAS documents bitwise reproducibility per architecture and SM count; a
    workspace that differs per stream may change its kernel choice). If only that differs, the
    parameters agree to rounding: compare with a tolerance and report it."""
    with xg.use_backend("cupy"):
        m1, eager = _setup(optimizer, dropout, loss)
        m2, raw = _setup(optimizer, dropout, loss)
        step = xg.capture(raw)
        rng = np.random.default_rng(1)
        for k in range(6):
            x = xg.tensor(rng.standard_normal((32, 16)).astype(np.float32))
            y = (
                xg.tensor(rng.standard_normal((32, 2)).astype(np.float32))
                if loss == "mse"
                else xg.tensor(rng.integers(0, 2, 32))
            )
            xg.manual_seed(10 + k)
            a = eager(x, y)
            xg.manual_seed(10 + k)
            b = step(x, y)
            assert a.item() == b.item()
            for p, q in zip(m1.parameters(), m2.parameters()):
                assert np.array_equal(p.numpy(), q.numpy())
        assert step.stats["captures"] == 1 and step.stats["replays"] == 4


# ---- the pieces the capture rests on, each on its own (what the simulator cannot show) ----------
def test_numba_kernels_on_cupy_arrays_take_no_none_argument():
    """numba-cuda 0.30 cannot pass None to a kernel on a device (`_Kernel._prepare_args` raises
    NotImplementedError): plain SGD and a bias-free activation once did."""
    import cupy

    from xpgrad.kernels import cuda as kc

    param, grad = cupy.ones(1000, cupy.float32), cupy.full(1000, 2.0, cupy.float32)
    kc.sgd_update(param, grad, None, 0.25)
    kc.sgd_update_device(param, grad, None, cupy.full(1, 0.25))
    assert float(param[0].get()) == 0.0
    z = cupy.asarray(np.linspace(-1, 1, 60, dtype=np.float32).reshape(6, 10))
    out = cupy.empty_like(z)
    kc.unchecked.bias_act_forward(z, None, 2, out)  # xg.relu
    np.testing.assert_array_equal(out.get(), np.maximum(z.get(), 0))


def test_numba_kernel_and_cupy_fill_are_captured_and_replayed():
    """A Numba launch on a capturing CuPy stream is captured (no synchronize: sync=False), a
    CuPy fill kernel is captured with its value, an empty capture instantiates and launches (the
    piecewise capture makes some), and a fill outside the graph is seen by the next replay."""
    import cupy

    from xpgrad.kernels import cuda as kc

    param, grad = cupy.zeros(4096, cupy.float64), cupy.ones(4096, cupy.float64)
    lr = cupy.full(1, 0.5)  # made outside the graph
    kc.sgd_update_device(cupy.zeros(4096), grad, None, lr)  # compiled and loaded first, as xg.capture's warm-up does
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        empty = stream.end_capture()
        stream.begin_capture()
        kc.sgd_update_device(param, grad, None, lr)
        assert stream.is_capturing()  # nothing in the launch invalidated the capture
        graph = stream.end_capture()
        empty.launch(stream)
        assert float(param[0].get()) == 0.0  # captured work does not run during the capture
        graph.launch(stream)
        lr.fill(0.25)  # between replays, as Optimizer.step's host piece does
        graph.launch(stream)
        stream.synchronize()
    np.testing.assert_array_equal(param.get(), -0.75)


def test_cublas_refuses_a_capturing_stream():
    """Why matmul runs between graphs: CuPy's cublas.setStream raises NotImplementedError while
    the stream captures (cupy_backends/cuda/libs/cublas.pyx)."""
    import cupy

    from xpgrad.capture.cuda import _abandon

    a = cupy.ones((8, 8), cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            with pytest.raises(NotImplementedError):
                a @ a
        finally:
            _abandon(stream)
        assert not stream.is_capturing()
