"""xg.capture: N captured calls leave exactly what N eager calls leave (NumPy: bit for bit).

Each test builds the same model twice from one seed, runs the step eagerly on one and through
xg.capture on the other, on the same batches, and compares every returned value, parameter,
gradient and optimizer buffer after every call.
"""

import gc
import tracemalloc

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import nn, optim
from xpgrad.capture import CaptureError, CaptureWarning
from xpgrad.train import batch_step

STEPS = 6


def _batches(n_in, n_out, loss, steps=STEPS, batch=16, seed=1, sizes=None):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(steps):
        rows = sizes[k] if sizes else batch
        x = xg.tensor(rng.standard_normal((rows, n_in)).astype(np.float32))
        if loss == "mse":
            y = xg.tensor(rng.standard_normal((rows, n_out)).astype(np.float32))
        else:
            y = xg.tensor(rng.integers(0, n_out, rows))
        out.append((x, y))
    return out


LOSSES = {"ce": xg.softmax_cross_entropy, "mse": xg.mse_loss, "hinge": xg.hinge_loss}


def _setup(activation="relu", bias=True, dropout=0.0, optimizer="sgd", loss="ce", schedule=None, seed=0):
    xg.manual_seed(seed)
    model = nn.MLP([8, 12, 12, 3], activation=activation, bias=bias, dropout=dropout)
    params = model.parameters()
    opt = optim.SGD(params, lr=0.05, momentum=0.9) if optimizer == "sgd" else optim.Adam(params, lr=0.01)
    sched = None
    if schedule == "step":
        sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    elif schedule == "cosine":
        sched = optim.CosineLR(opt, total_steps=5, min_lr=0.001)
    loss_fn = LOSSES[loss]

    def step(x, y):
        out = loss_fn(model(x), y)
        opt.zero_grad()
        out.backward()
        opt.step()
        if schedule == "step":
            sched.step()  # inside the step: recorded, runs on every replay
        return out

    return model, opt, sched, step


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def _assert_same_state(m1, o1, m2, o2):
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert _same(p.data, q.data)
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert _same(p.grad.data, q.grad.data)
    assert o1.lr == o2.lr
    for s1, s2 in zip(o1.state, o2.state):
        assert s1.keys() == s2.keys()
        for k in s1:
            assert _same(s1[k], s2[k]) if isinstance(s1[k], np.ndarray) else s1[k] == s2[k]


def _run_pair(steps=None, outside=None, **config):
    """Eager and captured runs of one config; returns the captured callable."""
    m1, o1, s1, eager = _setup(**config)
    m2, o2, s2, raw = _setup(**config)
    captured = xg.capture(raw)
    batches = steps or _batches(8, 3, config.get("loss", "ce"))
    seed = 123
    for k, (x, y) in enumerate(batches):
        xg.manual_seed(seed + k)  # dropout draws from the generator as it is at the call
        a = eager(x, y)
        xg.manual_seed(seed + k)
        b = captured(x, y)
        assert _same(a.data, b.data), f"call {k}: loss {a.item()} vs {b.item()}"
        _assert_same_state(m1, o1, m2, o2)
        if outside:
            outside(s1)
            outside(s2)
    return captured


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("bias", [True, False])
def test_mlp_steps_equal_eager(optimizer, activation, bias):
    captured = _run_pair(optimizer=optimizer, activation=activation, bias=bias)
    assert captured.stats["replays"] == STEPS - 2  # call 1 warms up, call 2 records


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_dropout_draws_fresh_masks_like_eager(optimizer):
    captured = _run_pair(optimizer=optimizer, dropout=0.3)
    assert captured.stats["replays"] == STEPS - 2


def test_dropout_mask_changes_between_replays():
    """Not the captured mask: two replays from one model state with other seeds differ."""
    xg.manual_seed(0)
    layer = nn.Dropout(0.5)
    x = xg.ones(4, 50, requires_grad=True)
    step = xg.capture(lambda x: layer(x) * 1.0)
    for _ in range(2):
        step(x)
    xg.manual_seed(1)
    first = step(x)
    xg.manual_seed(2)
    second = step(x)
    assert step.stats["replays"] == 2
    assert not _same(first.data, second.data)
    xg.manual_seed(1)
    assert _same(first.data, (layer(x) * 1.0).data)


@pytest.mark.parametrize("loss", ["ce", "mse", "hinge"])
def test_losses_equal_eager(loss):
    captured = _run_pair(loss=loss)
    assert captured.stats["replays"] == STEPS - 2


def test_schedule_inside_step_takes_effect_on_replay():
    captured = _run_pair(schedule="step", optimizer="sgd")
    assert captured.stats["replays"] == STEPS - 2


def test_schedule_outside_step_takes_effect_on_replay():
    captured = _run_pair(schedule="cosine", optimizer="adam", outside=lambda sched: sched.step())
    assert captured.stats["replays"] == STEPS - 2


def test_shape_change_mid_run_captures_again():
    sizes = [16, 16, 16, 16, 5, 5, 5, 16, 16]
    captured = _run_pair(steps=_batches(8, 3, "ce", steps=len(sizes), sizes=sizes))
    assert captured.stats["captures"] == 2
    assert captured.stats["replays"] == 5  # 16 rows: calls 3, 4, 8, 9; 5 rows: call 7


def test_returned_values_stay_valid_across_calls():
    _m, _o, _s, raw = _setup()
    step = xg.capture(raw)
    losses, kept = [], []
    for x, y in _batches(8, 3, "ce"):
        loss = step(x, y)
        kept.append(loss)
        losses.append(loss.item())
    assert step.stats["replays"] == STEPS - 2
    assert [t.item() for t in kept] == losses
    assert len(set(losses)) == len(losses)


def _notes_net(seed=0):
    rng = np.random.default_rng(seed)
    x = xg.tensor(rng.standard_normal((16, 10)).astype(np.float32))
    y = xg.tensor(rng.standard_normal((16, 2)).astype(np.float32))
    w1 = xg.tensor(rng.standard_normal((10, 20)).astype(np.float32) * 0.1, requires_grad=True)
    w2 = xg.tensor(rng.standard_normal((20, 2)).astype(np.float32) * 0.1, requires_grad=True)
    lr = 1e-3

    def step():
        h = xg.sigmoid(x @ w1)
        loss = ((h @ w2 - y) ** 2).sum()
        loss.backward()
        for p in (w1, w2):
            p.data -= lr * p.grad.data
            p.grad = None
        return loss

    return (w1, w2), step


def test_notes_net_with_manual_update():
    (a1, a2), eager = _notes_net()
    (b1, b2), raw = _notes_net()
    step = xg.capture(raw)
    for _k in range(STEPS):
        la, lb = eager(), step()
        assert _same(la.data, lb.data)
        assert _same(a1.data, b1.data) and _same(a2.data, b2.data)
        assert b1.grad is None and b2.grad is None
    assert step.stats["replays"] == STEPS - 2


def test_accumulated_gradients_without_zero_grad():
    """No zero_grad: every call adds to .grad, which the replay reads back each call."""

    def setup():
        xg.manual_seed(0)
        w = xg.randn(5, 3, requires_grad=True)

        def step(x):
            loss = (x @ w).sum()
            loss.backward()
            return loss

        return w, step

    w1, eager = setup()
    w2, raw = setup()
    step = xg.capture(raw)
    x = xg.tensor(np.arange(10, dtype=np.float32).reshape(2, 5))
    for _ in range(STEPS):
        eager(x)
        step(x)
        assert _same(w1.grad.data, w2.grad.data)
    assert step.stats["replays"] == STEPS - 2


def test_item_mid_step_is_refused_with_the_line():
    m, o, _s, _ = _setup()

    def step(x, y):
        loss = xg.softmax_cross_entropy(m(x), y)
        if loss.item() > 100:  # a value read back in the middle of the step
            return loss
        o.zero_grad()
        loss.backward()
        o.step()
        return loss

    captured = xg.capture(step)
    (x, y), (x2, y2) = _batches(8, 3, "ce", steps=2)
    captured(x, y)
    with pytest.raises(CaptureError) as info:
        captured(x2, y2)
    message = str(info.value)
    assert "Tensor.item()" in message and "test_capture.py" in message


@pytest.mark.parametrize("read", [float, bool, lambda t: t.numpy(), lambda t: print(t)])
def test_other_host_reads_are_refused(read):
    w = xg.tensor(np.ones((3, 3), np.float32), requires_grad=True)

    def step(x):
        loss = (x @ w).sum()
        read(loss)
        return loss

    captured = xg.capture(step)
    x = xg.ones(2, 3)
    captured(x)
    with pytest.raises(CaptureError):
        captured(x)


def test_check_mode_catches_a_branch_that_flips():
    w = xg.tensor(np.ones((3, 3), np.float32), requires_grad=True)
    calls = {"n": 0}

    def step(x):
        calls["n"] += 1
        y = x @ w
        if calls["n"] > 4:  # a Python branch on state the capture does not see as an input
            y = y * 2.0
        return y.sum()

    captured = xg.capture(step, check=True)
    x = xg.ones(2, 3)
    for _ in range(4):
        captured(x)
    assert captured.stats["checks"] == 2
    with pytest.raises(CaptureError, match="ran other ops"):
        captured(x)


def test_check_mode_passes_a_static_step():
    _m, _o, _s, raw = _setup(optimizer="adam", dropout=0.2)
    step = xg.capture(raw, check=True)
    for x, y in _batches(8, 3, "ce"):
        step(x, y)
    assert step.stats["checks"] == STEPS - 2


def test_closure_scalar_change_captures_again():
    w = xg.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    scale = 2.0

    def step(x):
        return (x @ w * scale).sum()

    captured = xg.capture(step)
    x = xg.ones(4, 3)
    for _ in range(3):
        assert captured(x).item() == 48.0
    scale = 3.0
    assert captured(x).item() == 72.0
    assert captured.stats["recaptures"] == 1


def test_eval_mode_is_not_replayed_as_training():
    xg.manual_seed(0)
    model = nn.MLP([4, 8, 2], dropout=0.5)
    step = xg.capture(lambda x: model(x))
    x = xg.ones(3, 4)
    for _ in range(3):
        step(x)
    model.eval()
    assert _same(step(x).data, model(x).data)


def test_recapturing_warns():
    """A closure value that keeps changing records the step again and again: a warning once the
    captures pass the signature limit."""
    w = xg.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    scale = 1.0

    def fn(x):
        return (x @ w * scale).sum()

    step = xg.capture(fn, max_signatures=2)
    x = xg.ones(4, 3)
    with pytest.warns(CaptureWarning, match="captured 3 times"):
        for scale in (1.0, 2.0, 3.0):
            for _ in range(3):
                assert step(x).item() == 24.0 * scale
    assert step.stats["signatures"] == 1 and step.stats["captures"] == 3


def test_signatures_that_never_repeat_warn_and_cache_is_bounded():
    """A function called with a new shape every time is never captured (a signature runs eagerly
    until it repeats): the signature counter says so, and a warning once it passes the cache."""
    w = xg.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    step = xg.capture(lambda x: (x @ w).sum(), max_signatures=2)
    with pytest.warns(CaptureWarning, match="called with 3 different signatures"):
        for rows in (1, 2, 3):
            step(xg.ones(rows, 3))
    assert step.stats["signatures"] == 3 and step.stats["captures"] == 0 and step.stats["eager"] == 3
    assert len(step._cache) == 2  # bounded: the oldest signature went


def test_other_namespaces_run_eagerly_with_the_same_results():
    pytest.importorskip("array_api_strict")
    results = []
    for name in ("numpy", "array_api_strict"):
        with xg.use_backend(name):
            xg.manual_seed(0)
            model = nn.MLP([4, 6, 2])
            opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            captured = xg.capture(batch_step(model, opt, xg.softmax_cross_entropy))
            x = xg.tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
            y = xg.tensor(np.array([0, 1, 1]))
            results.append([captured(x, y).item() for _ in range(4)])
            if name == "array_api_strict":
                assert captured.stats["eager"] == 4 and captured.stats["replays"] == 0
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5)


def test_steady_state_replay_allocates_nothing():
    _m, _o, _s, raw = _setup(optimizer="adam")
    step = xg.capture(raw)
    x, y = _batches(8, 3, "ce", steps=1)[0]
    for _ in range(50):
        step(x, y)
    gc.collect()
    tracemalloc.start()
    step(x, y)
    first, _ = tracemalloc.get_traced_memory()
    for _ in range(2000):
        step(x, y)
    gc.collect()
    now, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert step.stats["replays"] >= 2000
    assert now - first < 16 * 1024, f"traced memory grew by {now - first} bytes over 2000 replays"


def test_check_mode_catches_a_value_baked_in_by_untraced_numpy():
    """fn computes a factor with plain NumPy (no traced operand): capture bakes it in, and a
    replay after the array changes would be silently stale; check mode raises instead."""
    w = xg.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    scale = np.array([2.0], dtype=np.float32)

    def step(x):
        return (x @ w * xg.tensor(scale * 1.0)).sum()

    captured = xg.capture(step, check=True)
    x = xg.ones(4, 3)
    for _ in range(3):
        captured(x)
    scale[0] = 3.0
    with pytest.raises(CaptureError, match="differs from eager in result"):
        captured(x)


def test_temps_share_buffers_and_results_stay_equal():
    """Liveness planning gives some temps another's array; the values are still eager's."""
    captured = _run_pair(optimizer="adam", dropout=0.2)
    plan = next(iter(captured._cache.values())).plan
    assert plan.shared > 0


@pytest.mark.parametrize("loss", [xg.softmax_cross_entropy, xg.hinge_loss])
def test_bad_labels_on_replay_raise_the_eager_error(loss):
    model = nn.MLP([4, 5, 3])
    step = xg.capture(batch_step(model, optim.SGD(model.parameters(), lr=0.1), loss))
    x = xg.ones(2, 4)
    for _ in range(3):
        step(x, xg.tensor(np.array([0, 2])))
    with pytest.raises(xg.LabelError, match="labels must lie in \\[0, 3\\) for 3 classes, got min 0 and max 7"):
        step(x, xg.tensor(np.array([0, 7])))


_W = np.random.default_rng(5).standard_normal((6, 4))
OP_CASES = {  # gradients that depend on the data reach every op's backward (** 2 before the sum)
    "getitem slice": lambda x, w: ((x @ w)[1:3, ::2] ** 2).sum(),
    "getitem int": lambda x, w: ((x @ w)[2] ** 2).sum(),
    "getitem array": lambda x, w: ((x @ w)[xg.tensor(np.array([0, 2, 2]))] ** 2).sum(),
    "reshape, transpose": lambda x, w: ((x @ w).reshape(2, -1).T ** 2).sum(),
    "concat, stack": lambda x, w: (
        (xg.concat([x @ w, x @ w * 2], axis=1) ** 2).sum() + (xg.stack([x @ w, x @ w]) ** 2).mean()
    ),
    "max, min over an axis": lambda x, w: ((x @ w) ** 2).max(axis=1).sum() + ((x @ w) ** 2).min(axis=0).sum(),
    "where, maximum": lambda x, w: (
        (xg.where((x @ w) > 0, x @ w, (x @ w) * 0.1) ** 2).sum() + xg.maximum(x @ w, 0.5).sum()
    ),
    "exp, log, sqrt, abs": lambda x, w: (xg.log(xg.exp(x @ w) + 1.0) + xg.sqrt(xg.abs(x @ w) + 1.0)).mean(),
    "softmax, log_softmax": lambda x, w: (xg.softmax(x @ w, axis=1) * xg.log_softmax(x @ w, axis=0)).sum(),
    "elu, tanh, leaky_relu, div": lambda x, w: (
        xg.elu(x @ w) / (xg.tanh(x @ w) ** 2 + 1.0) + xg.leaky_relu(x @ w)
    ).sum(),
    "mean over an axis, pow 3": lambda x, w: (((x @ w) - (x @ w).mean(axis=0, keepdims=True)) ** 3).sum(),
}


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_op_gradients_equal_eager(case):
    f = OP_CASES[case]

    def setup():
        w = xg.tensor(_W.copy(), requires_grad=True)

        def step(x):
            w.grad = None
            y = f(x, w)
            y.backward()
            return y

        return w, step

    (w1, eager), (w2, raw) = setup(), setup()
    captured = xg.capture(raw)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = xg.tensor(rng.standard_normal((5, 6)))
        assert _same(eager(x).data, captured(x).data)
        assert _same(w1.grad.data, w2.grad.data)
    assert captured.stats["replays"] == 3


@pytest.mark.parametrize("draw", [xg.randn, xg.rand])
def test_random_tensors_made_inside_the_step_are_fresh(draw):
    """xg.randn / xg.rand inside fn draw on every replay, the values eager draws."""
    w = xg.tensor(np.ones((3, 2), np.float32), requires_grad=True)

    def step(x):
        return ((x + draw(*x.shape)) @ w).sum()

    captured = xg.capture(step)
    x = xg.ones(4, 3)
    got, want = [], []
    for k in range(5):
        xg.manual_seed(k)
        got.append(captured(x).item())
        xg.manual_seed(k)
        want.append(step(x).item())
    assert got == want and len(set(got)) == 5
    assert captured.stats["replays"] == 3


def test_tensor_made_from_a_traced_value_is_recorded():
    """xg.tensor(t.data * 2) inside fn copies a value that changes with the input."""
    w = xg.tensor(np.ones((3, 2), np.float32), requires_grad=True)

    def step(x):
        return (xg.tensor(x.data * 2.0) @ w).sum()

    captured = xg.capture(step)
    for k in range(5):
        x = xg.full((4, 3), float(k))
        assert captured(x).item() == step(x).item() == 48.0 * k
    assert captured.stats["replays"] == 3


def test_a_capture_in_one_thread_leaves_another_threads_steps_alone():
    """Thread A captures and replays its step while thread B trains eagerly: both get exactly
    what one eager run gets (the capture flag and recorder are per thread)."""
    import threading

    batches = _batches(8, 3, "ce", steps=40)

    def prepare(capture):  # weights drawn here, one model at a time, from the shared generator
        m, o, s, raw = _setup(optimizer="adam", seed=3)
        return m, (xg.capture(raw) if capture else raw)

    def train(model, step, results, key):
        losses = [step(x, y).item() for x, y in batches]
        results[key] = (losses, [p.data.copy() for p in model.parameters()])

    reference = {}
    train(*prepare(False), reference, "eager")
    together = {}
    runs = {"captured": prepare(True), "eager": prepare(False)}
    threads = [threading.Thread(target=train, args=(*runs[name], together, name)) for name in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for name in runs:
        assert together[name][0] == reference["eager"][0]
        for a, b in zip(together[name][1], reference["eager"][1]):
            assert _same(a, b)
    assert runs["captured"][1].stats["replays"] == len(batches) - 2


def test_capture_as_a_method_decorator():
    class Trainer:
        def __init__(self):
            xg.manual_seed(0)
            self.model = nn.MLP([8, 12, 3])
            self.opt = optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)

        @xg.capture
        def step(self, x, y):
            loss = xg.softmax_cross_entropy(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            return loss

    captured, eager = Trainer(), Trainer()
    for x, y in _batches(8, 3, "ce"):
        assert _same(captured.step(x, y).data, Trainer.step.fn(eager, x, y).data)
    for p, q in zip(captured.model.parameters(), eager.model.parameters()):
        assert _same(p.data, q.data)
    assert Trainer.step.stats["replays"] == STEPS - 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_replay_bit_for_bit_whichever_blas_call_they_take(dtype):
    """A 2-D product replays as np.dot where that is the same gemm as np.matmul; products with a
    dimension of 1 (gemv) and x @ x.T (syrk) stay matmul. Either way: eager's bits."""
    rng = np.random.default_rng(3)
    x_data = rng.standard_normal((6, 5)).astype(dtype)
    col_data, row_data = rng.standard_normal((5, 1)).astype(dtype), rng.standard_normal((1, 6)).astype(dtype)

    def make():
        w = xg.tensor(rng.standard_normal((5, 4)).astype(dtype), requires_grad=True)
        return w

    def step(x, w, col, row):
        general = x @ w  # (6, 4): gemm
        gram = x @ x.T  # (6, 6): syrk in BLAS
        matvec = x @ col  # (6, 1): gemv
        vecmat = row @ x  # (1, 5): gemv
        loss = (general * general).sum() + gram.sum() + matvec.sum() + vecmat.sum()
        w.grad = None
        loss.backward()
        return loss, general, gram, matvec, vecmat

    w_eager = make()
    w_captured = xg.tensor(w_eager.data.copy(), requires_grad=True)
    captured = xg.capture(step)
    for k in range(5):
        args = [xg.tensor(a + k) for a in (x_data, col_data, row_data)]
        eager_out = step(args[0], w_eager, args[1], args[2])
        captured_out = captured(args[0], w_captured, args[1], args[2])
        for a, b in zip(eager_out, captured_out):
            assert _same(a.data, b.data)
        assert _same(w_eager.grad.data, w_captured.grad.data)
    assert captured.stats["replays"] == 3
    plan = next(iter(captured._cache.values())).plan
    calls = {
        fn: sum(plan.source.count(f"{name}(") for name, value in plan.globals.items() if value is fn)
        for fn in (np.dot, np.matmul)
    }
    assert calls[np.dot] >= 1 and calls[np.matmul] >= 3  # x @ w (and its gradient); x @ x.T, the gemv ones


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", ["sub", "add_reversed", "temp_read_later"])
def test_manual_update_replays_in_one_pass_with_eager_bits(dtype, form):
    """`p.data -= lr * p.grad.data` replays as one exact pass (kernels.unchecked.scaled_add) when the
    product is a temporary nothing else reads; values stay eager's bit for bit either way."""
    from xpgrad import kernels

    rng = np.random.default_rng(5)
    w0 = rng.standard_normal((7, 3)).astype(dtype)
    lr = 0.0137  # not a power of two: the product's rounding matters

    def setup():
        w = xg.tensor(w0.copy(), requires_grad=True)
        total = xg.tensor(np.zeros_like(w0))  # the sum of the updates, where the product is read again

        def step(x):
            loss = ((x @ w) ** 2).sum()
            w.grad = None
            loss.backward()
            with xg.no_grad():
                if form == "sub":
                    w.data -= lr * w.grad.data
                elif form == "add_reversed":
                    w.data += w.grad.data * -lr
                else:
                    t = lr * w.grad.data
                    w.data -= t
                    total.data += t  # the product read again: no fusion
            return loss

        return w, total, step

    w_eager, total_eager, eager = setup()
    w_captured, total_captured, raw = setup()
    captured = xg.capture(raw)
    for k in range(6):
        x = xg.tensor(rng.standard_normal((4, 7)).astype(dtype) + k)
        assert _same(eager(x).data, captured(x).data)
        assert _same(w_eager.data, w_captured.data) and _same(total_eager.data, total_captured.data)
    plan = next(iter(captured._cache.values())).plan
    fused = any(value is kernels.unchecked.scaled_add for value in plan.globals.values())
    assert fused == (form != "temp_read_later")
