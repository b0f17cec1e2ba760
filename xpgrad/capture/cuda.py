"""CuPy: a captured step replayed as CUDA graphs, piecewise around what a graph cannot hold.

NOT RUN in the session that wrote it (no GPU was at hand): written against CuPy's source
(github.com/cupy/cupy at 6b6d9563c) and numba-cuda's, and its tests (tests/test_capture_cuda.py)
skip without a GPU. What the design rests on, checked in that source:

- `Stream.begin_capture(mode=None)` (cupy/cuda/stream.pyx) refuses the legacy default stream
  (ptr 0 or 1) and defaults to relaxed mode, so CuPy's pool may still cudaMalloc during a
  capture; `end_capture()` returns a `Graph` (cupy/cuda/graph.pyx) with `launch(stream)` and
  `upload(stream)` only: no node updates, so inputs are copied into static buffers first.
- `cublas.setStream` (cupy_backends/cuda/libs/cublas.pyx) raises NotImplementedError while the
  stream captures, and every cuBLAS wrapper calls it (`_setStream`): no matmul or vdot can be
  captured through CuPy. So the step is captured *piecewise*: each cuBLAS call (and each other
  call that must run on the host, below) ends the current graph, runs eagerly, and a new graph
  begins; a replay launches the graphs and runs those calls between them. Measured cost: not
  yet (see bench/RESULTS.md, "Capture").
- cupy/cuda/memory.pyx refuses synchronous copies and host<->device transfers while the
  current stream captures (RuntimeError): `float(t)` on a device scalar, `cupy.asarray(host)`.
  A CuPy step makes none (issue 16 item 6): the loss kernels latch a bad label range into
  device memory (raised at the next host read, `fns_cupy.raise_device_errors`), softmax
  cross-entropy's backward reads gy on the device, the mean squared error sums with a kernel of
  ours (not cuBLAS), dropout draws from a Philox state in device memory that its kernels advance
  (`kernels/cuda_random.py`; a replay first re-keys it if `xg.manual_seed` ran), and the
  optimizer kernels read lr and Adam's step count from device memory: `Optimizer.step` puts its
  kernels in the graph after a host piece that, on every replay, advances the host's step
  counts and fills the live lr into its device scalar (a fill kernel). Device buffers a step
  makes for good (optimizer state, those scalars, label statuses, the random state) are made
  `outside` the graph, once: a zeros captured in a graph would run again on every replay.
- CuPy's pool has no capture mode: a block freed during capture may go to a later array that a
  replay then overwrites. Every allocation made while capturing is kept alive by the plan
  (`cupy.cuda.using_allocator` with an allocator that holds each MemoryPointer).
- Numba synchronizes a CuPy array's producer stream on `__cuda_array_interface__` unless told
  not to, which would break a capture: xpgrad's kernels launch with `sync=False`
  (kernels/cuda.py `_launch`), on CuPy's current stream (the capturing one).
"""

from __future__ import annotations

import numpy as np

from .. import backend, state
from ..errors import CaptureError
from ..fns_cupy import resync_device_random
from ..tensor import Tensor


def cupy_step(args, tensors) -> bool:
    """Whether a call's tensors live on CuPy (then the GPU capture applies)."""
    arrays = [a.data for a in args if isinstance(a, Tensor)] + [t.data for t in tensors]
    return bool(arrays) and all(backend.is_cupy(a) for a in arrays)


class GraphRecorder:
    """`state.local.capture` while a CuPy step is captured: the hooks' API of trace.Recorder,
    each hook a piece that runs between graphs."""

    on_device = True

    def __init__(self, stream):
        self.stream = stream
        self.pieces: list = []  # ("graph", Graph) or ("host", fn, static results)
        self.checks: list = []  # callables that must stay true for a replay to be this capture's
        self.closed = False

    def begin(self) -> None:
        self.stream.begin_capture()

    def end(self) -> None:
        graph = self.stream.end_capture()
        graph.launch(self.stream)  # the capture run computes too (captured work does not execute)
        self.pieces.append(("graph", graph))

    def host(self, fn):
        """Run `fn()` now, outside any graph, and on every replay at this point; its array
        results land in the buffers of this run (what later graphs read)."""
        self.end()
        try:
            result = fn()
        finally:
            self.begin()
        self.pieces.append(("host", fn, result))
        return result

    def check(self, still_valid) -> None:
        """On every replay, `still_valid()` must be true, else the step is captured again (state
        the graph holds by address was replaced, e.g. by an optimizer's load_state_dict)."""
        self.checks.append(still_valid)

    def outside(self, make):
        """make() once, now, outside any graph (not on replays): a buffer that outlives the step."""
        self.end()
        try:
            return make()
        finally:
            self.begin()

    def gemm(self, a, b):
        """a @ b by cuBLAS, between graphs (replays write into the same output)."""
        import cupy

        self.end()
        try:
            out = a @ b
        finally:
            self.begin()
        self.pieces.append(("host", lambda: cupy.matmul(a, b, out=out), None))
        return out

    # the hooks of trace.Recorder
    def python_step(self, label, fn, tensors, replay_factory=None):
        self.host(fn)

    def host_check(self, label, fn, *arrays):
        self.host(lambda: fn(*arrays))

    def rng(self, label, fill, shape, dtype):
        array = np.empty(shape, dtype)  # inside a host piece: a plain draw, now and on each replay
        fill(array)
        return array

    def saw_leaves(self, tensors) -> None:
        pass


def _copy_into(targets, values) -> None:
    import cupy

    if targets is None:
        return
    if isinstance(targets, tuple):
        for t, v in zip(targets, values):
            _copy_into(t, v)
    elif hasattr(targets, "__cuda_array_interface__"):
        cupy.copyto(targets, values)


class GraphPlan:
    """The replay of a piecewise-captured step: copy inputs in, launch, copy results out."""

    def __init__(self, recorder, inputs, guards, result, keep):
        self.stream = recorder.stream
        self.pieces = recorder.pieces
        self.inputs = inputs  # [(argument position, static device buffer)]
        self.guards = guards  # [(tensor, the .data array it must still hold)]
        self.checks = recorder.checks
        self.result = result
        self.keep = keep  # every allocation of the capture run, alive as long as the plan

    def replay(self, args):
        import cupy

        from .plan import MISS

        for tensor, array in self.guards:
            if tensor.data is not array:
                return MISS
        if not all(still_valid() for still_valid in self.checks):
            return MISS
        caller = cupy.cuda.get_current_stream()
        stream = self.stream
        stream.wait_event(caller.record())
        with stream:
            resync_device_random()  # xg.manual_seed since the last call: re-key the device generators
            for position, buffer in self.inputs:
                cupy.copyto(buffer, args[position].data)
            for piece in self.pieces:
                if piece[0] == "graph":
                    piece[1].launch(stream)
                else:
                    _copy_into(piece[2], piece[1]())
            out = _rebuild(self.result)
        caller.wait_event(stream.record())
        return out


def _rebuild(template):
    kind, value = template
    if kind == "copy":
        return Tensor(value.copy())
    if kind in ("tuple", "list"):
        items = [_rebuild(v) for v in value]
        return tuple(items) if kind == "tuple" else items
    return value


def _template(value):
    if isinstance(value, Tensor):
        return ("copy", value.data)
    if type(value) in (tuple, list):
        return (type(value).__name__, [_template(v) for v in value])
    if isinstance(value, (int, float, bool, str, type(None))):
        return ("value", value)
    raise CaptureError(
        f"capture: fn returned a {type(value).__name__}; a step captured on the GPU returns "
        f"tensors, Python numbers, or tuples and lists of them"
    )


def capture_graph(fn, args, kwargs, tensors):
    """Run fn once under a piecewise CUDA-graph capture; (its result, the GraphPlan)."""
    import cupy

    pool = cupy.get_default_memory_pool()
    keep = []

    def allocate(size):
        memory = pool.malloc(size)
        keep.append(memory)
        return memory

    stream = cupy.cuda.Stream(non_blocking=True)
    recorder = GraphRecorder(stream)
    inputs, restore = [], []
    caller = cupy.cuda.get_current_stream()
    local = state.local
    stream.wait_event(caller.record())
    with cupy.cuda.using_allocator(allocate), stream:
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                buffer = cupy.empty_like(a.data)
                cupy.copyto(buffer, a.data)
                inputs.append((i, buffer))
                restore.append((a, a.data))
                a.data = buffer
        local.capture = recorder
        recorder.begin()
        try:
            result = fn(*args, **kwargs)
            recorder.end()  # inside: an invalidated capture reports here (cudaStreamEndCapture's error)
        except Exception as exc:
            _abandon(stream)
            raise CaptureError(
                f"capture (CUDA graph): the step did something a graph cannot hold: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            local.capture = None
            for a, data in restore:
                a.data = data
        recorder.closed = True
        template = _template(result)
        out = _rebuild(template)
    caller.wait_event(stream.record())
    return out, GraphPlan(recorder, inputs, [(t, t.data) for t in tensors], template, keep)


def _abandon(stream) -> None:
    """End a capture that failed (its graph is discarded), invalidated ones included.

    CuPy 14's `Stream.is_capturing()` (runtime.streamIsCapturing, cupy_backends/cuda/api/runtime.pyx)
    raises RuntimeError for cudaStreamCaptureStatusInvalidated instead of answering True, though
    the stream still captures until cudaStreamEndCapture; that call then ends it and raises the
    invalidation (CUDARuntimeError, a RuntimeError)."""
    try:
        capturing = stream.is_capturing()
    except RuntimeError:  # invalidated: still in capture mode until ended
        capturing = True
    if capturing:
        try:
            stream.end_capture()
        except RuntimeError:
            pass
