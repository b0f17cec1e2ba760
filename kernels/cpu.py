"""CPU kernels: Numba `@njit` (cached in the user's cache folder, see `_cache`), serial unless the parallel
kernels are switched on.

Threads. Every kernel runs serially by default, because on the 2-vCPU dev/CI machines parallel
kernels do not reliably win: next to threaded OpenBLAS a `parallel=True` kernel made a layer 45x
slower (libgomp and OpenBLAS workers spin on the same cores), and alone, 2-thread calls on
2**19..2**22 elements often took a flat ~8 ms instead of 0.04-1 ms (measured with both the
passive and active OMP wait policy; see bench/RESULTS_kernels.md). `set_parallel(min_size)`
opts in: arrays of at least `min_size` elements then take a `prange` kernel cut into
`numba.get_num_threads()` parts (set it with `numba.set_num_threads`); with one Numba thread
the serial kernel runs whatever the size. PARALLEL_MIN_SIZE = 2**18 is where 2 threads beat 1
here when no stall hit (sigmoid backward 19 us vs 34 us; at 2**16 they tie). `scatter_add` is
always serial.

All kernels use `error_model="numpy"` (no ZeroDivisionError checks, which would stop LLVM from
vectorizing), `fastmath={"contract"}` (multiply-adds fuse into FMA instructions, as nvcc does on
the GPU; no other fast-math licence) and `_fastmath.exp` instead of libm's scalar exp. Argument checks and layout are
in `_frontend` (non-contiguous arrays are copied, see there). The elementwise kernels take
C-contiguous arrays of any shape and flatten them inside (a view: `reshape(-1)` in Numba costs
~20 ns, in Python ~100 ns), and every kernel takes Python numbers as scalars and casts them to
the array dtype inside (each NumPy scalar argument adds ~0.25 us to Numba's dispatch).
"""

import math
from types import SimpleNamespace

import numba
import numpy as np
from numba import prange

from . import _frontend as F
from . import _scalar
from ._cache import cached_njit
from ._fastmath import exp
from ._scalar import RELU, SIGMOID

__all__ = [
    "sigmoid_backward",
    "bias_act_backward",
    "bias_act_forward",
    "softmax_xent_forward",
    "softmax_xent_backward",
    "sgd_update",
    "adam_update",
    "scatter_add",
    "set_parallel",
    "PARALLEL_MIN_SIZE",
    "ready",
    "unchecked",
]

PARALLEL_MIN_SIZE = 1 << 18
_parallel_min_size = None

_FMA = {"contract"}  # fused multiply-add only (no reassociation, NaN/inf kept): sigmoid forward 5.4 -> 4.3 us at 64x100
_serial = cached_njit(error_model="numpy", fastmath=_FMA)
_parallel = cached_njit(error_model="numpy", parallel=True, fastmath=_FMA)
_act_grad = _serial(_scalar.act_grad)
_sgd_step = _serial(_scalar.sgd_step)
_adam_step = _serial(_scalar.adam_step)
_LANES = 16  # partial results of the row reductions (one AVX-512 register of float32)
_inline = cached_njit(error_model="numpy", fastmath=_FMA, inline="always")  # a call with array arguments costs ~40 ns


def set_parallel(min_size=PARALLEL_MIN_SIZE):
    """Run arrays of at least `min_size` elements on the parallel kernels (None: always serial).

    Returns the previous setting. Keep it None while BLAS runs threaded in the same process.
    """
    global _parallel_min_size
    previous, _parallel_min_size = _parallel_min_size, min_size
    return previous


def _runner(serial, parallel):
    """run(*args): serial(*args), or parallel(*args, threads) when enabled and args[0] is large enough."""

    def run(*args):
        if _parallel_min_size is not None and args[0].size >= _parallel_min_size and numba.get_num_threads() > 1:
            return parallel(*args, numba.get_num_threads())
        return serial(*args)

    return run


@_serial
def _span(part, n, parts):
    """Bounds of part `part` of range(n) cut into `parts` near-equal pieces."""
    return part * n // parts, (part + 1) * n // parts


@_inline
def _reduce(a, lanes, is_max):
    """max(a) or sum(a) (a.size >= 1) as _LANES interleaved partial results, which LLVM
    vectorizes without fastmath."""
    body = a.size - a.size % _LANES
    r = a[0] if is_max else a.dtype.type(0)
    if body:
        lanes[:] = r
        for k in range(0, body, _LANES):
            for lane in range(_LANES):
                v, w = a[k + lane], lanes[lane]
                lanes[lane] = (v if v > w else w) if is_max else w + v
        for lane in range(_LANES):
            w = lanes[lane]
            r = (w if w > r else r) if is_max else r + w
    for j in range(body, a.size):
        v = a[j]
        r = (v if v > r else r) if is_max else r + v
    return r


# ---- sigmoid backward: dx = dy * y * (1 - y) ----------------------------------------------
@_serial
def _sigmoid_bwd(y, dy, out):
    one, zero = y.dtype.type(1), y.dtype.type(0)
    yf, dyf, outf = y.reshape(-1), dy.reshape(-1), out.reshape(-1)
    for i in range(yf.size):
        outf[i] = _act_grad(SIGMOID, yf[i], dyf[i], one, zero)


@_parallel
def _sigmoid_bwd_par(y, dy, out, parts):
    yf, dyf, outf = y.reshape(-1), dy.reshape(-1), out.reshape(-1)
    for p in prange(parts):
        lo, hi = _span(p, yf.size, parts)
        _sigmoid_bwd(yf[lo:hi], dyf[lo:hi], outf[lo:hi])


_run_sigmoid_bwd = _runner(_sigmoid_bwd, _sigmoid_bwd_par)


def sigmoid_backward(y, dy, out=None):
    """dx = dy * y * (1 - y) in one pass; `out` may be y or dy."""
    return F.sigmoid_backward(_run_sigmoid_bwd, y, dy, out)


# ---- activation backward fused with the bias-gradient column sum --------------------------
@_inline
def _bias_act_rows(y, dy, dz, act, acc):
    """dz = dy * act'(y) row by row, the columns of dz summed into the float64 `acc`."""
    one, zero = y.dtype.type(1), y.dtype.type(0)
    for i in range(y.shape[0]):
        yr, dyr, dzr = y[i], dy[i], dz[i]
        for j in range(yr.size):
            d = _act_grad(act, yr[j], dyr[j], one, zero)
            dzr[j] = d
            acc[j] += d


@_serial
def _bias_act_bwd(y, dy, dz, act, db):
    acc = np.zeros(db.size)
    _bias_act_rows(y, dy, dz, act, acc)
    for j in range(db.size):
        db[j] = acc[j]


@_parallel
def _bias_act_bwd_par(y, dy, dz, act, db, parts):
    partial = np.zeros((parts, db.size))
    for p in prange(parts):
        lo, hi = _span(p, y.shape[0], parts)
        _bias_act_rows(y[lo:hi], dy[lo:hi], dz[lo:hi], act, partial[p])
    for j in range(db.size):
        s = 0.0
        for p in range(parts):
            s += partial[p, j]
        db[j] = s


_bias_act_bwd_kernel = _runner(_bias_act_bwd, _bias_act_bwd_par)


def _run_bias_act_bwd(y, dy, dz, act):
    db = np.empty(y.shape[1], y.dtype)  # here, not in Numba: a returned array costs ~0.1 us more
    _bias_act_bwd_kernel(y, dy, dz, act, db)
    return db


def bias_act_backward(y, dy, activation, dz_out=None):
    """(dz, db) for y = act(z), y and dy (N, M): dz = dy * act'(z), db = dz.sum(axis=0), one pass.

    activation: "sigmoid" (dz = dy*y*(1-y)) or "relu" (dz = dy where y > 0 else 0). db is summed
    in float64. dz_out may be y or dy.
    """
    return F.bias_act_backward(_run_bias_act_bwd, y, dy, activation, dz_out)


# ---- linear-layer epilogue: y = act(z + b) -------------------------------------------------
@_serial
def _act(act, v, one, zero):
    if act == SIGMOID:
        return one / (one + exp(-v))
    if act == RELU:
        return zero if v < zero else v
    return v


@_serial
def _bias_act_fwd(z, b, act, out):
    one, zero = z.dtype.type(1), z.dtype.type(0)
    if b is None:  # no bias (compiled as its own specialization): one flat pass, 4.4 -> 3.5 us at 64x100
        zf, outf = z.reshape(-1), out.reshape(-1)
        for i in range(zf.size):
            outf[i] = _act(act, zf[i], one, zero)
        return
    for i in range(z.shape[0]):
        zr, outr = z[i], out[i]
        for j in range(b.size):
            outr[j] = _act(act, zr[j] + b[j], one, zero)


@_parallel
def _bias_act_fwd_par(z, b, act, out, parts):
    for p in prange(parts):
        lo, hi = _span(p, z.shape[0], parts)
        _bias_act_fwd(z[lo:hi], b, act, out[lo:hi])


_run_bias_act_fwd = _runner(_bias_act_fwd, _bias_act_fwd_par)


def bias_act_forward(z, b, activation, out=None):
    """y = act(z + b) for z (N, M) or (M,) and b (M,) or None (no bias); activation "identity", "sigmoid" or "relu".

    `out` may be z itself (in place).
    """
    return F.bias_act_forward(_run_bias_act_fwd, z, b, activation, out)


# ---- softmax cross-entropy --------------------------------------------------------------
@_inline
def _first_bad_label(labels, c):
    """The first row whose label lies outside [0, c), or -1."""
    for i in range(labels.size):
        if labels[i] < 0 or labels[i] >= c:
            return i
    return -1


@_inline
def _softmax_xent_rows(x, labels, probs):
    """Softmax of each row of x into probs; returns the float64 sum of the rows' cross-entropies."""
    lanes = np.empty(_LANES, x.dtype)
    total = 0.0
    for i in range(x.shape[0]):
        xr, pr = x[i], probs[i]
        target = xr[labels[i]]  # read before probs (which may be x) is written
        m = _reduce(xr, lanes, True)
        for j in range(xr.size):
            pr[j] = exp(xr[j] - m)
        s = _reduce(pr, lanes, False)
        inv = x.dtype.type(1) / s
        for j in range(pr.size):
            pr[j] *= inv
        total += math.log(s) + m - target
    return total


@_serial
def _softmax_xent_fwd(x, labels, probs):
    """(loss sum, -1), or (0, first bad row) with nothing written when a label is out of range."""
    bad = _first_bad_label(labels, x.shape[1])
    if bad >= 0:
        return 0.0, bad
    return _softmax_xent_rows(x, labels, probs), bad


@_parallel
def _softmax_xent_fwd_par(x, labels, probs, parts):
    bad = _first_bad_label(labels, x.shape[1])
    if bad >= 0:
        return 0.0, bad
    partial = np.zeros(parts)
    for p in prange(parts):
        lo, hi = _span(p, x.shape[0], parts)
        partial[p] = _softmax_xent_rows(x[lo:hi], labels[lo:hi], probs[lo:hi])
    return partial.sum(), bad


_softmax_xent_fwd_kernel = _runner(_softmax_xent_fwd, _softmax_xent_fwd_par)


def _run_softmax_xent_fwd(x, labels, probs):
    total, bad = _softmax_xent_fwd_kernel(x, labels, probs)
    return np.array(total / max(x.shape[0], 1), x.dtype), bad


def softmax_xent_forward(logits, labels, out=None):
    """(mean cross-entropy as a 0-d array, softmax probs) for logits (N, C) and int labels (N,).

    Row by row with a max-subtracted log-sum-exp, no one-hot; the loss is summed in float64.
    Labels must lie in [0, C): the kernel checks them all first, and an out-of-range one raises
    IndexError before anything is read through it or written. `out` (N, C) receives the probs
    and may be logits.
    """
    return F.softmax_xent_forward(_run_softmax_xent_fwd, logits, labels, out)


@_serial
def _softmax_xent_bwd(probs, labels, scale, out):
    c = probs.shape[1]
    if c == 0:
        return  # no element to write (nor to index)
    scale, one, zero = probs.dtype.type(scale), probs.dtype.type(1), probs.dtype.type(0)
    for i in range(probs.shape[0]):
        pr, outr = probs[i], out[i]
        label = labels[i]
        inside = 0 <= label < c  # a label outside is never indexed with (the forward rejects them)
        k = label if inside else 0
        p_k = pr[k]  # read before out (which may be probs) is written
        for j in range(c):
            outr[j] = pr[j] * scale
        outr[k] = (p_k - (one if inside else zero)) * scale  # selects, no branch: the loop above stays fast


@_parallel
def _softmax_xent_bwd_par(probs, labels, scale, out, parts):
    for p in prange(parts):
        lo, hi = _span(p, probs.shape[0], parts)
        _softmax_xent_bwd(probs[lo:hi], labels[lo:hi], scale, out[lo:hi])


_run_softmax_xent_bwd = _runner(_softmax_xent_bwd, _softmax_xent_bwd_par)


def softmax_xent_backward(probs, labels, scale, out=None):
    """dlogits = (probs - onehot(labels)) * scale without a one-hot matrix; `out` may be probs.

    A label outside [0, C) leaves its row at probs * scale (as the CUDA kernel does).
    """
    return F.softmax_xent_backward(_run_softmax_xent_bwd, probs, labels, scale, out)


# ---- optimizer updates, in place --------------------------------------------------------
_exact = cached_njit(error_model="numpy")  # no contraction: s * g rounded, then added, as NumPy does


@_exact
def _scaled_add(x, g, s, sign):
    """x += sign * (s * g) in place, in x's dtype: each product rounded before the add (no FMA), the
    bits of NumPy's `x -= s * g` (sign -1) or `x += s * g` (sign 1) without the temporary."""
    s = x.dtype.type(s) if sign > 0 else -x.dtype.type(s)  # x - s*g is x + (-s)*g bit for bit: negation is exact
    xf, gf = x.reshape(-1), g.reshape(-1)
    for i in range(xf.size):
        xf[i] = xf[i] + s * gf[i]


@_serial
def _sgd(grad, vel, param, lr, momentum, weight_decay, nesterov):
    """vel None (momentum 0): Numba compiles that case without the velocity."""
    f = param.dtype.type
    lr, momentum, weight_decay = f(lr), f(momentum), f(weight_decay)
    g, p = grad.reshape(-1), param.reshape(-1)
    # p stands in (not g, which may be a read-only array): unused with momentum 0, never written
    v = p if vel is None else vel.reshape(-1)
    for i in range(p.size):
        p[i], vi = _sgd_step(p[i], g[i], v[i], lr, momentum, weight_decay, nesterov)
        if momentum != 0:
            v[i] = vi


@_parallel
def _sgd_par(grad, vel, param, lr, momentum, weight_decay, nesterov, parts):
    g, p = grad.reshape(-1), param.reshape(-1)
    v = p if vel is None else vel.reshape(-1)
    for k in prange(parts):
        lo, hi = _span(k, p.size, parts)
        _sgd(g[lo:hi], v[lo:hi], p[lo:hi], lr, momentum, weight_decay, nesterov)


_run_sgd = _runner(_sgd, _sgd_par)


def sgd_update(param, grad, velocity, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """PyTorch SGD step in place (dampening 0), velocity starting at zeros (None if momentum == 0):

    g = grad + weight_decay*param; v = momentum*v + g; param -= lr * (g + momentum*v if nesterov else v).
    """
    F.sgd_update(_run_sgd, param, grad, velocity, lr, momentum, weight_decay, nesterov)


@_serial
def _adam(grad, m, v, param, step_size, beta2, c1, c2, eps, weight_decay, bc2_sqrt):
    f = param.dtype.type
    step_size, beta2, c1, c2 = f(step_size), f(beta2), f(c1), f(c2)
    eps, weight_decay, bc2_sqrt = f(eps), f(weight_decay), f(bc2_sqrt)
    g, mf, vf, p = grad.reshape(-1), m.reshape(-1), v.reshape(-1), param.reshape(-1)
    for i in range(p.size):
        p[i], mf[i], vf[i] = _adam_step(p[i], g[i], mf[i], vf[i], step_size, beta2, c1, c2, eps, weight_decay, bc2_sqrt)


@_parallel
def _adam_par(grad, m, v, param, step_size, beta2, c1, c2, eps, weight_decay, bc2_sqrt, parts):
    g, mf, vf, p = grad.reshape(-1), m.reshape(-1), v.reshape(-1), param.reshape(-1)
    for k in prange(parts):
        lo, hi = _span(k, p.size, parts)
        _adam(g[lo:hi], mf[lo:hi], vf[lo:hi], p[lo:hi], step_size, beta2, c1, c2, eps, weight_decay, bc2_sqrt)


_run_adam = _runner(_adam, _adam_par)


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """PyTorch Adam step in place (L2 weight decay added to grad, bias correction with `step` >= 1).

    m and v start at zeros and are updated in place.
    """
    F.adam_update(_run_adam, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step)


# ---- scatter-add (gradient of integer-array indexing) ------------------------------------
@_serial
def _scatter_add(target, indices, values):
    """target[indices[i]] += values[i] row by row; returns the position of a bad index or -1."""
    rows = target.shape[0]
    for i in range(indices.size):
        if indices[i] < -rows or indices[i] >= rows:
            return i
    for i in range(indices.size):
        tr, vr = target[indices[i] % rows], values[i]
        for j in range(vr.size):
            tr[j] += vr[j]
    return -1


def _run_scatter_add(target, indices, values):
    bad = _scatter_add(target, indices, values)
    if bad >= 0:
        raise IndexError(f"index {int(indices[bad])} is out of bounds for axis 0 with size {target.shape[0]}")


def scatter_add(target, indices, values):
    """target[indices[i], ...] += values[i, ...] in place, repeated indices accumulating
    (np.add.at along axis 0). Negative indices count from the end; out-of-range ones raise
    IndexError before anything is written.
    """
    F.scatter_add(_run_scatter_add, target, indices, values)


ready = F.ready
# Unchecked entry points (see _frontend): C-contiguous arrays of one float32/float64 dtype for
# which `ready` holds, shapes matching, outputs allocated; they write in place and return nothing.
unchecked = SimpleNamespace(
    sigmoid_backward=_run_sigmoid_bwd,  # (y, dy, out), any shape
    bias_act_forward=_run_bias_act_fwd,  # (z (N, M), b (M,) or None, activation code, out (N, M))
    sgd_update=_run_sgd,  # (grad, velocity or None, param, lr, momentum, weight_decay, nesterov), in place
    adam_update=_run_adam,  # (grad, m, v, param, *_frontend.adam_scalars(...)), in place
    scaled_add=_scaled_add,  # (x, g, s, sign): x += sign * (s * g) in place, NumPy's rounding (no FMA)
)
