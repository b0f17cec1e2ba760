"""xpgrad.optim: SGD and Adam against hand-written NumPy updates, state dicts, and LR schedules."""

import math

import numpy as np
import pytest

import xpgrad as xg
from xpgrad import nn, optim
from xpgrad.errors import XpgradError

STEPS = 5


def make_problem(seed=0, shapes=((3, 4), (4,))):
    """Parameters (float64) and a fixed sequence of gradients for each of STEPS steps."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(STEPS)]
    params = [xg.tensor(a.copy(), dtype="float64", requires_grad=True) for a in init]
    return init, grads, params


def run(opt, params, grads):
    data_ids = [id(p.data) for p in params]
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = xg.tensor(g, dtype="float64")
        opt.step()
    assert [id(p.data) for p in params] == data_ids  # updated in place
    return [p.numpy() for p in params]


def reference_sgd(init, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """PyTorch's SGD (dampening 0), written out step by step."""
    ws = [w.copy() for w in init]
    bufs = [None] * len(ws)
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            d = g + weight_decay * ws[i]
            if momentum:
                bufs[i] = d.copy() if bufs[i] is None else momentum * bufs[i] + d
                d = d + momentum * bufs[i] if nesterov else bufs[i]
            ws[i] = ws[i] - lr * d
    return ws


def reference_adam(init, grads, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    """Kingma & Ba's Adam with bias correction (L2 weight decay added to the gradient)."""
    ws = [w.copy() for w in init]
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            g = g + weight_decay * ws[i]
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            m_hat = ms[i] / (1 - b1**t)
            v_hat = vs[i] / (1 - b2**t)
            ws[i] = ws[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return ws


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.03, momentum=0.8, nesterov=True, weight_decay=0.05),
]


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_sgd_matches_reference(kwargs):
    init, grads, params = make_problem()
    got = run(optim.SGD(params, **kwargs), params, grads)
    for g, w in zip(got, reference_sgd(init, grads, **kwargs)):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_sgd_variants_differ():
    """Guard against the reference and the code agreeing by ignoring an option."""
    results = []
    for kwargs in SGD_CASES[1:4]:
        init, grads, params = make_problem()
        results.append(run(optim.SGD(params, **kwargs), params, grads)[0])
    assert not np.allclose(results[0], results[1]) and not np.allclose(results[0], results[2])


@pytest.mark.parametrize(
    "kwargs", [dict(lr=1e-2), dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6), dict(lr=1e-2, weight_decay=0.1)]
)
def test_adam_matches_reference(kwargs):
    init, grads, params = make_problem(seed=1)
    opt = optim.Adam(params, **kwargs)
    got = run(opt, params, grads)
    ref_kwargs = dict(lr=kwargs["lr"], weight_decay=kwargs.get("weight_decay", 0.0), eps=kwargs.get("eps", 1e-8))
    if "betas" in kwargs:
        ref_kwargs["b1"], ref_kwargs["b2"] = kwargs["betas"]
    for g, w in zip(got, reference_adam(init, grads, **ref_kwargs)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    assert [st["step"] for st in opt.state] == [STEPS, STEPS]


def test_adam_first_step_moves_each_weight_by_about_lr():
    init, grads, params = make_problem(seed=2)
    run(optim.Adam(params, lr=0.01), params, grads[:1])
    np.testing.assert_allclose(np.abs(params[0].numpy() - init[0]), 0.01, rtol=1e-5)


def test_float32_parameters_stay_float32_and_learn_from_backward():
    xg.manual_seed(0)
    lin = nn.Linear(3, 1)
    x = xg.randn(16, 3)
    target = x @ xg.tensor([[1.0], [-2.0], [0.5]]) + 0.5
    opt = optim.SGD(lin.parameters(), lr=0.1, momentum=0.5)
    losses = []
    for _ in range(20):
        loss = xg.mse_loss(lin(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert lin.weight.dtype == np.float32 and opt.state[0]["velocity"].dtype == np.float32
    assert losses[-1] < 0.05 * losses[0]


def test_parameters_without_grad_are_skipped_and_zero_grad_clears():
    init, grads, params = make_problem()
    opt = optim.Adam(params, lr=0.1)
    params[0].grad = xg.tensor(grads[0][0], dtype="float64")
    opt.step()
    assert not np.array_equal(params[0].numpy(), init[0])
    np.testing.assert_array_equal(params[1].numpy(), init[1])
    assert "step" not in opt.state[1]
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_bad_arguments_are_rejected():
    _, _, params = make_problem()
    with pytest.raises(ValueError, match=r"lr must be in \(0"):
        optim.SGD(params, lr=0)
    with pytest.raises(ValueError, match=r"momentum must be in \[0.0, 1.0\)"):
        optim.SGD(params, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="nesterov=True needs a momentum"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([], lr=0.1)
    with pytest.raises(ValueError, match="appears more than once"):
        optim.Adam([params[0], params[0]])
    with pytest.raises(ValueError, match="requires_grad=True"):
        optim.Adam([xg.tensor([1.0])])
    with pytest.raises(TypeError, match="not an xpgrad Tensor"):
        optim.Adam([np.zeros(3)])
    with pytest.raises(ValueError, match="betas must be a pair"):
        optim.Adam(params, betas=0.9)


@pytest.mark.parametrize(
    "make", [lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), lambda ps: optim.Adam(ps, lr=0.01)]
)
def test_state_dict_round_trip_continues_identically(make):
    init, grads, params = make_problem(seed=3)
    opt = make(params)
    run(opt, params, grads[:3])
    state = opt.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state["buffers"].values()) and state["buffers"]
    snapshot = [p.numpy().copy() for p in params]
    run(opt, params, grads[3:])
    uninterrupted = [p.numpy().copy() for p in params]

    fresh = [xg.tensor(s, dtype="float64", requires_grad=True) for s in snapshot]
    opt2 = make(fresh)
    opt2.load_state_dict(state)
    run(opt2, fresh, grads[3:])
    for a, b in zip(uninterrupted, [p.numpy() for p in fresh]):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_mismatches():
    _, _, params = make_problem()
    adam = optim.Adam(params)
    sgd = optim.SGD(params, lr=0.1, momentum=0.9)
    with pytest.raises(optim.OptimizerStateError, match="state is of optimizer 'SGD'"):
        adam.load_state_dict(sgd.state_dict())
    with pytest.raises(optim.OptimizerStateError, match="holds 1 parameters, this optimizer 2"):
        adam.load_state_dict(optim.Adam(params[:1]).state_dict())
    _, grads, other = make_problem(shapes=((2, 2), (4,)))
    donor = optim.Adam(other)
    run(donor, other, grads[:1])
    with pytest.raises(optim.OptimizerStateError, match=r"buffer '0.m' has shape \(2, 2\)"):
        adam.load_state_dict(donor.state_dict())
    assert issubclass(optim.OptimizerStateError, XpgradError) and issubclass(optim.OptimizerStateError, ValueError)


def test_step_lr():
    _, _, params = make_problem()
    opt = optim.SGD(params, lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = [sched.step() for _ in range(6)]
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert opt.lr == 0.125
    with pytest.raises(ValueError, match="step_size must be a positive int"):
        optim.StepLR(opt, step_size=0)


def test_cosine_lr():
    _, _, params = make_problem()
    opt = optim.Adam(params, lr=0.1)
    sched = optim.CosineLR(opt, total_steps=4, min_lr=0.02)
    lrs = [sched.step() for _ in range(6)]
    expected = [0.02 + 0.08 * (1 + math.cos(math.pi * t / 4)) / 2 for t in (1, 2, 3, 4, 4, 4)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-15)
    assert lrs[1] == pytest.approx(0.06) and lrs[-1] == pytest.approx(0.02)
    state = sched.state_dict()
    opt2 = optim.Adam(params, lr=0.1)
    sched2 = optim.CosineLR(opt2, total_steps=4, min_lr=0.02)
    sched2.load_state_dict(state)
    assert opt2.lr == pytest.approx(0.02) and sched2.last_step == 6
    with pytest.raises(ValueError, match="exceeds"):
        optim.CosineLR(optim.Adam(params, lr=0.01), total_steps=3, min_lr=0.1)


def test_update_functions_work_on_raw_arrays_in_place():
    p = np.ones(3)
    g = np.full(3, 2.0)
    v = np.zeros(3)
    optim.sgd_update(p, g, v, 0.1, 0.9, 0.0, False)
    np.testing.assert_allclose(p, 0.8)
    np.testing.assert_allclose(v, 2.0)
    m, s = np.zeros(3), np.zeros(3)
    q = np.ones(3)
    optim.adam_update(q, g, m, s, 0.1, 0.9, 0.999, 1e-8, 0.0, 1)
    np.testing.assert_allclose(q, 0.9, rtol=1e-6)
    np.testing.assert_allclose(m, 0.2)
    np.testing.assert_allclose(s, 0.004)


def test_same_results_as_the_fused_kernels_when_present():
    kernels = pytest.importorskip("xpgrad.kernels")
    if not hasattr(kernels, "sgd_update") or not hasattr(kernels, "adam_update"):
        pytest.skip("xpgrad.kernels has no optimizer kernels")
    rng = np.random.default_rng(4)
    arrays = lambda: [rng.standard_normal(257).astype(np.float32) for _ in range(4)]  # noqa: E731
    for nesterov in (False, True):
        p, g, v, _ = arrays()
        p2, v2 = p.copy(), v.copy()
        optim.sgd_update(p, g, v, 0.05, 0.9, 0.01, nesterov)
        kernels.sgd_update(p2, g, v2, 0.05, 0.9, 0.01, nesterov)
        np.testing.assert_allclose(p, p2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(v, v2, rtol=1e-5, atol=1e-6)
    p, g, m, v = arrays()
    v = np.abs(v)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    optim.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3)
    kernels.adam_update(p2, g, m2, v2, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3)
    np.testing.assert_allclose(p, p2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m, m2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_large_parameters_update_the_same_on_every_backend(name):
    """The NumPy path takes the Numba kernel, array_api_strict the portable update."""
    from xpgrad import optim

    rng = np.random.default_rng(4)
    start, grad = rng.standard_normal((64, 100)), rng.standard_normal((64, 100))
    results = []
    for backend_name in ("numpy", "array_api_strict"):
        with xg.use_backend(backend_name):
            p = xg.tensor(start, requires_grad=True)
            g = xg.tensor(grad)
        opt = optim.SGD([p], lr=0.1, momentum=0.9) if name == "sgd" else optim.Adam([p], lr=0.01)
        for _ in range(3):
            p.grad = g
            opt.step()
        results.append(p.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-12)
    assert not np.allclose(results[0], start)


def test_fused_kernels_take_float_parameters_of_every_size():
    """A kernel call costs no more than NumPy's `p -= lr * g` even on a (2,) bias: no size threshold."""
    from xpgrad import kernels
    from xpgrad.fns import use_kernels

    small = np.ones(2, np.float32)
    assert optim._fused_kernels(small, small) is kernels
    assert optim._fused_kernels(np.ones(1), np.ones(1)) is kernels
    assert optim._fused_kernels(np.ones(2, np.float16), np.ones(2, np.float16)) is None
    assert optim._fused_kernels(small, np.ones(2)) is None  # mixed dtypes: the portable update
    with use_kernels(False):
        assert optim._fused_kernels(small, small) is None


def test_sgd_kernel_paths_match_the_portable_update_on_strided_parameters():
    """Plain SGD on contiguous float parameters takes the kernel's fast path, a strided parameter
    its copying path: both equal the portable NumPy update."""
    from xpgrad.fns import use_kernels

    rng = np.random.default_rng(5)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    grad = rng.standard_normal((6, 4)).astype(np.float32)
    results = []
    for kernels_on in (True, False):
        with use_kernels(kernels_on):
            contiguous = xg.tensor(base[:, :4].copy(), requires_grad=True)
            strided = xg.tensor(base.copy(), requires_grad=True)
            strided.data = strided.data[:, ::2]  # a view with strides: the checked kernel path
            opt = optim.SGD([contiguous, strided], lr=0.1, weight_decay=0.01)
            for _ in range(3):
                contiguous.grad, strided.grad = xg.tensor(grad), xg.tensor(grad)
                opt.step()
            results.append((contiguous.numpy().copy(), strided.numpy().copy()))
    for on, off in zip(*results):
        np.testing.assert_allclose(on, off, rtol=1e-6)
    assert not np.allclose(results[0][0], base[:, :4])
