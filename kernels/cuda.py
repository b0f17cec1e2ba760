"""CUDA kernels (`numba.cuda`): the names and arguments of cpu.py, plus `grid=(blocks, threads)`.

Every kernel is a grid-stride loop, so any grid covers any size; `grid` defaults to one sized for
the work and exists so tests can launch tiny grids under the simulator. CuPy arrays are launched
on CuPy's current stream; they pass through `__cuda_array_interface__` with `sync=False`, which
skips Numba's producer-stream synchronize (the launch is on that same stream, so order holds).
NumPy arrays run as they are under the simulator (on a real GPU Numba copies them to the device
and back: correct, slow). Argument checks and the layout rule (non-contiguous arrays are copied)
are those of the CPU kernels, in `_frontend`; the elementwise kernels take 1-D arrays (their
runner flattens), and the kernels cast their Python-number scalars to the array dtype, so a
float32 kernel does float32 arithmetic. Unlike the CPU version, `scatter_add` does not check
its indices: they must lie in [-K, K).
"""

import math
import sys
from types import SimpleNamespace

from numba import cuda, float64

from . import _frontend as F
from . import _scalar
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
    "ready",
    "unchecked",
]

_THREADS = 256
_MAX_BLOCKS = 4096
_MAX_BLOCK_THREADS = 1024  # shared-memory size of the block reduction
_act_grad = cuda.jit(device=True)(_scalar.act_grad)
_sgd_step = cuda.jit(device=True)(_scalar.sgd_step)
_adam_step = cuda.jit(device=True)(_scalar.adam_step)


def _default_grid(work):
    return min(-(-work // _THREADS), _MAX_BLOCKS), _THREADS


def _launch(kernel, grid, *args):
    """kernel[grid, stream](*args), on CuPy's current stream when args[0] is a CuPy array."""
    if grid[0] == 0:
        return
    stream = 0
    if type(args[0]).__module__.startswith("cupy"):
        ptr = sys.modules["cupy"].cuda.get_current_stream().ptr
        stream = cuda.external_stream(ptr) if ptr else 0
        args = [cuda.as_cuda_array(a, sync=False) if hasattr(a, "__cuda_array_interface__") else a for a in args]
    kernel[grid[0], grid[1], stream](*args)


def _runner(kernel, grid):
    """run(*args) launching `kernel` over args[0].size work items."""
    return lambda *args: _launch(kernel, grid or _default_grid(args[0].size), *args)


def _flat_runner(kernel, grid):
    """run(*args) like _runner, for an elementwise kernel: its (contiguous) arrays go in flattened."""

    def run(*args):
        flat = [a.reshape(-1) if hasattr(a, "ndim") else a for a in args]
        _launch(kernel, grid or _default_grid(flat[0].size), *flat)

    return run


# ---- sigmoid backward ---------------------------------------------------------------------
@cuda.jit
def _sigmoid_bwd(y, dy, out):
    one, zero = y.dtype.type(1), y.dtype.type(0)
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        out[i] = _act_grad(SIGMOID, y[i], dy[i], one, zero)


def sigmoid_backward(y, dy, out=None, *, grid=None):
    """dx = dy * y * (1 - y) in one pass; `out` may be y or dy."""
    return F.sigmoid_backward(_flat_runner(_sigmoid_bwd, grid), y, dy, out)


# ---- activation backward fused with the bias-gradient column sum ---------------------------
@cuda.jit
def _bias_act_bwd(y, dy, dz, act, acc, rows):
    """Work item w: column w % M over `rows` rows from (w // M) * rows; one atomic add per item."""
    n, m = y.shape
    one, zero = y.dtype.type(1), y.dtype.type(0)
    for w in range(cuda.grid(1), -(-n // rows) * m, cuda.gridsize(1)):
        j = w % m
        first = (w // m) * rows
        s = 0.0
        for i in range(first, min(first + rows, n)):
            d = _act_grad(act, y[i, j], dy[i, j], one, zero)
            dz[i, j] = d
            s += d
        cuda.atomic.add(acc, j, s)


def _bias_act_bwd_runner(grid):
    def run(y, dy, dz, act):
        xp = F._xp(y)
        acc = xp.zeros(y.shape[1], xp.float64)
        blocks, threads = grid or _default_grid(y.size)
        rows = max(1, -(-y.size // max(1, blocks * threads)))  # rows per work item
        _launch(_bias_act_bwd, (blocks, threads), y, dy, dz, act, acc, rows)
        return acc.astype(y.dtype)

    return run


def bias_act_backward(y, dy, activation, dz_out=None, *, grid=None):
    """(dz, db) for y = act(z), y and dy (N, M): activation "sigmoid" or "relu"; db summed in float64."""
    return F.bias_act_backward(_bias_act_bwd_runner(grid), y, dy, activation, dz_out)


# ---- linear-layer epilogue -----------------------------------------------------------------
@cuda.jit
def _bias_act_fwd(z, b, act, out):
    m = z.shape[1]
    one, zero = z.dtype.type(1), z.dtype.type(0)
    for w in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        i, j = w // m, w % m
        v = z[i, j]
        if b is not None:  # None: the no-bias specialization
            v += b[j]
        if act == SIGMOID:
            v = one / (one + math.exp(-v))
        elif act == RELU:
            v = zero if v < zero else v
        out[i, j] = v


def bias_act_forward(z, b, activation, out=None, *, grid=None):
    """y = act(z + b) for z (N, M) or (M,), b (M,) or None; activation "identity", "sigmoid" or "relu"; out may be z."""
    return F.bias_act_forward(_runner(_bias_act_fwd, grid), z, b, activation, out)


# ---- softmax cross-entropy: one block per row ----------------------------------------------
@cuda.jit(device=True)
def _block_reduce(shared, value, is_max):
    """Max or sum of `value` over the block (blockDim.x a power of two), returned to every thread."""
    tid = cuda.threadIdx.x
    shared[tid] = value
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if tid < half:
            other = shared[tid + half]
            shared[tid] = max(shared[tid], other) if is_max else shared[tid] + other
        cuda.syncthreads()
        half //= 2
    result = shared[0]
    cuda.syncthreads()  # everyone has read shared[0] before the next reduction writes it
    return result


@cuda.jit
def _softmax_xent_fwd(x, labels, probs, acc):
    """acc[0] += the rows' cross-entropies; a row whose label lies outside [0, C) is skipped and
    sets acc[1] = its index + 1 (any one of them when there are several)."""
    shared = cuda.shared.array(_MAX_BLOCK_THREADS, float64)
    n, c = x.shape
    tid, step = cuda.threadIdx.x, cuda.blockDim.x
    for i in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        label = labels[i]
        if label < 0 or label >= c:  # the whole block branches alike: no barrier is skipped by some
            if tid == 0:
                acc[1] = i + 1
            continue
        target = x[i, label]  # read before the first barrier, so before probs (maybe x) is written
        m = x[i, 0]
        for j in range(tid, c, step):
            m = max(m, x[i, j])
        m = x.dtype.type(_block_reduce(shared, m, True))
        s = 0.0
        for j in range(tid, c, step):
            e = math.exp(x[i, j] - m)
            probs[i, j] = e
            s += e
        s = _block_reduce(shared, s, False)
        inv = x.dtype.type(1.0 / s)
        for j in range(tid, c, step):
            probs[i, j] *= inv
        if tid == 0:
            cuda.atomic.add(acc, 0, math.log(s) + m - target)


def _softmax_xent_fwd_runner(grid):
    def run(x, labels, probs):
        n, c = x.shape
        blocks, threads = grid or (min(n, _MAX_BLOCKS), min(max(32, 1 << (c - 1).bit_length()), _THREADS))
        if threads & (threads - 1) or threads > _MAX_BLOCK_THREADS:
            raise ValueError(f"softmax_xent_forward needs a power-of-two block size <= {_MAX_BLOCK_THREADS}")
        xp = F._xp(x)
        acc = xp.zeros(2, xp.float64)  # [loss sum, bad row + 1]
        _launch(_softmax_xent_fwd, (blocks, threads), x, labels, probs, acc)
        return xp.asarray(acc[0] / max(n, 1), dtype=x.dtype), int(acc[1]) - 1  # int(): waits for the kernel

    return run


def softmax_xent_forward(logits, labels, out=None, *, grid=None):
    """(mean cross-entropy as a 0-d array, probs) for logits (N, C) and int labels (N,).

    One block per row (grid threads must be a power of two); `out` may be logits. A label
    outside [0, C) raises IndexError (its row is never indexed with it; the other rows are
    computed). Reading that flag back waits for the kernel: one device-to-host copy per call.
    """
    return F.softmax_xent_forward(_softmax_xent_fwd_runner(grid), logits, labels, out)


@cuda.jit
def _softmax_xent_bwd(probs, labels, scale, out):
    c = probs.shape[1]
    scale, one = probs.dtype.type(scale), probs.dtype.type(1)
    for w in range(cuda.grid(1), probs.size, cuda.gridsize(1)):
        i, j = w // c, w % c
        p = probs[i, j]
        out[i, j] = ((p - one) if j == labels[i] else p) * scale


def softmax_xent_backward(probs, labels, scale, out=None, *, grid=None):
    """dlogits = (probs - onehot(labels)) * scale without a one-hot matrix; `out` may be probs."""
    return F.softmax_xent_backward(_runner(_softmax_xent_bwd, grid), probs, labels, scale, out)


# ---- optimizer updates, in place --------------------------------------------------------
@cuda.jit
def _sgd(grad, vel, param, lr, momentum, weight_decay, nesterov):
    """vel None (momentum 0): Numba compiles that case without the velocity."""
    f = param.dtype.type
    lr, momentum, weight_decay = f(lr), f(momentum), f(weight_decay)
    velocity = grad if vel is None else vel  # grad stands in: unused with momentum 0, never written
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        p, v = _sgd_step(param[i], grad[i], velocity[i], lr, momentum, weight_decay, nesterov)
        param[i] = p
        if momentum != 0:
            velocity[i] = v


def sgd_update(param, grad, velocity, lr, momentum=0.0, weight_decay=0.0, nesterov=False, *, grid=None):
    """PyTorch SGD step in place (dampening 0); velocity None when momentum == 0."""
    F.sgd_update(_flat_runner(_sgd, grid), param, grad, velocity, lr, momentum, weight_decay, nesterov)


@cuda.jit
def _adam(grad, m, v, param, step_size, beta2, c1, c2, eps, weight_decay, bc2_sqrt):
    f = param.dtype.type
    step_size, beta2, c1, c2 = f(step_size), f(beta2), f(c1), f(c2)
    eps, weight_decay, bc2_sqrt = f(eps), f(weight_decay), f(bc2_sqrt)
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        param[i], m[i], v[i] = _adam_step(
            param[i], grad[i], m[i], v[i], step_size, beta2, c1, c2, eps, weight_decay, bc2_sqrt
        )


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, *, grid=None):
    """PyTorch Adam step in place (L2 weight decay, bias correction with `step` >= 1)."""
    F.adam_update(_flat_runner(_adam, grid), param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step)


# ---- scatter-add with atomics -------------------------------------------------------------
@cuda.jit
def _scatter_add(target, indices, values):
    rows, cols = target.shape
    for w in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        i, j = w // cols, w % cols
        r = indices[i]
        cuda.atomic.add(target, (r + rows if r < 0 else r, j), values[i, j])


def scatter_add(target, indices, values, *, grid=None):
    """target[indices[i], ...] += values[i, ...] in place with atomics (np.add.at along axis 0).

    Indices must lie in [-K, K) for K = target.shape[0]; they are not checked.
    """
    F.scatter_add(
        lambda t, i, v: _launch(_scatter_add, grid or _default_grid(v.size), t, i, v), target, indices, values
    )


ready = F.ready
# Unchecked entry points, as in cpu.py: arrays for which `ready` holds, shapes matching, outputs
# allocated; launched with the default grid on CuPy's current stream.
unchecked = SimpleNamespace(
    sigmoid_backward=_flat_runner(_sigmoid_bwd, None),  # (y, dy, out), any shape
    bias_act_forward=_runner(_bias_act_fwd, None),  # (z (N, M), b (M,) or None, activation code, out (N, M))
)
