"""Engine state is per thread: grad mode, kernels and the backend override of one thread never
change what another computes, and threads running ops at once give the results they give alone.

Every test forces the overlap with barriers (and a tiny GIL switch interval, so threads
interleave inside single ops), and every wait has a timeout: a deadlock fails, it never hangs.
"""

import sys
import threading

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import autograd, buffers, fns

TIMEOUT = 60.0  # seconds any one wait may take before the test fails


@pytest.fixture(autouse=True)
def fine_grained_switching():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def run_threads(*targets, barrier=None):
    """Run each callable in its own thread; re-raise the first exception; fail on a hang.

    A thread that fails breaks `barrier`, so the others stop waiting for it at once."""
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)
            if barrier is not None:
                barrier.abort()

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread is still running after the timeout (deadlock?)"
    if errors:
        raise errors[0]


def make_problem(seed, n=32, sizes=(16, 24, 3)):
    """A model, its data and labels, fixed by `seed` (built in the calling thread)."""
    xg.manual_seed(seed)
    model = xg.nn.MLP(list(sizes))
    rng = np.random.default_rng(seed)
    x = xg.tensor(rng.standard_normal((n, sizes[0])).astype(np.float32))
    labels = xg.tensor(rng.integers(0, sizes[-1], n))
    return model, x, labels


def make_optimizer(kind, model):
    if kind == "sgd":
        return xg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return xg.optim.Adam(model.parameters(), lr=0.01)


def train(model, opt, x, labels, steps, barrier=None):
    """`steps` training steps; returns the losses. With a barrier, every step starts in lockstep."""
    losses = []
    for _ in range(steps):
        if barrier is not None:
            barrier.wait(TIMEOUT)
        opt.zero_grad()
        loss = xg.softmax_cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def snapshot(model):
    return [p.numpy().copy() for p in model.parameters()]


def test_new_thread_starts_with_grad_mode_on_whatever_the_parent_uses():
    seen = []
    with xg.no_grad():
        run_threads(lambda: seen.append(xg.is_grad_enabled()))
        assert not xg.is_grad_enabled()
    assert seen == [True]


def test_a_thread_in_no_grad_does_not_stop_another_from_training():
    entered, trained = threading.Event(), threading.Event()
    model, x, labels = make_problem(0)
    opt = make_optimizer("sgd", model)
    inside = []

    def serving():
        with xg.no_grad():
            entered.set()
            assert trained.wait(TIMEOUT)
            inside.append(xg.is_grad_enabled())

    def training():
        assert entered.wait(TIMEOUT)
        try:
            train(model, opt, x, labels, steps=3)
        finally:
            trained.set()

    run_threads(serving, training)
    assert inside == [False]
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_four_threads_train_four_models_bitwise_as_one_after_another(kind):
    steps = 12
    alone = []
    for seed in range(4):
        model, x, labels = make_problem(seed)
        losses = train(model, make_optimizer(kind, model), x, labels, steps)
        alone.append((losses, snapshot(model)))

    problems = [make_problem(seed) for seed in range(4)]
    barrier = threading.Barrier(4)
    together = [None] * 4

    def worker(i):
        model, x, labels = problems[i]
        losses = train(model, make_optimizer(kind, model), x, labels, steps, barrier)
        together[i] = (losses, snapshot(model))

    run_threads(*[lambda i=i: worker(i) for i in range(4)], barrier=barrier)
    assert autograd._all_recording and autograd._threads_not_recording == 0  # the summary never drifts
    for (losses_a, params_a), (losses_t, params_t) in zip(alone, together):
        assert losses_t == losses_a
        for pa, pt in zip(params_a, params_t):
            np.testing.assert_array_equal(pt, pa)


def test_pooled_buffers_are_never_shared_between_threads():
    """Products large enough for the buffer pool, computed in two threads at once."""
    rng = np.random.default_rng(5)
    n = max(256, int(np.sqrt(buffers.MIN_BYTES // 4)) + 1)
    mats = [rng.standard_normal((n, n)).astype(np.float32) for _ in range(2)]
    barrier = threading.Barrier(2)
    got = [[], []]

    def worker(i):
        w = xg.tensor(mats[i], requires_grad=True)
        for _ in range(10):
            barrier.wait(TIMEOUT)
            (w @ w.T).sum().backward()  # the product and both gradients come from the pool
            got[i].append(w.grad.numpy().sum(axis=1))
            w.grad = None

    run_threads(lambda: worker(0), lambda: worker(1), barrier=barrier)
    for i in range(2):
        for g in got[i]:  # the same W every time: the same gradient, bitwise
            np.testing.assert_array_equal(g, got[i][0])
        w = mats[i].astype(np.float64)  # d/dW sum(W W^T) = 2 (1 1^T) W
        np.testing.assert_allclose(got[i][0], (2 * np.ones((n, n)) @ w).sum(axis=1), rtol=1e-3)


def test_inference_loop_under_no_grad_while_another_thread_trains():
    model, x, labels = make_problem(1)
    reference_model, _, _ = make_problem(1)
    opt = make_optimizer("adam", model)
    expected = train(reference_model, make_optimizer("adam", reference_model), x, labels, steps=20)
    frozen, probe, _ = make_problem(2)
    with xg.no_grad():
        frozen_out = frozen(probe).numpy().copy()
    done, fresh = threading.Event(), threading.Event()
    served = []
    started = threading.Barrier(2)

    def serving():
        started.wait(TIMEOUT)
        while not done.is_set():
            with xg.no_grad():
                out = frozen(probe)
                assert out._node is None and not out.requires_grad
                served.append(np.array_equal(out.numpy(), frozen_out))
            fresh.set()

    def training():
        started.wait(TIMEOUT)
        losses = []
        try:
            for _ in range(20):  # every step waits for a prediction served since the last one
                assert fresh.wait(TIMEOUT)
                fresh.clear()
                losses += train(model, opt, x, labels, steps=1)
        finally:
            done.set()
        assert losses == expected

    run_threads(serving, training, barrier=started)
    assert len(served) >= 20 and all(served)
    for p, q in zip(model.parameters(), reference_model.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_backward_in_many_short_lived_threads():
    rng = np.random.default_rng(3)
    values = rng.standard_normal((48, 5))
    results = [None] * len(values)
    barrier = threading.Barrier(8)

    def worker(i):
        if i < 8:
            barrier.wait(TIMEOUT)
        x = xg.tensor(values[i], dtype="float64", requires_grad=True)
        y = (xg.sigmoid(x) * x).sum()
        y.backward()
        results[i] = x.grad.numpy()

    for start in range(0, len(values), 8):  # waves of 8 threads, each thread one backward
        run_threads(*[lambda i=i: worker(i) for i in range(start, start + 8)], barrier=barrier)
    s = 1 / (1 + np.exp(-values))
    np.testing.assert_allclose(np.stack(results), s + values * s * (1 - s), rtol=1e-12)


def test_use_kernels_off_in_one_thread_leaves_another_on():
    rng = np.random.default_rng(4)
    data = rng.standard_normal((64, 64)).astype(np.float32)
    inside, other, switched = threading.Event(), threading.Event(), []

    def sigmoid_grad():
        x = xg.tensor(data, requires_grad=True)
        xg.sigmoid(x).sum().backward()
        return x.grad.numpy()

    with_kernels = sigmoid_grad()
    with fns.use_kernels(False):
        without_kernels = sigmoid_grad()
    got = {}

    def off():
        with fns.use_kernels(False):
            inside.set()
            assert other.wait(TIMEOUT)
            switched.append(fns.kernels_enabled())
            got["off"] = sigmoid_grad()

    def on():
        assert inside.wait(TIMEOUT)
        try:
            switched.append(fns.kernels_enabled())
            got["on"] = sigmoid_grad()
        finally:
            other.set()

    run_threads(off, on)
    assert sorted(switched) == [False, True]
    np.testing.assert_array_equal(got["on"], with_kernels)
    np.testing.assert_array_equal(got["off"], without_kernels)


def test_use_backend_in_one_thread_leaves_another_on_the_default():
    pytest.importorskip("array_api_strict")
    inside, checked = threading.Event(), threading.Event()
    kinds = {}

    def strict():
        with xg.use_backend("array_api_strict"):
            inside.set()
            assert checked.wait(TIMEOUT)
            kinds["strict"] = type(xg.zeros(2).data).__module__.split(".")[0]

    def default():
        assert inside.wait(TIMEOUT)
        try:
            kinds["default"] = type(xg.zeros(2).data).__module__.split(".")[0]
        finally:
            checked.set()

    run_threads(strict, default)
    assert kinds == {"strict": "array_api_strict", "default": "numpy"}
