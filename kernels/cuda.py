"""CUDA kernels (`numba.cuda`): the names and arguments of cpu.py, plus `grid=(blocks, threads)`.

Every kernel is a grid-stride loop, so any grid covers any size; `grid` defaults to one sized for
the work and exists so tests can launch tiny grids under the simulator. CuPy arrays are launched
on CuPy's current stream; they pass through `__cuda_array_interface__` with `sync=False`, which
skips Numba's producer-stream synchronize (the launch is on that same stream, so order holds).
NumPy arrays run as they are under the simulator (on a real GPU Numba copies them to the device
and back: correct, slow). Argument checks and the layout rule (non-contiguous arrays are copied)
are those of the CPU kernels, in `_frontend`; the elementwise kernels take 1-D arrays (their
runner flattens), and the kernels cast their Python-number scalars to the array dtype, so a
float32 kernel does float32 arithmetic. No kernel takes None (numba-cuda cannot pass it on a
device, see `_launch`): an absent bias or velocity goes in as a stand-in array. Unlike the CPU
version, `scatter_add` does not check its indices: they wrap modulo K, as CuPy's indexing does.

Nothing here reads a device value back on the host unless asked to (issue 16 item 6): the `_device`
updates read lr and Adam's step count from device arrays, `softmax_xent_backward_upstream` reads
the upstream gradient there, `label_check` (and `softmax_xent_forward(status=...)`) latch a bad
label range into device memory, `sum_of_squares` reduces without cuBLAS. Random draws are in
`cuda_random.py`.
"""

import math
import sys
from types import SimpleNamespace

from numba import cuda, float64, int64

from . import _frontend as F
from . import _scalar
from ._scalar import RELU, SIGMOID

__all__ = [
    "sigmoid_backward",
    "bias_act_backward",
    "bias_act_forward",
    "softmax_xent_forward",
    "softmax_xent_backward",
    "softmax_xent_backward_upstream",
    "label_check",
    "sgd_update",
    "sgd_update_device",
    "adam_update",
    "adam_update_device",
    "scatter_add",
    "sum_of_squares",
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


# CuPy stream pointer -> Numba's wrapper of it. numba-cuda 0.30's `CUDADispatcher.configure` (what
# kernel[grid, block, stream] calls) is an lru_cache(128) keyed on the stream object, and its Stream
# has no __eq__/__hash__: a fresh `cuda.external_stream(ptr)` per launch missed that cache on every
# launch (a new _LaunchConfiguration each time, with its low-occupancy warning check). The wrapper
# only holds the handle (external=True: nothing to free), so one per pointer is safe.
_external_streams: dict = {}


def _launch(kernel, grid, *args):
    """kernel[grid, stream](*args), on CuPy's current stream when args[0] is a CuPy array.

    Every argument must be an array or a number: numba-cuda 0.30's `_Kernel._prepare_args`
    marshals arrays, integers, floats, booleans, complex, records, tuples and enums, and raises
    NotImplementedError for None on a real device (the simulator accepts None, so its tests
    cannot show that): optional arrays go in as a stand-in array plus a flag (see the runners).
    """
    if grid[0] == 0:
        return
    stream = 0  # a NumPy argument (simulator, or a GPU copying it): Numba's default stream
    if type(args[0]).__module__.startswith("cupy"):
        ptr = sys.modules["cupy"].cuda.get_current_stream().ptr
        if ptr:
            stream = _external_streams.get(ptr)
            if stream is None:
                stream = _external_streams[ptr] = cuda.external_stream(ptr)
        # sync=False: no synchronize of the array's producer stream (CuPy exports its current
        # stream in the interface); the launch below is on that same stream, so order holds, and
        # a synchronize would invalidate a CUDA-graph capture of that stream
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
def _bias_act_fwd(z, b, has_bias, act, out):
    """b is read only when has_bias (without a bias the runner passes a row of z in its place)."""
    m = z.shape[1]
    one, zero = z.dtype.type(1), z.dtype.type(0)
    for w in range(cuda.grid(1), z.size, cuda.gridsize(1)):
        i, j = w // m, w % m
        v = z[i, j]
        if has_bias:
            v += b[j]
        if act == SIGMOID:
            v = one / (one + math.exp(-v))
        elif act == RELU:
            v = zero if v < zero else v
        out[i, j] = v


def _bias_act_fwd_runner(grid):
    """run(z (N, M), b (M,) or None, act, out): a kernel argument cannot be None on a device
    (see _launch), so without a bias z's first row stands in for b, never read (has_bias False)."""

    def run(z, b, act, out):
        has_bias = b is not None
        stand_in = b if has_bias else z.reshape(-1)[: z.shape[1]]
        _launch(_bias_act_fwd, grid or _default_grid(z.size), z, stand_in, has_bias, act, out)

    return run


def bias_act_forward(z, b, activation, out=None, *, grid=None):
    """y = act(z + b) for z (N, M) or (M,), b (M,) or None; activation "identity", "sigmoid" or "relu"; out may be z."""
    return F.bias_act_forward(_bias_act_fwd_runner(grid), z, b, activation, out)


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
    """acc[0] += the rows' cross-entropies; a row whose label lies outside [0, C) is skipped (its
    probs are zeros) and sets acc[1] = its index + 1 (any one of them when there are several)."""
    shared = cuda.shared.array(_MAX_BLOCK_THREADS, float64)
    n, c = x.shape
    tid, step = cuda.threadIdx.x, cuda.blockDim.x
    for i in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        label = labels[i]
        if label < 0 or label >= c:  # the whole block branches alike: no barrier is skipped by some
            for j in range(tid, c, step):
                probs[i, j] = 0  # a zero row: its gradient is zero, never garbage
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


def _softmax_xent_fwd_runner(grid, status):
    def run(x, labels, probs):
        n, c = x.shape
        blocks, threads = grid or (min(n, _MAX_BLOCKS), min(max(32, 1 << (c - 1).bit_length()), _THREADS))
        if threads & (threads - 1) or threads > _MAX_BLOCK_THREADS:
            raise ValueError(f"softmax_xent_forward needs a power-of-two block size <= {_MAX_BLOCK_THREADS}")
        xp = F._xp(x)
        acc = xp.zeros(2, xp.float64)  # [loss sum, bad row + 1]
        _launch(_softmax_xent_fwd, (blocks, threads), x, labels, probs, acc)
        loss = xp.asarray(acc[0] / max(n, 1), dtype=x.dtype)
        if status is not None:  # the check stays on the device: nothing is read back
            _launch_label_check(labels, c, status, grid and (1, threads))
            return loss, -1
        return loss, int(acc[1]) - 1  # int(): waits for the kernel

    return run


def softmax_xent_forward(logits, labels, out=None, *, grid=None, status=None):
    """(mean cross-entropy as a 0-d array, probs) for logits (N, C) and int labels (N,).

    One block per row (grid threads must be a power of two); `out` may be logits. A row whose
    label lies outside [0, C) is never indexed with it: its probs are zeros, the other rows are
    computed. Without `status`, such a label raises IndexError here, which reads a flag back
    (waits for the kernel: one device-to-host copy per call). With `status` (see `label_check`)
    nothing is read back: the labels' range is latched into `status` on the device instead.
    """
    return F.softmax_xent_forward(_softmax_xent_fwd_runner(grid, status), logits, labels, out)


# ---- label range check, kept on the device -----------------------------------------------
@cuda.jit(device=True)
def _block_min_max(low_shared, high_shared, low, high):
    """(min of low, max of high) over the block (blockDim.x a power of two), to every thread."""
    tid = cuda.threadIdx.x
    low_shared[tid] = low
    high_shared[tid] = high
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if tid < half:
            low_shared[tid] = min(low_shared[tid], low_shared[tid + half])
            high_shared[tid] = max(high_shared[tid], high_shared[tid + half])
        cuda.syncthreads()
        half //= 2
    return low_shared[0], high_shared[0]


@cuda.jit
def _label_check(labels, num_classes, status):
    """One block: when status[0] == 0 and some label lies outside [0, num_classes), status becomes
    [1, min label, max label]. The first failure stays latched until the host clears it."""
    low_shared = cuda.shared.array(_MAX_BLOCK_THREADS, int64)
    high_shared = cuda.shared.array(_MAX_BLOCK_THREADS, int64)
    tid = cuda.threadIdx.x
    low = labels[0]
    high = labels[0]
    for i in range(tid, labels.size, cuda.blockDim.x):
        low = min(low, labels[i])
        high = max(high, labels[i])
    low, high = _block_min_max(low_shared, high_shared, low, high)
    if tid == 0 and status[0] == 0 and (low < 0 or high >= num_classes):
        status[1] = low
        status[2] = high
        status[0] = 1


def _launch_label_check(labels, num_classes, status, grid):
    threads = grid[1] if grid else min(_THREADS, max(32, 1 << (labels.size - 1).bit_length()))
    if threads & (threads - 1) or threads > _MAX_BLOCK_THREADS:
        raise ValueError(f"label_check needs a power-of-two block size <= {_MAX_BLOCK_THREADS}")
    if labels.size:
        _launch(_label_check, (1, threads), labels, num_classes, status)


def label_check(labels, num_classes, status, *, grid=None):
    """Latch the range of integer `labels` into `status` (int64 (3,), zeros at first) when a
    label lies outside [0, num_classes) and nothing is latched yet: status = [1, min, max].
    One block (grid threads a power of two); reads nothing back, so it never waits."""
    if status.shape != (3,) or status.dtype != F._INT64:
        raise ValueError(f"label_check: status must be int64 of shape (3,), got {status.dtype} {status.shape}")
    _launch_label_check(F._ints(labels, "label_check: labels").reshape(-1), num_classes, status, grid)


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


@cuda.jit
def _softmax_xent_bwd_upstream(probs, labels, gy, divisor, out):
    """_softmax_xent_bwd with scale = gy[0] / divisor, read on the device (float64, then cast)."""
    c = probs.shape[1]
    scale, one = probs.dtype.type(float64(gy[0]) / float64(divisor)), probs.dtype.type(1)
    for w in range(cuda.grid(1), probs.size, cuda.gridsize(1)):
        i, j = w // c, w % c
        p = probs[i, j]
        out[i, j] = ((p - one) if j == labels[i] else p) * scale


def softmax_xent_backward_upstream(probs, labels, gy, divisor, out=None, *, grid=None):
    """softmax_xent_backward with scale = gy / divisor, where gy is a one-element array on the
    device (the upstream gradient): the kernel reads it, the host never does. The scale is
    float(gy) / divisor in float64 cast to probs' dtype, as the host computes it."""
    if getattr(gy, "size", 0) != 1 or type(gy) is not type(probs):
        raise TypeError(f"softmax_xent_backward_upstream: gy must be a one-element array like probs, got {gy!r}")
    gy = F._contiguous(gy).reshape(1)
    return F.softmax_xent_backward(
        lambda p, lab, _, o: _launch(_softmax_xent_bwd_upstream, grid or _default_grid(p.size), p, lab, gy, divisor, o),
        probs,
        labels,
        None,
        out,
    )


# ---- optimizer updates, in place --------------------------------------------------------
@cuda.jit(device=True)
def _sgd_loop(grad, vel, param, lr, momentum, weight_decay, nesterov):
    """The grid-stride SGD pass of both SGD kernels. Without momentum the runner passes grad as
    vel (a kernel argument cannot be None on a device, see _launch): sgd_step ignores it when
    momentum == 0, and it is never written."""
    f = param.dtype.type
    lr, momentum, weight_decay = f(lr), f(momentum), f(weight_decay)
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        p, v = _sgd_step(param[i], grad[i], vel[i], lr, momentum, weight_decay, nesterov)
        param[i] = p
        if momentum != 0:
            vel[i] = v


def _sgd_runner(kernel, grid):
    """run(grad, velocity or None, param, lr, momentum, weight_decay, nesterov), elementwise;
    velocity None (momentum 0): grad goes in its place (see _sgd_loop)."""
    run = _flat_runner(kernel, grid)

    def run_sgd(grad, vel, param, *scalars):
        run(grad, grad if vel is None else vel, param, *scalars)

    return run_sgd


@cuda.jit
def _sgd(grad, vel, param, lr, momentum, weight_decay, nesterov):
    _sgd_loop(grad, vel, param, lr, momentum, weight_decay, nesterov)


def sgd_update(param, grad, velocity, lr, momentum=0.0, weight_decay=0.0, nesterov=False, *, grid=None):
    """PyTorch SGD step in place (dampening 0); velocity None when momentum == 0."""
    F.sgd_update(_sgd_runner(_sgd, grid), param, grad, velocity, lr, momentum, weight_decay, nesterov)


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


# ---- the same updates with lr and the step count in device memory (a CUDA graph re-reads them)
@cuda.jit
def _sgd_device(grad, vel, param, hyper, momentum, weight_decay, nesterov):
    """_sgd with lr = hyper[0], read on the device."""
    _sgd_loop(grad, vel, param, hyper[0], momentum, weight_decay, nesterov)


def sgd_update_device(param, grad, velocity, hyper, momentum=0.0, weight_decay=0.0, nesterov=False, *, grid=None):
    """sgd_update with the learning rate in device memory: hyper[0] (float64 array (1,))."""
    F.sgd_update(_sgd_runner(_sgd_device, grid), param, grad, velocity, hyper, momentum, weight_decay, nesterov)


@cuda.jit
def _count(counter):
    """counter[0] += 1 (one thread)."""
    if cuda.grid(1) == 0:
        counter[0] += 1


@cuda.jit
def _adam_device(grad, m, v, param, hyper, step, beta1, beta2, eps, weight_decay):
    """_adam with lr = hyper[0] and the step count step[0], read on the device; the bias
    corrections are computed in float64 as adam_scalars computes them on the host."""
    f = param.dtype.type
    n = float64(step[0])
    step_size = f(hyper[0] / (1.0 - float64(beta1) ** n))
    bc2_sqrt = f(math.sqrt(1.0 - float64(beta2) ** n))
    c1, c2 = f(1.0 - float64(beta1)), f(1.0 - float64(beta2))
    beta2, eps, weight_decay = f(beta2), f(eps), f(weight_decay)
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        param[i], m[i], v[i] = _adam_step(
            param[i], grad[i], m[i], v[i], step_size, beta2, c1, c2, eps, weight_decay, bc2_sqrt
        )


def adam_update_device(param, grad, m, v, hyper, step, beta1, beta2, eps, weight_decay, *, grid=None):
    """adam_update with the learning rate hyper[0] (float64 (1,)) and the step count step[0]
    (int64 (1,)) in device memory: step[0] is first advanced by one on the device, then read."""
    _launch(_count, (1, 1), step)
    F.adam_arrays(_flat_runner(_adam_device, grid), param, grad, m, v, (hyper, step, beta1, beta2, eps, weight_decay))


# ---- scatter-add with atomics -------------------------------------------------------------
@cuda.jit
def _scatter_add(target, indices, values):
    rows, cols = target.shape
    for w in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        i, j = w // cols, w % cols
        cuda.atomic.add(target, (indices[i] % rows, j), values[i, j])  # wraps, as CuPy's indexing does


def scatter_add(target, indices, values, *, grid=None):
    """target[indices[i], ...] += values[i, ...] in place with atomics (np.add.at along axis 0).

    Indices are not checked (that would read them on the host): they wrap modulo K =
    target.shape[0], as CuPy's integer indexing wraps; in [-K, K) that is np.add.at.
    """
    F.scatter_add(
        lambda t, i, v: _launch(_scatter_add, grid or _default_grid(v.size), t, i, v), target, indices, values
    )


# ---- sum of squares: a reduction of our own (cuBLAS vdot cannot be captured through CuPy) ----
@cuda.jit
def _sum_squares_blocks(d, partial):
    """partial[b] = sum of d[i]**2 over block b's grid-stride share (float64, a fixed order)."""
    shared = cuda.shared.array(_MAX_BLOCK_THREADS, float64)
    s = 0.0
    for i in range(cuda.grid(1), d.size, cuda.gridsize(1)):
        x = float64(d[i])
        s += x * x
    s = _block_reduce(shared, s, False)
    if cuda.threadIdx.x == 0:
        partial[cuda.blockIdx.x] = s


@cuda.jit
def _sum_blocks(partial, out):
    """out[0] = sum of partial (one block), cast to out's dtype."""
    shared = cuda.shared.array(_MAX_BLOCK_THREADS, float64)
    s = 0.0
    for i in range(cuda.threadIdx.x, partial.size, cuda.blockDim.x):
        s += partial[i]
    s = _block_reduce(shared, s, False)
    if cuda.threadIdx.x == 0:
        out[0] = s


def sum_of_squares(d, *, grid=None):
    """sum(d * d) over every element as a 0-d array of d's dtype, summed in float64 in a fixed
    order (deterministic; two launches, no atomics, nothing read back). grid threads: a power of two."""
    F._check(d)
    flat = F._contiguous(d).reshape(-1)
    blocks, threads = grid or (max(1, min(-(-flat.size // _THREADS), _THREADS)), _THREADS)
    if threads & (threads - 1) or threads > _MAX_BLOCK_THREADS:
        raise ValueError(f"sum_of_squares needs a power-of-two block size <= {_MAX_BLOCK_THREADS}")
    xp = F._xp(flat)
    partial = xp.empty(blocks, xp.float64)
    out = xp.empty(1, flat.dtype)
    _launch(_sum_squares_blocks, (blocks, threads), flat, partial)
    _launch(_sum_blocks, (1, threads), partial, out)
    return out.reshape(())


ready = F.ready
# Unchecked entry points, as in cpu.py: arrays for which `ready` holds, shapes matching, outputs
# allocated; launched with the default grid on CuPy's current stream.
unchecked = SimpleNamespace(
    sigmoid_backward=_flat_runner(_sigmoid_bwd, None),  # (y, dy, out), any shape
    bias_act_forward=_bias_act_fwd_runner(None),  # (z (N, M), b (M,) or None, activation code, out (N, M))
)
