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
    opt = optim.SGD(params, lr=0.05, momentum=0.9) if optimizer == "sgd" else optim.Adam(params, lr=0.01)
    loss_fn = {"ce": xg.softmax_cross_entropy, "mse": xg.mse_loss, "hinge": xg.hinge_loss}[loss]
    return model, batch_step(model, opt, loss_fn)


@pytest.mark.parametrize(
    ("optimizer", "dropout", "loss"),
    [("sgd", 0.0, "ce"), ("adam", 0.0, "ce"), ("sgd", 0.3, "ce"), ("adam", 0.0, "mse"), ("sgd", 0.0, "hinge")],
)
def test_graph_replay_equals_eager_on_the_gpu(optimizer, dropout, loss):
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
