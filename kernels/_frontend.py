"""Argument checks, layout and outputs shared by the CPU and CUDA kernels.

Each public kernel in cpu.py and cuda.py is one call into a function here, with a `run`
callable that launches the backend kernel. `run` always gets C-contiguous arrays in their own
shapes (the elementwise kernels flatten them themselves) and Python numbers as scalars (the
kernels cast them to the array dtype). Layout rule: a non-contiguous input is copied to a
contiguous one; a non-contiguous output or in-place array is computed in a contiguous copy and
written back (one extra pass each; contiguous arrays are never copied). Works on NumPy arrays
(CPU kernels, and the CUDA simulator) and CuPy arrays; the array module is taken from the
array's type.

The kernels of a training step first try a fast path for the common case (outputs given;
C-contiguous arrays, not 0-d, so no NumPy scalars, of one float32/float64 dtype; shapes that
agree; int64 labels), tested in one expression of plain attribute checks and no NumPy calls: on
the small arrays of a training step these checks, not the kernel, are most of the cost of a
call (~0.1 us per array; Numba's dispatch ~0.25 us). Anything else takes the general path,
which checks each argument, raises a specific error, and applies the layout rule (a NumPy
scalar input becomes a 0-d array).

cpu.py and cuda.py also export `unchecked`: the `run` callables of the two elementwise kernels
the engine calls on every layer (sigmoid backward, the bias/activation epilogue), for a caller
that has already tested what the fast path tests (`ready` plus the shapes, outputs allocated)
and so skips a second round of checks and two Python frames.
"""

import math
import sys

import numpy as np

from ._scalar import ACTIVATIONS, IDENTITY, RELU, SIGMOID

_INT64 = np.dtype(np.int64)  # CuPy arrays carry NumPy dtypes too
_GRAD_ACTIVATIONS = {name: ACTIVATIONS[name] for name in ("sigmoid", "relu")}  # those bias_act_backward takes


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
    """a itself when C-contiguous, else a contiguous copy (a NumPy scalar becomes a 0-d array)."""
    if isinstance(a, np.generic):
        return np.asarray(a)
    return a if a.flags.c_contiguous else a.copy()


def _write_back(target, buf):
    if buf is not target:
        target[...] = buf


def _activation(name, allowed):
    code = ACTIVATIONS.get(name)
    if code not in allowed:
        raise ValueError(
            f"activation must be one of {[n for n, c in ACTIVATIONS.items() if c in allowed]}, got {name!r}"
        )
    return code


def _matrix(a, name):
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, M), got shape {a.shape}")


def _labels(op, labels, n):
    """Integer labels of shape (n,) as contiguous int64 (a copy only when needed)."""
    ints = _ints(labels, f"{op}: labels")
    if labels.shape != (n,):
        raise ValueError(f"{op}: labels must have shape ({n},), one per row, got {labels.shape}")
    return ints


def _ints(a, what="index arrays"):
    """Integer array as contiguous int64 (a copy only when needed)."""
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integer, got {a.dtype}")
    return _contiguous(a.astype(_INT64, copy=False))


def _elementwise(run, written, arrays, *scalars):
    """The general path of the elementwise kernels: run(*contiguous arrays, *scalars), then
    arrays[-written:] (the ones the kernel writes) copied back where they were copies."""
    bufs = [_contiguous(a) for a in arrays]
    run(*bufs, *scalars)
    for a, b in zip(arrays[-written:], bufs[-written:]):
        if b is not a:
            a[...] = b


def ready(a, *others) -> bool:
    """a float32 or float64, the others of exactly its dtype, all C-contiguous: the fast path applies."""
    dtype = a.dtype
    if dtype.char not in "fd" or not a.flags.c_contiguous:
        return False
    for b in others:
        if b.dtype is not dtype or not b.flags.c_contiguous:
            return False
    return True


def _rows_ready(x, labels, out) -> bool:
    """The fast path of the softmax kernels: x and out (N, C) `ready`, labels contiguous int64 (N,)."""
    return (
        x.ndim == 2
        and out.shape == x.shape
        and labels.dtype is _INT64
        and labels.shape == x.shape[:1]
        and labels.flags.c_contiguous
        and ready(x, out)
    )


def sigmoid_backward(run, y, dy, out):
    if out is not None and y.ndim and y.shape == dy.shape == out.shape and ready(y, dy, out):
        run(y, dy, out)
        return out
    out = _xp(y).empty_like(y) if out is None else out
    _check(y, dy, out)
    _elementwise(run, 1, (y, dy, out))
    return out


def bias_act_backward(run, y, dy, activation, dz_out):
    """run(y, dy, dz, act) writes dz and returns db in y's dtype (summed in float64)."""
    act = _GRAD_ACTIVATIONS.get(activation)
    if (
        dz_out is not None
        and act is not None
        and y.ndim == 2
        and y.shape == dy.shape == dz_out.shape
        and ready(y, dy, dz_out)
    ):
        return dz_out, run(y, dy, dz_out, act)
    act = _activation(activation, (SIGMOID, RELU))
    _matrix(y, "y")
    dz = _xp(y).empty_like(y) if dz_out is None else dz_out
    _check(y, dy, dz)
    buf = _contiguous(dz)
    db = run(_contiguous(y), _contiguous(dy), buf, act)
    _write_back(dz, buf)
    return dz, db


def bias_act_forward(run, z, b, activation, out):
    act = ACTIVATIONS.get(activation)
    if (
        out is not None
        and z.ndim == 2
        and act is not None
        and out.shape == z.shape
        and (ready(z, out) if b is None else b.shape == z.shape[1:] and ready(z, b, out))
    ):
        run(z, b, act, out)
        return out
    act = _activation(activation, (IDENTITY, SIGMOID, RELU))
    if z.ndim not in (1, 2):
        raise ValueError(f"z must be 1-D or 2-D, got shape {z.shape}")
    out = _xp(z).empty_like(z) if out is None else out
    _check(z, out)
    if b is not None:
        _check(b, dtype=z.dtype, shape=z.shape[-1:])
        b = _contiguous(b)
    buf = _contiguous(out)
    rows = (1, -1) if z.ndim == 1 else z.shape
    run(_contiguous(z).reshape(rows), b, act, buf.reshape(rows))
    _write_back(out, buf)
    return out


def softmax_xent_forward(run, logits, labels, out):
    """run(x, labels, probs) writes probs and returns (mean loss as a 0-d array of x's dtype, the
    first row whose label lies outside [0, C), or -1); the kernel checks every label before it
    reads or writes anything, so a bad one raises here with nothing written."""
    if out is not None and _rows_ready(logits, labels, out):
        loss, bad = run(logits, labels, out)
        if bad < 0:
            return loss, out
    else:
        _matrix(logits, "logits")
        probs = _xp(logits).empty_like(logits) if out is None else out
        _check(logits, probs)
        labels = _labels("softmax_xent_forward", labels, logits.shape[0])
        buf = _contiguous(probs)
        loss, bad = run(_contiguous(logits), labels, buf)
        if bad < 0:
            _write_back(probs, buf)
            return loss, probs
    raise IndexError(
        f"softmax_xent_forward: labels must lie in [0, {logits.shape[1]}), got {int(labels[bad])} in row {bad}"
    )


def softmax_xent_backward(run, probs, labels, scale, out):
    """dlogits = (probs - onehot(labels)) * scale; scale: a Python float (the kernel casts it),
    or None for a `run` that reads its scale elsewhere (from the device)."""
    if out is not None and _rows_ready(probs, labels, out):
        run(probs, labels, scale, out)
        return out
    _matrix(probs, "probs")
    out = _xp(probs).empty_like(probs) if out is None else out
    _check(probs, out)
    labels = _labels("softmax_xent_backward", labels, probs.shape[0])
    buf = _contiguous(out)
    run(_contiguous(probs), labels, scale, buf)
    _write_back(out, buf)
    return out


def sgd_update(run, param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """run(grad, velocity, param, lr, momentum, weight_decay, nesterov), velocity None without
    momentum (the kernels compile that case without one)."""
    if velocity is None:
        if momentum == 0 and param.ndim and param.shape == grad.shape and ready(param, grad):
            run(grad, None, param, lr, 0.0, weight_decay, False)
            return
        if momentum != 0:
            raise ValueError("sgd_update: momentum != 0 needs a velocity buffer, got velocity=None")
        _check(param, grad)
        buf = _contiguous(param)
        run(_contiguous(grad), None, buf, lr, 0.0, weight_decay, False)
        _write_back(param, buf)
    elif param.ndim and param.shape == grad.shape == velocity.shape and ready(param, grad, velocity):
        run(grad, velocity, param, lr, momentum, weight_decay, bool(nesterov))
    else:
        _check(param, grad, velocity)
        _elementwise(run, 2, (grad, velocity, param), lr, momentum, weight_decay, bool(nesterov))


def adam_scalars(lr, beta1, beta2, eps, weight_decay, step) -> tuple:
    """The scalar arguments of the Adam kernels after the arrays (bias corrections of `step`)."""
    return (lr / (1 - beta1**step), beta2, 1 - beta1, 1 - beta2, eps, weight_decay, math.sqrt(1 - beta2**step))


def adam_update(run, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """run(grad, m, v, param, step_size, beta2, 1 - beta1, 1 - beta2, eps, weight_decay,
    sqrt(1 - beta2**step))."""
    adam_arrays(run, param, grad, m, v, adam_scalars(lr, beta1, beta2, eps, weight_decay, step))


def adam_arrays(run, param, grad, m, v, scalars):
    """run(grad, m, v, param, *scalars) in place, through contiguous copies where the arrays are not
    `ready`: the Adam update with the scalars its kernel takes (`adam_scalars`, or lr and the step
    count as device arrays for the CUDA kernel that reads them there)."""
    if param.ndim and param.shape == grad.shape == m.shape == v.shape and ready(param, grad, m, v):
        run(grad, m, v, param, *scalars)
    else:
        _check(param, grad, m, v)
        _elementwise(run, 3, (grad, m, v, param), *scalars)


def scatter_add(run, target, indices, values):
    if target.ndim < 1 or indices.ndim != 1:
        raise ValueError("scatter_add needs target.ndim >= 1 and 1-D indices")
    _check(target)
    _check(values, dtype=target.dtype, shape=indices.shape + target.shape[1:])
    buf = _contiguous(target)
    cols = math.prod(target.shape[1:])
    run(buf.reshape(target.shape[0], cols), _ints(indices), _contiguous(values).reshape(indices.shape[0], cols))
    _write_back(target, buf)
