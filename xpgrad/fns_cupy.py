"""The function table of CuPy arrays (`CupyFns`) and the device state a CuPy step keeps.

CupyFns runs the numba.cuda kernels on CuPy's current stream with no host round trip in a
training step: label checks stay on the device (`raise_device_errors` raises them at the next
host read), upstream gradients are read by the kernels, the sum of squares is a kernel of ours,
dropout masks come from a Philox generator in device memory (one per device, keyed by
`xg.manual_seed`). Under a CUDA-graph capture the calls a graph cannot hold (cuBLAS) run between
graphs, and the state arrays are made outside the graph (a zeros inside one would clear them on
every replay).
"""

from __future__ import annotations

import numpy as np

from . import state
from .fns import KernelFns, _kernel_float, label_error

_thread = state.local

# (op, classes, device) -> int64 (3,) device array [failed, min, max]: label checks left on the
# device by CupyFns.defer_label_check, read by raise_device_errors when the host reads anyway
_label_status: dict = {}


def raise_device_errors() -> None:
    """Raise the first error a CuPy step left in device memory (labels out of range) since the
    last call, and clear it. Called when the host reads a CuPy tensor (Tensor.numpy(): .item(),
    float(), printing), which waits for the device anyway; reads each status array (a few bytes)."""
    for (op, num_classes, _), status in list(_label_status.items()):
        host = status.get() if hasattr(status, "get") else np.asarray(status)
        if host[0]:
            status.fill(0)
            raise label_error(op, num_classes, int(host[1]), int(host[2]))


def _graph_capture():
    """The recorder of a CUDA-graph capture running in this thread (xpgrad.capture.cuda), or None."""
    recorder = _thread.capture
    return recorder if recorder is not None and getattr(recorder, "on_device", False) else None


def outside_graph(make):
    """make() now; while this thread captures a CUDA graph, outside it: state a step keeps for
    good (a zeros or fill captured in a graph would run again on every replay, wiping it)."""
    recorder = _graph_capture()
    return make() if recorder is None else recorder.outside(make)


def device_id(array):
    """The CUDA device number of a CuPy array (None for arrays without one): keys per-device state."""
    return getattr(getattr(array, "device", None), "id", None)


class CupyFns(KernelFns):
    """CuPy: the numba.cuda kernels, launched on CuPy's current stream, and no host round trip in
    a training step: label checks stay on the device (raised at the next host read, see
    `raise_device_errors`), upstream gradients are read by the kernels, the sum of squares is a
    kernel of ours, dropout masks come from a device generator. Under a CUDA-graph capture the
    calls a graph cannot hold (cuBLAS) run between graphs."""

    def matmul(self, a, b):
        recorder = _graph_capture()
        if recorder is not None:
            return recorder.gemm(a, b)
        return a @ b  # CuPy's memory pool already reuses device buffers

    def sum_of_squares(self, d):
        """Our reduction kernel (capturable, unlike cuBLAS vdot); float64 sums, in d's dtype."""
        if _kernel_float(d):
            return self.k.sum_of_squares(d)
        return self.xp.sum(d * d)

    def _status(self, op, num_classes, labels):
        """The device array a label check of (op, num_classes) latches into (made once per
        device, outside any graph: a zeros inside one would clear it on every replay)."""
        key = (op, num_classes, device_id(labels))
        status = _label_status.get(key)
        if status is None:
            status = _label_status[key] = outside_graph(lambda: self.xp.zeros(3, dtype=np.int64))
        return status

    def defer_label_check(self, op, labels, num_classes) -> bool:
        if not _thread.kernels or labels.dtype.kind not in "iu" or labels.ndim != 1:
            return False
        self.k.label_check(labels, num_classes, self._status(op, num_classes, labels))
        return True

    def softmax_xent(self, z, labels):
        if _kernel_float(z):  # the label check stays on the device
            op = "softmax_cross_entropy"
            status = self._status(op, z.shape[1], labels)
            return self.k.softmax_xent_forward(z, labels, out=self.empty_like(z), status=status)
        return super().softmax_xent(z, labels)

    def softmax_xent_grad(self, probs, labels, gy, n):
        """The upstream gradient gy stays on the device: the kernel reads it (float(gy) would wait)."""
        if _kernel_float(probs) and type(gy) is type(probs) and gy.size == 1:
            return self.k.softmax_xent_backward_upstream(probs, labels, gy, n, out=self.empty_like(probs))
        return self._minus_hot_scaled(probs, labels, self.xp.asarray(gy / n, dtype=probs.dtype))

    def index_grad(self, gy, index, shape):
        """Integer-array rows scatter-added by the kernel without reading the indices on the host
        (it wraps them modulo the rows, as CuPy's indexing does)."""
        if (
            type(index) is type(gy)
            and index.ndim == 1
            and index.dtype.kind in "iu"
            and len(shape) >= 1
            and gy.shape == index.shape + tuple(shape[1:])
            and _kernel_float(gy)
        ):
            out = self.zeros(shape, gy.dtype)
            if index.size:
                self.k.scatter_add(out, index, gy)
            return out
        return super().index_grad(gy, index, shape)

    def dropout_mask(self, like, p: float):
        """An inverted-dropout mask of like's shape and dtype, drawn on like's device from the
        Philox generator keyed by xg.manual_seed (kernels/cuda_random.py), or None where the
        host draws it (kernels off)."""
        if not _thread.kernels:
            return None
        from .kernels import cuda_random

        return cuda_random.dropout_mask(_device_random_state(self.xp, like), like.shape, p, like.dtype)

    def random_fill(self, kind: str, out) -> bool:
        """Fill `out` with draws of `kind` ("random": uniform in [0, 1); "standard_normal") from the
        device generator of out's device (xg.rand / xg.randn on CuPy: no host copy, and a CUDA
        graph draws afresh on every replay); False where the host must draw them (kernels off,
        a dtype other than float32/float64)."""
        if not _thread.kernels or not _kernel_float(out):
            return False
        from .kernels import cuda_random

        fill = cuda_random.uniform if kind == "random" else cuda_random.normal
        fill(_device_random_state(self.xp, out), out)
        return True

    def scatter_add_fallback(self, out, index, gy):
        import cupyx

        cupyx.scatter_add(out, index, gy)


# device -> [uint64 (3,) Philox state, the host generator it was keyed from]
_random_states: dict = {}
# device -> (uint64 (3,) host array, host generator): restored states of devices not drawn from yet
_restored_states: dict = {}


def _device_random_state(xp, like):
    """The device generator's state for like's device, re-keyed when xg.manual_seed has replaced
    the host generator since (a one-thread kernel, no copy)."""
    from . import creation

    key = device_id(like)
    entry = _random_states.get(key)
    if entry is None:
        words, host = _restored_states.pop(key, (None, None))
        make = (lambda: xp.zeros(3, dtype=np.uint64)) if words is None else (lambda: xp.asarray(words))
        entry = _random_states[key] = [outside_graph(make), host]
    if entry[1] is not creation.generator():  # only then a piece outside the graph
        outside_graph(lambda: _rekey(entry))
    return entry[0]


def device_random_states() -> dict:
    """{device id (str): [key0, key1, counter]} of every device generator, as its next draw will
    use it: what a checkpoint saves beside the host generator's state (reads each state back)."""
    from . import creation

    host = creation.generator()
    states = {}
    for key, (array, keyed_from) in [*_random_states.items(), *_restored_states.items()]:
        if keyed_from is host:
            words = array if type(array) is np.ndarray else array.get()  # restored ones are host arrays
            states[str(key)] = [int(w) for w in words]
        else:  # re-keyed at its next draw (xg.manual_seed since): counter 0 under the new key
            from .kernels import cuda_random

            states[str(key)] = [*cuda_random.key_of(host), 0]
    return states


def set_device_random_states(states: dict) -> None:
    """Restore device generator states saved by `device_random_states`, tied to the host generator
    now in place (xg.manual_seed after this re-keys them as usual). A generator in use is
    overwritten in place (a captured CUDA graph reads it by address); a device not drawn from yet
    starts from its saved state at its first draw."""
    from . import creation

    host = creation.generator()
    _restored_states.clear()
    for name, values in states.items():
        key = None if name == "None" else int(name)
        words = np.array([int(v) for v in values], dtype=np.uint64)
        if words.shape != (3,):
            raise ValueError(f"set_device_random_states: device {name} needs [key0, key1, counter], got {values!r}")
        entry = _random_states.get(key)
        if entry is None:
            _restored_states[key] = (words, host)
        else:
            entry[0].set(words)
            entry[1] = host


def resync_device_random() -> None:
    """Re-key every device generator whose host generator xg.manual_seed has replaced (a CUDA-graph
    replay calls this first: its graphs read the state, no Python of dropout runs)."""
    for entry in _random_states.values():
        _rekey(entry)


def _rekey(entry: list) -> None:
    """Key entry's device state from the host generator (counter 0) unless it already is (a
    one-thread kernel, no copy): xg.manual_seed replaces the host generator."""
    from . import creation
    from .kernels import cuda_random

    host = creation.generator()
    if entry[1] is not host:
        cuda_random.seed_state(entry[0], cuda_random.key_of(host))
        entry[1] = host
