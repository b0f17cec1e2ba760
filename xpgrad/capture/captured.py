"""`capture(fn)`: the callable that warms up, records, replays and (optionally) checks a step."""

from __future__ import annotations

import functools
import threading
import types
import warnings
from collections import OrderedDict

import numpy as np

from .. import autograd, backend, state
from ..errors import CaptureError
from ..tensor import Tensor
from . import tables
from .plan import MISS, Plan, StateEntry, referenced, result_template
from .scan import reachable
from .snapshot import Snapshot
from .trace import Recorder, Ref
from .traced import TracedArray, _raw

MAX_SIGNATURES = 8


class CaptureWarning(RuntimeWarning):
    """A captured function keeps capturing again (its signature or closure keeps changing)."""


class _Entry:
    """One signature: warm-up done?, its plan, the state it reaches."""

    __slots__ = ("calls", "eager_only", "plan", "reach", "retried")

    def __init__(self):
        self.retried = False
        self.plan = None
        self.reach = None
        self.calls = 0
        self.eager_only = False


class Recording:
    """One run of fn under a recorder: what it returned and the tensors' attributes before and after."""

    def __init__(self, recorder, entries, inputs, result, reach):
        self.recorder = recorder
        self.entries = entries
        self.inputs = inputs
        self.result = result
        self.reach = reach


def _signature(value):
    if isinstance(value, Tensor):
        data = value.data
        if type(data) is np.ndarray:
            return ("T", data.shape, data.dtype, value.requires_grad)
        if backend.is_cupy(data):
            return ("cuda", data.shape, data.dtype, data.device.id, value.requires_grad)
        return None
    if type(value) is np.ndarray:
        return ("A", value.shape, value.dtype)
    if isinstance(value, (int, float, bool, str, type(None))):
        return (type(value), value)
    if type(value) in (tuple, list) and all(isinstance(v, (int, float, bool, str, type(None))) for v in value):
        return (type(value), tuple(value))
    return ("id", id(value))


class Captured:
    """`fn` captured: call 1 of a signature runs eagerly (warm-up: lazily made state appears),
    call 2 runs eagerly while recording, later calls replay. See `xpgrad.capture`."""

    def __init__(self, fn, check=False, max_signatures: int = MAX_SIGNATURES):
        if not callable(fn):
            raise TypeError(f"capture: expected a callable, got {type(fn).__name__}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.check_every = 1 if check is True else int(check or 0)
        self.max_signatures = int(max_signatures)
        self.stats = {
            "calls": 0,
            "replays": 0,
            "captures": 0,
            "eager": 0,
            "recaptures": 0,
            "checks": 0,
            "signatures": 0,  # different signatures seen (each runs eagerly until it repeats)
        }
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.RLock()  # one replay at a time: replays share their buffers
        self._warned = False
        self._extra: dict = {}  # id -> tensor the closure scan missed but a capture run saw updated
        tables.install()

    def __repr__(self):
        return f"<captured {getattr(self.fn, '__qualname__', self.fn)!r} {self.stats}>"

    def __get__(self, obj, owner=None):
        """As a method decorator: `obj.step(x)` calls the captured function with obj first."""
        return self if obj is None else types.MethodType(self, obj)

    # ---- calls ------------------------------------------------------------------------------
    def key(self, args, kwargs):
        """The signature of a call, or None when it cannot be captured (run eagerly)."""
        if autograd.is_debug() or state.local.capture is not None:
            return None  # XPGRAD_DEBUG reads every value back; a capture inside a capture records into the outer one
        parts = []
        for a in args:
            sig = _signature(a)
            if sig is None:
                return None
            parts.append(sig)
        for name in sorted(kwargs):
            if isinstance(kwargs[name], (Tensor, np.ndarray)):
                return None  # tensors are captured as positional arguments only
            parts.append((name, _signature(kwargs[name])))
        local = state.local
        parts.append((local.grad_enabled, local.kernels))
        return tuple(parts)

    def __call__(self, *args, **kwargs):
        self.stats["calls"] += 1
        key = self.key(args, kwargs)
        if key is None:
            self.stats["eager"] += 1
            return self.fn(*args, **kwargs)
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                entry = self._cache[key] = _Entry()
                if len(self._cache) > self.max_signatures:
                    self._cache.popitem(last=False)
                self.stats["signatures"] += 1
                if self.stats["signatures"] > self.max_signatures:
                    self._warn_unsettled(
                        f"was called with {self.stats['signatures']} different signatures (argument shapes, dtypes "
                        f"or non-tensor values; at most {self.max_signatures} are kept), and a signature runs "
                        f"eagerly until it repeats"
                    )
            else:
                self._cache.move_to_end(key)
            entry.calls += 1
            if entry.eager_only or entry.calls == 1:
                self.stats["eager"] += 1
                return self.fn(*args, **kwargs)
            if entry.plan is None:
                return self._capture(entry, args, kwargs)
            if self.check_every and entry.calls % self.check_every == 0 and isinstance(entry.plan, Plan):  # NumPy only
                return self._checked(entry, args, kwargs)
            try:
                out = entry.plan.replay(args)
            except IndexError:  # a kernel found a bad label or index: eager raises the op's own error
                self.stats["eager"] += 1
                return self.fn(*args, **kwargs)
            if out is MISS:
                self.stats["recaptures"] += 1
                return self._capture(entry, args, kwargs)
            self.stats["replays"] += 1
            return out

    # ---- recording --------------------------------------------------------------------------
    def _record(self, args, kwargs) -> Recording | None:
        """Run fn once under a recorder (eagerly: the results are eager's); None when some state
        lives outside NumPy (then the call ran eagerly)."""
        reach = reachable(self.fn, args, kwargs, self._extra.values())
        arg_tensors = {id(a) for a in args if isinstance(a, Tensor)}
        tensors = [t for t in reach.tensors if id(t) not in arg_tensors]
        for t in tensors:
            if type(t.data) is not np.ndarray or (t.grad is not None and type(t.grad.data) is not np.ndarray):
                return None
        recorder = Recorder()
        inputs, call_args, restore_args, entries = [], list(args), [], []
        for i, a in enumerate(args):
            if isinstance(a, Tensor) or type(a) is np.ndarray:
                data = a.data if isinstance(a, Tensor) else a
                slot = recorder.new_slot("input", np.array(data, order="C", copy=True))
                inputs.append((i, slot.index, isinstance(a, Tensor)))
                if isinstance(a, Tensor):
                    restore_args.append((a, a.data))
                    a.data = recorder.traced(slot)
                    if a.requires_grad:
                        entry = StateEntry(a, f"args[{i}]", a.grad is None)
                        entries.append(entry)
                else:
                    call_args[i] = recorder.traced(slot)
        start_grads = {}
        for t in tensors:
            entry = StateEntry(t, None, t.grad is None)
            slot = recorder.find(t.data) or recorder.new_slot("state", t.data)
            entry.start_data = _ref(slot)
            t.data = recorder.traced(slot)
            if t.grad is not None:
                start_grads[id(t)] = t.grad
                gslot = recorder.find(t.grad.data) or recorder.new_slot("state", t.grad.data)
                entry.start_grad = _ref(gslot)
                t.grad.data = recorder.traced(gslot)
            entries.append(entry)
        local = state.local
        local.capture = recorder
        try:
            result = self.fn(*call_args, **kwargs)
            self._finish_entries(recorder, entries, start_grads)
            template = result_template(recorder, result, entries)
        finally:
            local.capture = None
            recorder.closed = True
            _untrace(recorder, entries, restore_args, reach)
        return Recording(recorder, entries, inputs, template, reach)

    @staticmethod
    def _finish_entries(recorder, entries, start_grads) -> None:
        known = {id(e.tensor) for e in entries}
        for op in recorder.ops:  # tensors an optimizer step touched that the scan did not find
            for tensor, _data_ref, _ in op.sync or ():
                if id(tensor) not in known:
                    known.add(id(tensor))
                    entry = StateEntry(tensor, None, False)
                    entries.append(entry)
        for entry in entries:
            t = entry.tensor
            entry.end_data = recorder.ref(t.data)
            if t.grad is not None:
                entry.end_grad = recorder.ref(t.grad.data)
                entry.end_grad_same = (
                    t.grad is start_grads.get(id(t))
                    and entry.start_grad is not None
                    and entry.end_grad.index == entry.start_grad.index
                )
        used = referenced(recorder.ops)
        for entry in entries:  # a state array fn never reads needs no guard
            if (
                entry.start_data is not None
                and entry.start_data.index not in used
                and entry.end_data.index == entry.start_data.index
            ):
                entry.start_data = None
            if entry.start_grad is not None and entry.start_grad.index not in used:
                entry.start_grad = None

    def _capture(self, entry, args, kwargs):
        if any(isinstance(a, Tensor) and backend.is_cupy(a.data) for a in args):
            return self._capture_graph(entry, args, kwargs)
        recording = self._record(args, kwargs)
        if recording is None:
            entry.eager_only = True
            self.stats["eager"] += 1
            return self.fn(*args, **kwargs)
        unknown = recording.recorder.unknown
        if unknown and not entry.retried:  # ops on those tensors went unrecorded: trace them next call
            entry.retried = True
            self._extra.update(unknown)
            return materialize(recording)
        plan = Plan(recording.recorder, recording.inputs, recording.entries, recording.result, recording.reach.guards)
        plan.compile()
        entry.plan, entry.reach = plan, recording.reach
        self.stats["captures"] += 1
        if self.stats["captures"] > self.max_signatures:
            self._warn_unsettled(
                f"was captured {self.stats['captures']} times; its argument shapes, dtypes or non-tensor values, or "
                f"the Python values in its closure, keep changing (each change records the step again)"
            )
        return materialize(recording)

    def _warn_unsettled(self, what: str) -> None:
        """Warn once that fn's calls keep changing, so capturing it does not pay."""
        if not self._warned:
            self._warned = True
            warnings.warn(CaptureWarning(f"capture: {getattr(self.fn, '__qualname__', self.fn)} {what}"), stacklevel=4)

    def _capture_graph(self, entry, args, kwargs):
        """CuPy tensors: the step as CUDA graphs, piecewise around cuBLAS and host reads (cuda.py)."""
        from . import cuda

        reach = reachable(self.fn, args, kwargs, self._extra.values())
        arg_ids = {id(a) for a in args}
        tensors = [t for t in reach.tensors if id(t) not in arg_ids]
        if not cuda.cupy_step(args, tensors):
            entry.eager_only = True
            self.stats["eager"] += 1
            return self.fn(*args, **kwargs)
        out, entry.plan = cuda.capture_graph(self.fn, args, kwargs, tensors)
        entry.reach = reach
        self.stats["captures"] += 1
        return out

    # ---- check mode -------------------------------------------------------------------------
    def _checked(self, entry, args, kwargs):
        """Replay, then run fn eagerly from the same state; CaptureError where they differ."""
        self.stats["checks"] += 1
        reach = entry.reach
        before = Snapshot(reach, args)
        replayed = entry.plan.replay(args)
        if replayed is MISS:
            self.stats["recaptures"] += 1
            return self._capture(entry, args, kwargs)
        after_replay = Snapshot(reach, args)
        before.restore()
        recording = self._record(args, kwargs)
        eager = materialize(recording)
        captured_ops, eager_ops = entry.plan.describe(), [op.describe() for op in recording.recorder.ops]
        if captured_ops != eager_ops:
            k = next(
                (i for i, (a, b) in enumerate(zip(captured_ops, eager_ops)) if a != b),
                min(len(captured_ops), len(eager_ops)),
            )
            site = recording.recorder.ops[k].site if k < len(recording.recorder.ops) else "the end of fn"
            raise CaptureError(
                f"capture check: call {entry.calls} of {getattr(self.fn, '__qualname__', self.fn)} ran other ops than "
                "the "
                f"captured step from op {k} on ({site}): captured {_at(captured_ops, k)}, now {_at(eager_ops, k)}; "
                f"a Python branch or value in fn changed, so the captured step is not static (the eager results stand)"
            )
        where = after_replay.differences(Snapshot(reach, args)) + _result_differences(replayed, eager)
        if where:
            raise CaptureError(
                f"capture check: the replay of {getattr(self.fn, '__qualname__', self.fn)} differs from eager in "
                f"{', '.join(where[:5])} (the eager results stand)"
            )
        return eager


def _at(ops, k) -> str:
    return ops[k] if k < len(ops) else "nothing"


def _ref(slot):
    return Ref(slot.index)


def _untrace(recorder, entries, restore_args, reach) -> None:
    """Plain arrays back in every place a TracedArray was put or may have been left (the very
    array objects that were there before, which replays check by identity)."""

    def plain(a):
        slot = recorder.find(a) if type(a) is TracedArray else None
        return slot.array if slot is not None else _raw(a)

    for a, data in restore_args:
        a.data = data
    for entry in entries:
        t = entry.tensor
        t.data = plain(t.data)
        if t.grad is not None:
            t.grad.data = plain(t.grad.data)
    for opt in reach.optimizers:
        for st in opt.state:
            for k, v in st.items():
                st[k] = plain(v)


def materialize(recording: Recording):
    """fn's return value from the arrays of the run just recorded (copies, like a replay's)."""
    from .plan import copy_out

    slots, entries = recording.recorder.slots, recording.entries

    def build(template):
        kind, value = template
        if kind == "copy":
            return copy_out(slots[value.index].array)
        if kind == "array":
            return slots[value.index].array.copy()
        if kind == "entry":
            return entries[value].tensor
        if kind in ("tuple", "list"):
            items = [build(v) for v in value]
            return tuple(items) if kind == "tuple" else items
        if kind == "dict":
            return {k: build(v) for k, v in value}
        return value

    return build(recording.result)


def _result_differences(a, b, path="result") -> list:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return [] if _same(a.data, b.data) else [path]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return [] if _same(a, b) else [path]
    if type(a) in (tuple, list) and type(b) in (tuple, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _result_differences(x, y, f"{path}[{i}]")]
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [d for k in a for d in _result_differences(a[k], b[k], f"{path}[{k!r}]")]
    return [] if a == b else [path]


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def capture(fn=None, *, check=False, max_signatures: int = MAX_SIGNATURES):
    """Capture a step once and replay it: `xg.capture(fn)` or `@xg.capture` (see xpgrad.capture)."""
    if fn is None:
        return lambda f: Captured(f, check=check, max_signatures=max_signatures)
    return Captured(fn, check=check, max_signatures=max_signatures)
