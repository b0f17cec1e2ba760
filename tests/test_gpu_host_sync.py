"""No hidden host round trips in a CuPy training step (issue 16 item 6), tested without a GPU.

The CuPy code paths (fns_cupy.CupyFns, the CUDA kernels, the optimizers' device path, dropout's
device generator) run under Numba's CUDA simulator on `Trap` arrays: NumPy arrays standing in
for CuPy ones whose value cannot be brought into Python (float(), int(), bool(), .item(),
.tolist() raise HostRead, as each would wait for the device on CuPy; indexing one element gives
a 0-d Trap, as CuPy gives a 0-d device array). A whole step (forward, softmax cross-entropy /
MSE / hinge, backward, SGD / Adam, dropout) must not raise; its results are checked against the
NumPy engine. A real GPU runs the same paths in tests/test_capture_cuda.py (skipped here).
"""

import numpy as np
import pytest
from conftest import SIMULATOR
from gpu_trap import HostRead, Trap, install_trap_device, plain, trap, trap_xp

import xpgrad as xg
from xpgrad import fns_cupy, nn, optim

pytestmark = pytest.mark.skipif(
    not SIMULATOR,
    reason="runs the CUDA kernels under Numba's CUDA simulator on host arrays that refuse host reads; "
    "with a real GPU (no simulator) tests/test_capture_cuda.py covers these paths on the device",
)


@pytest.fixture
def device(monkeypatch):
    """The Trap stand-in for a CuPy device (tests/gpu_trap.py)."""
    return install_trap_device(monkeypatch)


def test_trap_refuses_host_reads(device):
    """The harness itself: each way of reading a device value raises."""
    a = trap([1.5, 2.0])
    for read in (float, int, bool, lambda v: v.item(), lambda v: v.tolist()):
        with pytest.raises(HostRead):
            read(a[0])
    assert type(a[0] + 1) is Trap and type(device.xp.zeros(2)) is Trap


def _net(dtype, dropout=0.0, seed=0):
    xg.manual_seed(seed)
    return nn.MLP([4, 6, 3], dropout=dropout, dtype=dtype)


def _data(dtype, rows=5):
    rng = np.random.default_rng(3)
    return rng.standard_normal((rows, 4)).astype(dtype), np.array([0, 2, 1, 2, 0][:rows])


def _step(model, opt, x, y, loss):
    out = model(xg.Tensor(x))
    if loss == "ce":
        value = xg.softmax_cross_entropy(out, xg.Tensor(y))
    elif loss == "hinge":
        value = xg.hinge_loss(out, xg.Tensor(y))
    else:
        value = xg.mse_loss(out, xg.Tensor(x[:, :3]))
    opt.zero_grad()
    value.backward()
    opt.step()
    return value


def _to_device(model):
    for p in model.parameters():
        p.data = trap(p.data)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("loss", ["ce", "mse", "hinge"])
def test_training_step_makes_no_host_read(device, optimizer, loss):
    """Three steps on the device path read nothing on the host and match the NumPy engine."""
    results = []
    for on_device in (False, True):
        model = _net("float64")
        if on_device:
            _to_device(model)
        params = model.parameters()
        opt = optim.SGD(params, lr=0.1, momentum=0.9) if optimizer == "sgd" else optim.Adam(params, lr=0.05)
        schedule = optim.StepLR(opt, step_size=1, gamma=0.5)  # lr changes between steps: the device scalar follows
        x, y = _data(np.float64)
        if on_device:
            x, y = trap(x), trap(y)
        losses = []
        for _ in range(3):
            losses.append(_step(model, opt, x, y, loss))
            schedule.step()
        results.append((losses, [plain(p) for p in params], opt))
    (host_losses, host_params, host_opt), (dev_losses, dev_params, dev_opt) = results
    for a, b in zip(host_params, dev_params):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    for a, b in zip(host_losses, dev_losses):
        np.testing.assert_allclose(b.item(), a.item(), rtol=1e-12)  # .item() on the device: the read asked for
    assert [s["step"] for s in dev_opt.state] == [s["step"] for s in host_opt.state] == [3] * len(dev_params)
    if optimizer == "adam":
        assert [int(plain(s["device_step"])[0]) for s in dev_opt.state] == [3] * len(dev_params)


def test_bad_label_raises_at_the_next_host_read(device):
    """softmax_cross_entropy on the device: no error (and no read) in the step; the LabelError,
    with the NumPy message, when the host reads a value; then it is cleared."""
    model = _net("float64")
    _to_device(model)
    x, y = _data(np.float64)
    y[3] = 7
    loss = xg.softmax_cross_entropy(model(xg.Tensor(trap(x))), xg.Tensor(trap(y)))
    loss.backward()  # no read: the bad row's gradient is zero, not garbage
    assert np.isfinite(plain(model.parameters()[0].grad)).all()
    message = r"softmax_cross_entropy: labels must lie in \[0, 3\) for 3 classes, got min 0 and max 7"
    with pytest.raises(xg.LabelError, match=message):
        loss.item()
    assert np.isfinite(loss.item())  # reported once
    with pytest.raises(xg.LabelError, match=message):  # NumPy: the same error, at the call
        xg.softmax_cross_entropy(_net("float64")(xg.Tensor(x)), xg.Tensor(y))


def test_hinge_bad_label_raises_at_the_next_host_read(device):
    scores = xg.Tensor(trap(np.zeros((3, 4))), requires_grad=True)
    loss = xg.hinge_loss(scores, xg.Tensor(trap([1, -2, 3])))
    with pytest.raises(
        xg.LabelError, match=r"hinge_loss: labels must lie in \[0, 4\) for 4 classes, got min -2 and max 3"
    ):
        float(loss)
    float(loss)  # cleared


def test_first_bad_labels_stay_latched_until_read(device):
    """Later steps, good or bad, do not overwrite the first failure."""
    z = trap(np.zeros((2, 3)))
    for labels in ([0, 5], [1, 1], [-4, 9]):
        device.softmax_xent(z, trap(labels))
    with pytest.raises(xg.LabelError, match="got min 0 and max 5"):
        fns_cupy.raise_device_errors()
    fns_cupy.raise_device_errors()


def test_softmax_backward_reads_gy_on_the_device(device):
    """The kernel reads the upstream gradient from device memory (float(gy) would raise here),
    giving float(gy) / N in float64 cast to the dtype, as the host path does, bit for bit."""
    from xpgrad.kernels import cuda

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        probs, labels = rng.random((4, 5)).astype(dtype), np.array([0, 4, 2, 1])
        gy = np.asarray(0.7, dtype)
        got = device.softmax_xent_grad(trap(probs), trap(labels), trap(gy), 4)
        expected = cuda.softmax_xent_backward(probs, labels, float(gy) / 4, grid=(2, 8))
        np.testing.assert_array_equal(plain(got), expected)


def test_sum_of_squares_kernel(device):
    """mse's reduction: our kernel, not cuBLAS vdot; float64 sums, cast to the dtype."""
    rng = np.random.default_rng(1)
    for shape in [(0,), (1,), (7, 5), (300,)]:
        d = rng.standard_normal(shape)
        got = device.sum_of_squares(trap(d))
        assert type(got) is Trap and got.shape == ()
        np.testing.assert_allclose(plain(got), np.vdot(d, d), rtol=1e-12)
    d32 = rng.standard_normal(50).astype(np.float32)
    got32 = plain(device.sum_of_squares(trap(d32)))
    assert got32.dtype == np.float32
    assert got32 == np.float32((d32.astype(np.float64) ** 2).sum())


def test_integer_index_backward_reads_no_index(device):
    """x[idx] backward scatter-adds on the device without reading min(idx) on the host."""
    x = xg.Tensor(trap(np.arange(12.0).reshape(4, 3)), requires_grad=True)
    idx = np.array([1, 3, 1, -1])
    x[xg.Tensor(trap(idx))].sum().backward()
    expected = np.zeros((4, 3))
    np.add.at(expected, idx, 1.0)
    np.testing.assert_array_equal(plain(x.grad), expected)


def test_dropout_mask_is_drawn_on_the_device(device):
    """Dropout on the device: the Philox generator keyed by xg.manual_seed, advanced on the
    device (two layers, two steps: four different masks, each the reference's), nothing read."""
    from xpgrad import creation
    from xpgrad.kernels import cuda_random

    xg.manual_seed(5)
    layer = nn.Dropout(0.4)
    key = cuda_random.key_of(creation.generator())
    x = trap(np.ones((6, 7), np.float32))
    counter, masks = 0, []
    for _ in range(4):
        out = layer(xg.Tensor(x))
        expected = cuda_random.reference_dropout_mask(key, counter, x.shape, 0.4, np.float32)
        np.testing.assert_array_equal(plain(out), expected)
        masks.append(plain(out))
        counter += -(-x.size // 4)
    assert all((a != b).any() for i, a in enumerate(masks) for b in masks[i + 1 :])
    state = plain(fns_cupy._random_states[0][0])
    assert state.tolist() == [key[0], key[1], counter]
    xg.manual_seed(5)  # the same seed: the same masks again
    np.testing.assert_array_equal(plain(layer(xg.Tensor(x))), masks[0])


def test_device_dropout_keeps_the_numpy_path():
    """NumPy arrays still draw their masks from the host generator (what eager NumPy drew before)."""
    xg.manual_seed(11)
    expected_keep = np.random.default_rng(11).random((3, 4)) >= 0.5
    out = nn.Dropout(0.5)(xg.ones((3, 4), dtype="float64"))
    np.testing.assert_array_equal(out.numpy(), np.where(expected_keep, 2.0, 0.0))


def test_optimizer_reads_lr_from_device_memory(device):
    """SGD on the device: the kernel takes lr from a device scalar, refilled when lr changes;
    a stale scalar would show in the result."""
    p = xg.Tensor(trap(np.ones(3)), requires_grad=True)
    opt = optim.SGD([p], lr=0.5)
    for lr in (0.5, 0.25, 0.25, 1.0):
        opt.lr = lr
        p.grad = xg.Tensor(trap(np.ones(3)))
        opt.step()
    np.testing.assert_array_equal(plain(p), 1 - (0.5 + 0.25 + 0.25 + 1.0))
    (entry,) = opt._lr_device.values()
    assert plain(entry[0]).tolist() == [1.0]


# ---- the kernels on their own --------------------------------------------------------------
@pytest.fixture(scope="module")
def kernels():
    from xpgrad.kernels import cuda, cuda_random

    return cuda, cuda_random


SMALL = (2, 8)  # a tiny grid: the simulator runs every thread in Python


def test_philox_reference_matches_random123_vectors(kernels):
    """Known-answer vectors of Philox4x32-10 from Random123 (kat_vectors)."""
    _, kr = kernels
    cases = [
        ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        (
            [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
            [0xA4093822, 0x299F31D0],
            [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
        ),
    ]
    for counter, key, expected in cases:
        assert kr.philox4x32_reference(np.array([counter], np.uint32), key)[0].tolist() == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (3,), (7, 5), (2, 3, 4)])
def test_device_draws_equal_the_reference_bit_for_bit(kernels, dtype, shape):
    """uniform and dropout_mask against the NumPy reference, from a counter just below 2**32 (the
    high counter word changes inside the call), the state advanced by ceil(n / 4) per call."""
    _, kr = kernels
    state = np.zeros(3, np.uint64)
    kr.seed_state(state, (0x12345678, 0x9ABCDEF0))
    start = 2**32 - 1
    state[2] = start
    n, blocks = int(np.prod(shape)), -(-int(np.prod(shape)) // 4)
    out = np.empty(shape, dtype)
    kr.uniform(state, out, grid=SMALL)
    expected = (kr.reference_words((0x12345678, 0x9ABCDEF0), start, n) * 2.0**-32).astype(dtype).reshape(shape)
    np.testing.assert_array_equal(out, expected)
    assert int(state[2]) == start + blocks
    mask = kr.dropout_mask(state, shape, 0.3, dtype, grid=SMALL)
    np.testing.assert_array_equal(
        mask, kr.reference_dropout_mask((0x12345678, 0x9ABCDEF0), start + blocks, shape, 0.3, dtype)
    )
    assert int(state[2]) == start + 2 * blocks and mask.dtype == dtype


def test_dropout_mask_statistics_and_keys(kernels):
    """The kept fraction is about 1 - p; another key gives another mask; the seed's key is stable."""
    _, kr = kernels
    state = np.zeros(3, np.uint64)
    kr.seed_state(state, kr.key_of(np.random.default_rng(3)))
    mask = kr.dropout_mask(state, (4000,), 0.25, grid=SMALL)
    assert abs((mask > 0).mean() - 0.75) < 0.03 and set(np.unique(mask)) == {0.0, 1 / 0.75}
    assert kr.key_of(np.random.default_rng(3)) == kr.key_of(np.random.default_rng(3))
    assert kr.key_of(np.random.default_rng(3)) != kr.key_of(np.random.default_rng(4))
    with pytest.raises(ValueError, match="p must be in"):
        kr.dropout_mask(state, (2,), 1.0)


def test_label_check_latches_the_first_failure(kernels):
    kc, _ = kernels
    status = np.zeros(3, np.int64)
    kc.label_check(np.array([0, 1, 2]), 3, status, grid=(1, 4))
    assert status.tolist() == [0, 0, 0]
    kc.label_check(np.arange(-2, 9), 3, status, grid=(1, 4))  # more labels than threads
    assert status.tolist() == [1, -2, 8]
    kc.label_check(np.array([5, 6]), 3, status, grid=(1, 4))
    assert status.tolist() == [1, -2, 8]
    kc.label_check(np.array([], np.int64), 3, status, grid=(1, 4))  # nothing to check
    with pytest.raises(ValueError, match="int64 of shape"):
        kc.label_check(np.array([0]), 3, np.zeros(2, np.int64))


def test_softmax_forward_with_status_reads_nothing_and_zeroes_bad_rows(kernels):
    kc, _ = kernels
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((4, 5)), np.array([1, 9, 0, 4])
    status = np.zeros(3, np.int64)
    loss, probs = kc.softmax_xent_forward(x, labels, grid=(2, 8), status=status)
    assert status.tolist() == [1, 0, 9]
    np.testing.assert_array_equal(probs[1], 0)
    good = [0, 2, 3]
    ref_loss, ref_probs = kc.softmax_xent_forward(x[good], labels[good], grid=(2, 8))
    np.testing.assert_allclose(probs[good], ref_probs, rtol=1e-12)
    np.testing.assert_allclose(float(loss), float(ref_loss) * 3 / 4, rtol=1e-12)  # the mean over all rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, True)])
def test_sgd_device_matches_the_scalar_kernel(kernels, dtype, layout, momentum, nesterov):
    kc, _ = kernels
    rng = np.random.default_rng(2)

    def arr(*shape):
        a = rng.standard_normal((9, 2) if layout == "strided" else 9).astype(dtype)
        return a[:, 0] if layout == "strided" else a

    param, grad = arr(), arr()
    velocity = np.zeros(9, dtype) if momentum else None
    p_ref, v_ref = param.copy(), None if velocity is None else velocity.copy()
    hyper = np.zeros(1)
    for lr in (0.1, 0.05, 0.05):
        hyper[0] = lr
        kc.sgd_update_device(param, grad, velocity, hyper, momentum, 0.01, nesterov, grid=SMALL)
        kc.sgd_update(p_ref, grad, v_ref, lr, momentum, 0.01, nesterov, grid=SMALL)
    np.testing.assert_array_equal(param, p_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_device_advances_its_step_and_matches_the_scalar_kernel(kernels, dtype):
    kc, _ = kernels
    rng = np.random.default_rng(4)
    param, grad = rng.standard_normal(11).astype(dtype), rng.standard_normal(11).astype(dtype)
    m, v = np.zeros(11, dtype), np.zeros(11, dtype)
    refs = [a.copy() for a in (param, m, v)]
    hyper, step = np.array([1e-2]), np.zeros(1, np.int64)
    for n in range(1, 5):
        kc.adam_update_device(param, grad, m, v, hyper, step, 0.9, 0.999, 1e-8, 0.01, grid=SMALL)
        kc.adam_update(refs[0], grad, refs[1], refs[2], 1e-2, 0.9, 0.999, 1e-8, 0.01, n, grid=SMALL)
        assert step.tolist() == [n]
    tol = 1e-12 if dtype == np.float64 else 1e-6
    for got, want in zip((param, m, v), refs):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [0, 1, 37, 300])
def test_sum_of_squares_over_several_blocks(kernels, n):
    kc, _ = kernels
    d = np.random.default_rng(n).standard_normal(n)
    for grid in [(1, 8), (3, 8), (5, 16)]:
        np.testing.assert_allclose(float(kc.sum_of_squares(d, grid=grid)), float(d @ d), rtol=1e-12)
    with pytest.raises(ValueError, match="power-of-two"):
        kc.sum_of_squares(d, grid=(2, 12))


def test_scatter_add_wraps_indices_like_cupy_indexing(kernels):
    kc, _ = kernels
    target = np.zeros((3, 2))
    kc.scatter_add(target, np.array([4, -4, 1]), np.ones((3, 2)), grid=SMALL)  # 4 -> 1, -4 -> 2
    np.testing.assert_array_equal(target, [[0, 0], [2, 2], [1, 1]])


# ---- a CUDA-graph capture, its structure checked with a stand-in stream --------------------
class _FakeGraph:
    def __init__(self, log):
        self.log = log

    def launch(self, stream):
        self.log.append("launch")


class _FakeStream:
    def __init__(self):
        self.log = []

    def begin_capture(self):
        self.log.append("begin")

    def end_capture(self):
        self.log.append("end")
        return _FakeGraph(self.log)


class _InvalidatedStream:
    """A stream whose capture an illegal call invalidated, as CuPy 14 reports it: is_capturing()
    raises RuntimeError (runtime.streamIsCapturing), end_capture() ends it and raises."""

    def __init__(self, status):
        self.status, self.ended = status, 0

    def is_capturing(self):
        if self.status == "invalidated":
            raise RuntimeError("the stream was capturing, but an error has invalidated the capture sequence")
        return self.status == "active"

    def end_capture(self):
        self.ended += 1
        if self.status == "invalidated":
            raise RuntimeError("cudaErrorStreamCaptureInvalidated: operation failed due to a previous error")
        return _FakeGraph([])


@pytest.mark.parametrize(("status", "ends"), [("invalidated", 1), ("active", 1), ("none", 0)])
def test_a_failed_capture_is_ended_even_when_invalidated(status, ends):
    """_abandon ends an invalidated capture too (it once left the stream capturing)."""
    from xpgrad.capture.cuda import _abandon

    stream = _InvalidatedStream(status)
    _abandon(stream)
    assert stream.ended == ends


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizer_step_under_graph_capture(device, monkeypatch, optimizer):
    """Under a CUDA-graph recorder, step() makes its state buffers outside the graph, leaves one
    host piece (host step counts, the live lr into its device scalar) and launches its kernels in
    the graph; running that piece again (a replay) advances the counts and picks up a new lr."""
    from xpgrad import state
    from xpgrad.capture.cuda import GraphRecorder

    p = xg.Tensor(trap(np.ones(4)), requires_grad=True)
    p.grad = xg.Tensor(trap(np.full(4, 0.5)))
    opt = optim.SGD([p], lr=0.1, momentum=0.9) if optimizer == "sgd" else optim.Adam([p], lr=0.1)
    stream = _FakeStream()
    recorder = GraphRecorder(stream)
    made = []
    zeros_like = trap_xp.zeros_like
    monkeypatch.setattr(trap_xp, "zeros_like", lambda *a, **k: made.append(list(stream.log)) or zeros_like(*a, **k))
    monkeypatch.setattr(state.local, "capture", recorder)
    recorder.begin()
    opt.step()
    recorder.end()
    monkeypatch.setattr(state.local, "capture", None)
    assert made and all(log[-1] == "launch" for log in made)  # each buffer made between graphs, not inside one
    hosts = [piece for piece in recorder.pieces if piece[0] == "host"]
    assert len(hosts) == 1 and opt.state[0]["step"] == 1
    opt.lr = 0.3  # a schedule between replays
    hosts[0][1]()  # what a replay runs before the graph holding the kernels
    assert opt.state[0]["step"] == 2
    assert plain(next(iter(opt._lr_device.values()))[0]).tolist() == [0.3]
    if optimizer == "adam":
        assert plain(opt.state[0]["device_step"]).tolist() == [1]  # the graph's kernel advances it on replay
    assert recorder.checks and all(still_valid() for still_valid in recorder.checks)
    opt.load_state_dict(opt.state_dict())  # new buffers: the graph's would be stale, so a replay recaptures
    assert not all(still_valid() for still_valid in recorder.checks)


def test_replay_rekeys_the_device_generator_after_manual_seed(device):
    from xpgrad import creation
    from xpgrad.kernels import cuda_random

    xg.manual_seed(1)
    nn.Dropout(0.5)(xg.Tensor(trap(np.ones(8))))
    entry = fns_cupy._random_states[0]
    assert plain(entry[0])[2] == 2
    xg.manual_seed(2)
    fns_cupy.resync_device_random()  # GraphPlan.replay calls it first
    assert plain(entry[0]).tolist() == [*cuda_random.key_of(creation.generator()), 0]
    assert entry[1] is creation.generator()


def test_training_loop_raises_a_device_label_error_at_the_end_of_the_epoch(device, monkeypatch):
    """xpgrad.train's epoch loop reads the loss once, at the end (float of a raw device array, not
    Tensor.numpy()): the device label check is raised there."""
    from xpgrad.train import train_epoch

    model = _net("float64")
    _to_device(model)
    x, y = _data(np.float64)
    y[0] = -1
    batches = [(xg.Tensor(trap(x)), xg.Tensor(trap(y)))]
    monkeypatch.setattr(Trap, "__float__", lambda self: float(self.view(np.ndarray)))  # the epoch's one read
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(xg.LabelError, match=r"softmax_cross_entropy: .* got min -1 and max 2"):
        train_epoch(model, opt, xg.softmax_cross_entropy, batches)
    y[0] = 1
    mean, seen, finished = train_epoch(model, opt, xg.softmax_cross_entropy, [(batches[0][0], xg.Tensor(trap(y)))])
    assert seen == 5 and finished and np.isfinite(mean)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_normal_draws_equal_the_reference(kernels, dtype):
    """normal: one Box-Muller value per Philox block (the counter advances by n), the reference's
    values (math library rounding aside), across the 2**32 counter word."""
    _, kr = kernels
    key, start = (0x0BADF00D, 0x5EED1234), 2**32 - 3
    state = np.zeros(3, np.uint64)
    kr.seed_state(state, key)
    state[2] = start
    out = np.empty((5, 3), dtype)
    kr.normal(state, out, grid=SMALL)
    np.testing.assert_allclose(
        out, kr.reference_normal(key, start, out.shape, dtype), rtol=1e-6 if dtype == np.float32 else 1e-13
    )
    assert int(state[2]) == start + out.size
    big = np.empty(20000)
    kr.normal(state, big)
    assert abs(big.mean()) < 0.05 and abs(big.std() - 1) < 0.05


def test_rand_and_randn_are_drawn_on_the_device(device, monkeypatch):
    """xg.rand / xg.randn on CuPy draw from the device generator (no host copy; a CUDA graph
    draws afresh on every replay): the reference's values, the same again after the same seed,
    and the host generator untouched."""
    import contextlib

    from xpgrad import creation
    from xpgrad.kernels import cuda_random

    monkeypatch.setattr(creation, "_target", lambda device: (trap_xp, None))
    monkeypatch.setattr(creation, "_is_cupy_namespace", lambda xp: xp is trap_xp)
    monkeypatch.setattr(creation, "_cupy_device", lambda device: contextlib.nullcontext())
    xg.manual_seed(9)
    key = cuda_random.key_of(creation.generator())
    host_before = creation.generator().bit_generator.state
    u = xg.rand(3, 5)
    z = xg.randn(4, 2, dtype="float64", requires_grad=True)
    assert type(u.data) is Trap and type(z.data) is Trap and z.requires_grad
    np.testing.assert_array_equal(
        plain(u), (cuda_random.reference_words(key, 0, 15) * 2.0**-32).astype(np.float32).reshape(3, 5)
    )
    np.testing.assert_allclose(plain(z), cuda_random.reference_normal(key, 4, (4, 2)), rtol=1e-13)
    assert creation.generator().bit_generator.state == host_before
    xg.manual_seed(9)
    np.testing.assert_array_equal(plain(xg.rand(3, 5)), plain(u))
