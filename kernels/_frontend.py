"""Argument checks, layout and outputs shared by the CPU and CUDA kernels.

Each public kernel in cpu.py and cuda.py is one call into a function here, with a `run`
callable that launches the backend kernel. `run` always gets C-contiguous arrays (flattened to
1-D for the elementwise kernels). Layout rule: a non-contiguous input is copied to a contiguous
one; a non-contiguous output or in-place array is computed in a contiguous copy and written back
(one extra pass each; contiguous arrays are never copied). Works on NumPy arrays (CPU kernels,
and the CUDA simulator) and CuPy arrays; the array module is taken from the array's type.
"""
import math
import sys

from ._scalar import ACTIVATIONS, IDENTITY, RELU, SIGMOID


def _xp(a):
    """numpy or cupy, whichever `a` belongs to."""
    return sys.modules[type(a).__module__.partition(".")[0]]


def _check(*arrays, dtype=None, shape=None):
    """All arrays have one float32/float64 dtype and one shape (the first array's, or the given)."""
    dtype = arrays[0].dtype if dtype is None else dtype
    shape = arrays[0].shape if shape is None else shape
    if dtype.char not in "fd":  # float32 or float64 (cheaper than dtype.name)
        raise TypeError(f"kernels take float32 or float64 arrays, got {dtype}")
    for a in arrays:
        if a.dtype is not dtype and a.dtype != dtype:
            raise TypeError(f"dtype mismatch: {a.dtype} vs {dtype}")
        if a.shape != shape:
            raise ValueError(f"shape mismatch: {a.shape} vs {shape}")


def _contiguous(a):
    return a if a.flags.c_contiguous else a.copy()


def _write_back(target, buf):
    if buf is not target:
        target[...] = buf


def _activation(name, allowed):
    code = ACTIVATIONS.get(name)
    if code not in allowed:
        raise ValueError(f"activation must be one of {[n for n, c in ACTIVATIONS.items() if c in allowed]}, got {name!r}")
    return code


def _matrix(a, name):
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, M), got shape {a.shape}")


def _ints(a):
    """Integer index array as contiguous int64 (a copy only when needed)."""
    if a.dtype.kind not in "iu":
        raise TypeError(f"index arrays must be integer, got {a.dtype}")
    return _contiguous(a.astype(_xp(a).int64, copy=False))


def _elementwise(run, written, arrays, *scalars):
    """run(*flat arrays, *scalars); arrays[-written:] are written and copied back if needed.

    Inlined checks on purpose: this path is per-call overhead (~0.8 us for three arrays).
    """
    bufs = [a if a.flags.c_contiguous else a.copy() for a in arrays]
    run(*[b if b.ndim == 1 else b.reshape(-1) for b in bufs], *scalars)
    for a, b in zip(arrays[-written:], bufs[-written:]):
        if b is not a:
            a[...] = b


def _ready(dtype, *arrays) -> bool:
    """All arrays C-contiguous with exactly `dtype` (float32/float64): the checks can be skipped."""
    if dtype.char not in "fd":
        return False
    for a in arrays:
        if a.dtype is not dtype or not a.flags.c_contiguous:
            return False
    return True


def sigmoid_backward(run, y, dy, out):
    if out is not None and y.shape == dy.shape == out.shape and _ready(y.dtype, y, dy, out):
        run(y.reshape(-1), dy.reshape(-1), out.reshape(-1))  # common case: contiguous views, no copies
        return out
    out = _xp(y).empty_like(y) if out is None else out
    _check(y, dy, out)
    _elementwise(run, 1, (y, dy, out))
    return out


def bias_act_backward(run, y, dy, activation, dz_out):
    xp = _xp(y)
    act = ACTIVATIONS.get(activation, -1)
    if (dz_out is not None and act in (SIGMOID, RELU) and y.ndim == 2 and y.shape == dy.shape == dz_out.shape
            and _ready(y.dtype, y, dy, dz_out)):
        acc = xp.zeros(y.shape[1], xp.float64)
        run(y, dy, dz_out, act, acc)  # the common case, checked in one pass
        return dz_out, acc.astype(y.dtype)
    act = _activation(activation, (SIGMOID, RELU))
    _matrix(y, "y")
    dz = xp.empty_like(y) if dz_out is None else dz_out
    _check(y, dy, dz)
    acc = xp.zeros(y.shape[1], xp.float64)
    buf = _contiguous(dz)
    run(_contiguous(y), _contiguous(dy), buf, act, acc)
    _write_back(dz, buf)
    return dz, acc.astype(y.dtype)


def bias_act_forward(run, z, b, activation, out):
    act = ACTIVATIONS.get(activation, -1)
    if (out is not None and z.ndim == 2 and act in (IDENTITY, SIGMOID, RELU) and out.shape == z.shape
            and b.shape == z.shape[1:] and _ready(z.dtype, z, b, out)):
        run(z, b, act, out)  # the common case, checked in one pass (this path is per-layer overhead)
        return out
    act = _activation(activation, (IDENTITY, SIGMOID, RELU))
    if z.ndim not in (1, 2):
        raise ValueError(f"z must be 1-D or 2-D, got shape {z.shape}")
    out = _xp(z).empty_like(z) if out is None else out
    _check(z, out)
    _check(b, dtype=z.dtype, shape=z.shape[-1:])
    buf = _contiguous(out)
    rows = (1, -1) if z.ndim == 1 else z.shape
    run(_contiguous(z).reshape(rows), _contiguous(b), act, buf.reshape(rows))
    _write_back(out, buf)
    return out


def softmax_xent_forward(run, logits, labels, out):
    _matrix(logits, "logits")
    xp = _xp(logits)
    probs = xp.empty_like(logits) if out is None else out
    _check(logits, probs)
    acc = xp.zeros(1, xp.float64)
    buf = _contiguous(probs)
    run(_contiguous(logits), _ints(labels), buf, acc)
    _write_back(probs, buf)
    return (acc / max(logits.shape[0], 1)).astype(logits.dtype).reshape(()), probs


def softmax_xent_backward(run, probs, labels, scale, out):
    _matrix(probs, "probs")
    out = _xp(probs).empty_like(probs) if out is None else out
    _check(probs, out)
    buf = _contiguous(out)
    run(_contiguous(probs), _ints(labels), probs.dtype.type(scale), buf)
    _write_back(out, buf)
    return out


def sgd_update(run, param, grad, velocity, lr, momentum, weight_decay, nesterov):
    f = param.dtype.type
    if velocity is None:
        if momentum != 0:
            raise ValueError("momentum != 0 needs a velocity buffer")
        _check(param, grad)  # grad stands in for the velocity, never read when momentum == 0
        _elementwise(run, 1, (grad, grad, param), f(lr), f(0), f(weight_decay), False)
    else:
        _check(param, grad, velocity)
        _elementwise(run, 2, (grad, velocity, param), f(lr), f(momentum), f(weight_decay), bool(nesterov))


def adam_update(run, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    _check(param, grad, m, v)
    f = param.dtype.type
    _elementwise(run, 3, (grad, m, v, param), f(lr / (1 - beta1**step)), f(beta2), f(1 - beta1),
                 f(1 - beta2), f(eps), f(weight_decay), f(math.sqrt(1 - beta2**step)))


def scatter_add(run, target, indices, values):
    if target.ndim < 1 or indices.ndim != 1:
        raise ValueError("scatter_add needs target.ndim >= 1 and 1-D indices")
    _check(target)
    _check(values, dtype=target.dtype, shape=indices.shape + target.shape[1:])
    buf = _contiguous(target)
    cols = math.prod(target.shape[1:])
    run(buf.reshape(target.shape[0], cols), _ints(indices), _contiguous(values).reshape(indices.shape[0], cols))
    _write_back(target, buf)
