"""The device generator (dropout and xg.rand on CuPy: Philox in device memory) in checkpoints:
`train.rng_state` saves each device's [key0, key1, counter] beside the host generator's state and
`set_rng_state` puts it back, so a run resumed in a new process draws the masks the uninterrupted
run draws (on every rank: `xpgrad train` gathers them per rank). Run on the Trap stand-in for a
CuPy device (tests/gpu_trap.py) under Numba's CUDA simulator, and on a real GPU with CuPy
where there is one (`-m gpu`, ci/gpu-check)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import SIMULATOR
from gpu_trap import Trap, install_trap_device, plain, trap

import xpgrad as xg
from xpgrad import backend, fns_cupy, nn, optim
from xpgrad.cli.parallel import Ranks, seed_rank_stream
from xpgrad.train import fit, rng_state, set_rng_state


@pytest.fixture
def device(monkeypatch):
    """The Trap stand-in for a CuPy device (tests/gpu_trap.py)."""
    if not SIMULATOR:
        pytest.skip("the Trap stand-in runs the CUDA kernels under Numba's CUDA simulator (a real GPU is here)")
    return install_trap_device(monkeypatch)


def _new_process(monkeypatch, seed=12345):
    """What a fresh process has: no device generators, the host generator seeded anew."""
    monkeypatch.setattr(fns_cupy, "_random_states", {})
    monkeypatch.setattr(fns_cupy, "_restored_states", {})
    xg.manual_seed(seed)


def _masks(count, shape=(6, 7)):
    layer = nn.Dropout(0.4)
    return [plain(layer(xg.Tensor(trap(np.ones(shape, np.float32))))) for _ in range(count)]


def _checkpointed(state: dict) -> dict:
    return json.loads(json.dumps(state))  # what a checkpoint's JSON gives back


@pytest.mark.parametrize("drawn_before_restore", [False, True])
def test_restored_device_state_continues_the_stream(device, monkeypatch, drawn_before_restore):
    xg.manual_seed(5)
    _masks(2)
    saved = _checkpointed(fns_cupy.device_random_states())
    assert list(saved) == ["0"] and saved["0"][2] == 2 * -(-42 // 4)
    expected = _masks(3)

    _new_process(monkeypatch)
    if drawn_before_restore:  # a generator in use: overwritten in place (a CUDA graph holds its address)
        _masks(1)
        array = fns_cupy._random_states[0][0]
    fns_cupy.set_device_random_states(saved)
    got = _masks(3)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    if drawn_before_restore:
        assert fns_cupy._random_states[0][0] is array


def test_manual_seed_after_a_restore_rekeys(device, monkeypatch):
    xg.manual_seed(5)
    _masks(1)
    saved = _checkpointed(fns_cupy.device_random_states())
    xg.manual_seed(7)
    fresh = _masks(2)
    _new_process(monkeypatch)
    fns_cupy.set_device_random_states(saved)
    xg.manual_seed(7)  # replaces the host generator: the device re-keys from it, counter 0
    assert fns_cupy.device_random_states()["0"][2] == 0
    for a, b in zip(_masks(2), fresh):
        np.testing.assert_array_equal(a, b)


def test_a_bad_saved_state_is_a_clear_error(device):
    with pytest.raises(ValueError, match=r"set_device_random_states: device 0 needs \[key0, key1, counter\]"):
        fns_cupy.set_device_random_states({"0": [1, 2]})


def test_a_numpy_run_saves_no_device_state_and_loads_no_cuda():
    """On NumPy the checkpoint's random state has no device part, and reading it imports no
    numba.cuda (fit reads it every epoch)."""
    code = (
        "import sys, numpy as np, xpgrad.train as t\n"
        "class Loader: _rng = np.random.default_rng(0)\n"
        "assert 'device' not in t.rng_state(Loader())\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


class _TrapLoader:
    """Shuffled batches of Trap tensors (the part of DataLoader that fit uses)."""

    def __init__(self, x, y, batch, seed):
        self.x, self.y, self.batch = x, y, batch
        self._rng = np.random.default_rng(seed)

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __iter__(self):
        order = self._rng.permutation(len(self.x))
        for i in range(0, len(order), self.batch):
            rows = order[i : i + self.batch]
            yield xg.Tensor(trap(self.x[rows])), xg.Tensor(trap(self.y[rows]))


def _model(params):
    """The MLP with dropout on the Trap device, starting from `params` (host arrays)."""
    model = nn.MLP([4, 6, 3], dropout=0.5, dtype="float64")
    for p, value in zip(model.parameters(), params):
        p.data = trap(value)
    return model


def _fit(model, loader, epochs, start_epoch=0):
    opt = optim.SGD(model.parameters(), lr=0.1)
    return fit(model, opt, xg.softmax_cross_entropy, loader, epochs, start_epoch=start_epoch)


def test_resume_with_device_dropout_equals_uninterrupted_training(device, monkeypatch):
    monkeypatch.setattr(Trap, "__float__", lambda self: float(self.view(np.ndarray)))  # the epoch's one read
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((12, 4)), rng.integers(0, 3, 12)
    xg.manual_seed(0)
    start = [plain(p.data) for p in nn.MLP([4, 6, 3], dtype="float64").parameters()]

    xg.manual_seed(3)
    model = _model(start)
    straight = _fit(model, _TrapLoader(x, y, 4, seed=3), 3)
    expected = [plain(p) for p in model.parameters()]

    xg.manual_seed(3)
    model = _model(start)
    first = _fit(model, _TrapLoader(x, y, 4, seed=3), 1)
    saved = _checkpointed(first.rng_state)
    assert saved["device"]["0"][2] > 0
    _new_process(monkeypatch)
    model = _model([plain(p) for p in model.parameters()])  # as from the checkpoint
    loader = _TrapLoader(x, y, 4, seed=999)
    set_rng_state(loader, saved)
    resumed = _fit(model, loader, 3, start_epoch=1)
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in straight.history[1:]]
    for a, b in zip((plain(p) for p in model.parameters()), expected):
        np.testing.assert_array_equal(a, b)


def test_rank_streams_resume_from_their_own_device_state(device, monkeypatch):
    """`xpgrad train` under mpiexec: rank r > 0 takes its host and device states from the
    checkpoint's per-rank lists (gathered by cli.parallel.gather_rng), not rank 0's."""
    loader = _TrapLoader(np.zeros((1, 4)), np.zeros(1), 1, seed=0)
    xg.manual_seed(5)
    _masks(1)
    rank0 = _checkpointed(rng_state(loader))
    seed_rank_stream(Ranks(1, 2, "mpi"), 5, None, 0)  # rank 1's own stream, from the seed and the rank
    _masks(2)
    rank1 = _checkpointed(rng_state(loader))
    expected = _masks(2)
    saved = {
        **rank0,
        "host_by_rank": [rank0["host"], rank1["host"]],
        "device_by_rank": [rank0["device"], rank1["device"]],
    }
    _new_process(monkeypatch, seed=5)
    set_rng_state(loader, saved)  # what every rank does first
    seed_rank_stream(Ranks(1, 2, "mpi"), 5, saved, 1)
    for a, b in zip(_masks(2), expected):
        np.testing.assert_array_equal(a, b)


def test_a_rank_without_a_saved_device_state_keeps_its_own_key(device, monkeypatch):
    """A checkpoint with host states per rank but no device states (saved on the CPU): rank 1's
    device generator is keyed from rank 1's seed sequence, not rank 0's."""
    loader = _TrapLoader(np.zeros((1, 4)), np.zeros(1), 1, seed=0)
    xg.manual_seed(5)
    _masks(1)
    rank0_key = fns_cupy.device_random_states()["0"][:2]
    host = _checkpointed(rng_state(loader))["host"]
    saved = {"host": host, "host_by_rank": [host, host]}
    _new_process(monkeypatch, seed=5)
    seed_rank_stream(Ranks(1, 2, "mpi"), 5, saved, 1)
    _masks(1)
    assert fns_cupy.device_random_states()["0"][:2] != rank0_key


@pytest.mark.gpu
@pytest.mark.skipif(not backend.cupy_gpu_available(), reason="needs a CUDA GPU with CuPy; ci/gpu-check runs it")
@pytest.mark.parametrize("drawn_before_restore", [False, True])
def test_restored_device_state_continues_the_stream_on_the_gpu(monkeypatch, drawn_before_restore):
    with xg.use_backend("cupy"):
        layer, x = nn.Dropout(0.4), xg.ones((64, 33))
        xg.manual_seed(5)
        layer(x)
        saved = _checkpointed(fns_cupy.device_random_states())
        expected = [layer(x).numpy() for _ in range(2)]
        _new_process(monkeypatch)
        if drawn_before_restore:
            layer(x)
        fns_cupy.set_device_random_states(saved)
        for want in expected:
            np.testing.assert_array_equal(layer(x).numpy(), want)
