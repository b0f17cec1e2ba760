"""Recording one eager run of a step at the level of its array calls.

During a capture every array the step can reach is seen through `TracedArray` (traced.py), an ndarray
subclass whose `__array_ufunc__` / `__array_function__` hand each NumPy call to the thread's
`Recorder`: the recorder runs the call on the plain arrays (so the capture run computes exactly
what eager does) and appends an `Op` naming its array operands by slot. The Numba kernels are
reached through `RecordingKernels`, a stand-in for the kernel modules that the recording
function table (`RecordingFns`) hands to the engine. Library steps that are Python, not array
calls (an optimizer's `step()`, a scheduler's `step()`, a label range check), are recorded as
`Op`s that call the Python function again on replay (`Recorder.python_step`).

Slots. Every array is one slot: an `input` (a Tensor argument, copied into a static buffer on
replay), a `state` array (`.data` / `.grad` of a tensor reached through fn's closure, read
again on every replay), an `external` (any other array that existed before: optimizer
buffers, constants), a `temp` (made by a recorded call) or a `view` of another slot. A value
brought back to Python (`float(t)`, `.item()`, `bool(t)`, printing) is refused with
`CaptureError` unless the slot holds a constant (made from constants alone, e.g. the seed
gradient of `backward()`), which is then baked in.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from numpy.lib.array_utils import byte_bounds

from ..autograd import user_site
from ..errors import CaptureError
from .traced import TracedArray, _raw, _walk

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TENSOR_FILE = os.path.join(_PACKAGE_DIR, "tensor.py")

# array functions whose result can be written into a given buffer (`out=`)
_OUT_FUNCTIONS = {
    np.sum,
    np.mean,
    np.max,
    np.min,
    np.amax,
    np.amin,
    np.prod,
    np.dot,
    np.clip,
    np.take,
    np.concatenate,
    np.stack,
    np.cumsum,
    np.argmax,
    np.argmin,
    np.round,
    np.around,
}
_FILLS = {np.zeros_like: 0, np.ones_like: 1}


def _tensor_method(default: str) -> str:
    """The Tensor method (item, numpy, __float__, ...) that asked for a host value, if any."""
    frame = sys._getframe(2)
    found = None
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        if frame.f_code.co_filename == _TENSOR_FILE:
            found = frame.f_code.co_name
        frame = frame.f_back
    return f"Tensor.{found}()" if found else default


class Slot:
    """One array of the recorded run: its kind, layout, capture-time array and constness."""

    __slots__ = ("array", "base", "bounds", "const", "derivation", "index", "kind")

    def __init__(self, index, kind, array, const=False):
        self.index = index
        self.bounds = byte_bounds(array)
        self.kind = kind  # "input", "state", "external", "temp", "view"
        self.array = array  # the plain ndarray of the capture run (a temp's static replay buffer)
        self.const = const
        self.derivation = None  # view: the Op that made it
        self.base = None  # view: the slot it looks into

    def __repr__(self):
        return f"<slot {self.index} {self.kind} {self.array.shape} {self.array.dtype}>"


class Ref:
    """An array operand of an Op: slot `index`."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def __repr__(self):
        return f"s{self.index}"


class Op:
    """One recorded call. `fn(*args, **kwargs)` with Refs for arrays; `results` says what the
    return value binds: a list of (path into the returned value, slot index) for new slots;
    `out_slot` is a temp written through `out=` on replay."""

    __slots__ = ("args", "fn", "kind", "kwargs", "label", "out_slot", "results", "shapes", "site", "sync", "writes")

    def __init__(self, kind, fn, args, kwargs, label, site):
        self.kind = kind  # "ufunc", "function", "method", "kernel", "python", "fill", "rng"
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.results = []
        self.out_slot = None
        self.label = label
        self.site = site
        self.sync = None  # python ops: (tensor, Ref of .data, Ref of .grad.data or None) to set before the call
        self.shapes = ()  # (shape, dtype) of every array operand
        self.writes = ()

    def describe(self) -> str:
        """What check mode compares between runs: the call and its operands' layouts."""
        shapes = ", ".join(f"{s}{d}" for s, d in self.shapes)
        return f"{self.label}({shapes})"

    def __repr__(self):
        return f"<op {self.label} at {self.site}>"


def _leaves(args):
    if type(args) in (tuple, list):
        for a in args:
            yield from _leaves(a)
    elif type(args) is dict:
        for a in args.values():
            yield from _leaves(a)
    else:
        yield args


def _data_pointer(a) -> int:
    return a.__array_interface__["data"][0]


class Recorder:
    """The slots and ops of one capture run (the thread's `state.local.capture` while it runs)."""

    def __init__(self):
        self.slots: list[Slot] = []
        self.ops: list[Op] = []
        self.owners: dict = {}  # id(array object) -> slot index (objects kept alive in `held`)
        self.held: list = []
        self.closed = False
        self.unknown = {}  # id -> tensor: leaves the step updates whose arrays were not traced

    # ---- slots ---------------------------------------------------------------------------
    def new_slot(self, kind, array, const=False) -> Slot:
        array = _raw(array)
        slot = Slot(len(self.slots), kind, array, const)
        self.slots.append(slot)
        self._own(array, slot.index)
        return slot

    def _own(self, obj, index):
        self.owners[id(obj)] = index
        self.held.append(obj)

    def traced(self, slot: Slot) -> TracedArray:
        """A TracedArray over the slot's array, registered as that slot."""
        wrapper = slot.array.view(TracedArray)
        self._own(wrapper, slot.index)
        return wrapper

    def find(self, a):
        """The slot of array `a`: registered, or a view into the memory of a slot (the smallest
        one that holds it: found by address, since NumPy collapses chains of bases), or None."""
        index = self.owners.get(id(a))
        if index is not None:
            return self.slots[index]
        if a.base is None:
            return None  # owns its memory: no slot's memory can hold it
        low, high = byte_bounds(a)
        best = None
        for slot in self.slots:
            if slot.kind != "view":
                start, end = slot.bounds
                if start <= low and high <= end and (best is None or end - start < best.bounds[1] - best.bounds[0]):
                    best = slot
        return None if best is None else self._view_of(a, best)

    def _view_of(self, a, slot: Slot) -> Slot:
        """`a`, which looks into `slot`'s memory: the slot itself when the layout is the same,
        else a new view slot (its replay array is `a` itself when `slot` is static)."""
        whole = slot.array
        if (
            a.shape == whole.shape
            and a.strides == whole.strides
            and a.dtype == whole.dtype
            and _data_pointer(a) == _data_pointer(whole)
        ):
            self._own(a, slot.index)
            return slot
        view = Slot(len(self.slots), "view", _raw(a), slot.const)
        view.base = slot
        self.slots.append(view)
        self._own(a, view.index)
        return view

    def ref(self, a) -> Ref:
        """The operand `a` (an array) as a Ref, registering an unknown array as an external."""
        slot = self.find(a)
        if slot is None:
            if type(a) is TracedArray:
                raise CaptureError(
                    f"capture: an array was made by an operation capture does not record (at {user_site()}); "
                    f"use xpgrad ops or NumPy functions and operators on the arrays"
                )
            root = a
            while isinstance(root.base, np.ndarray):
                root = root.base
            self.new_slot("external", root)
            slot = self.find(a)
        return Ref(slot.index)

    def operand(self, a):
        if isinstance(a, np.ndarray):
            return self.ref(a)
        if isinstance(a, np.generic):
            return a
        if type(a) in (tuple, list):
            return type(a)(self.operand(x) for x in a)
        return a

    def is_const(self, operands) -> bool:
        for leaf in _leaves(operands):
            if type(leaf) is Ref and not self.slots[leaf.index].const:
                return False
        return True

    # ---- recording calls ------------------------------------------------------------------
    def record(self, kind, fn, args, kwargs, label, run, const=None, writes_first=False):
        """Run `run(raw args, raw kwargs)` and record it as an Op; returns its value with every
        array in it seen as a TracedArray (new arrays become temp slots). `const`: whether the
        result is a constant (default: when every operand is); `writes_first`: the call writes
        into its first argument."""
        ref_args = self.operand(args)
        ref_kwargs = {k: self.operand(v) for k, v in kwargs.items()}
        raw_args = _walk(args, _raw)
        raw_kwargs = {k: _walk(v, _raw) for k, v in kwargs.items()}
        result = run(raw_args, raw_kwargs)
        op = Op(kind, fn, ref_args, ref_kwargs, label, user_site())
        op.shapes = tuple(
            (tuple(a.shape), str(a.dtype)) for a in _leaves((raw_args, raw_kwargs)) if isinstance(a, np.ndarray)
        )
        if const is None:
            const = self.is_const((ref_args, ref_kwargs))
        written = [leaf.index for leaf in _leaves(ref_kwargs.get("out", ())) if type(leaf) is Ref]
        if kind == "kernel":  # a kernel may write any array it is given
            written = [leaf.index for leaf in _leaves((ref_args, ref_kwargs)) if type(leaf) is Ref]
        elif writes_first:
            written = [ref_args[0].index]
        for index in written:
            self.slots[index].const = self.slots[index].const and const
        value = self._bind(op, result, (), const)
        op.writes = written
        if op.results or written or kind == "kernel":
            self.ops.append(op)
        return value

    def _bind(self, op, value, path, const):
        if isinstance(value, np.generic):  # a NumPy scalar result becomes a 0-d array (same arithmetic)
            value = np.asarray(value)
        if isinstance(value, np.ndarray):
            slot = self.find(value)
            if slot is None:
                slot = self.new_slot("temp", value, const)
                op.results.append((path, slot.index))
            elif slot.kind == "view" and slot.derivation is None and not path_bound(op, slot):
                slot.derivation = op
                op.results.append((path, slot.index))
            return self.traced(slot)
        if type(value) is tuple:
            return tuple(self._bind(op, v, path + (i,), const) for i, v in enumerate(value))
        return value

    def ufunc(self, ufunc, method, inputs, kwargs):
        fn = ufunc if method == "__call__" else getattr(ufunc, method)
        return self.record(
            "ufunc",
            fn,
            inputs,
            kwargs,
            f"{ufunc.__name__}.{method}" if method != "__call__" else ufunc.__name__,
            lambda a, k: fn(*a, **k),
            writes_first=method == "at",
        )

    def function(self, func, args, kwargs):
        impl = getattr(func, "_implementation", func)
        const = True if func in _FILLS or func is np.full_like else None  # their values do not depend on the operand's
        return self.record(
            "function",
            func,
            args,
            kwargs,
            f"np.{func.__name__}",
            lambda a, k: impl(*a, **k),
            const,
            writes_first=func is np.copyto,
        )

    def method(self, name, array, args, kwargs):
        fn = getattr(np.ndarray, name)
        return self.record(
            "method",
            fn,
            (array,) + tuple(args),
            kwargs,
            f"ndarray.{name}",
            lambda a, k: fn(*a, **k),
            writes_first=name in ("__setitem__", "fill"),
        )

    def kernel(self, fn, name, args, kwargs):
        return self.record("kernel", fn, args, kwargs, f"kernel {name}", lambda a, k: fn(*a, **k))

    def host_value(self, array, what: str):
        """float(a), a.item(), ...: the value of a constant slot (baked in), else CaptureError."""
        slot = self.find(array)
        if slot is not None and slot.const:
            return array.view(np.ndarray)
        op = _tensor_method(what)
        raise CaptureError(
            f"{op}: brings a value back to Python in the middle of a captured step, at {user_site()}; a replay "
            f"would not run that line (nor a branch that depends on it). Return the tensor from the step "
            f"and read it after the call, or call the function without xg.capture"
        )

    def saw_leaves(self, tensors) -> None:
        """backward() gave these leaves gradients: note those whose arrays capture did not trace
        (a tensor fn reaches in a way the closure scan missed: its ops were not recorded)."""
        for t in tensors:
            if type(t.data) is not TracedArray:
                self.unknown[id(t)] = t

    def python_step(self, label, fn, tensors, replay_factory=None):
        """Record `fn()` (a library step in Python: optimizer.step(), scheduler.step()) to be called
        again on every replay, after the `tensors`' attributes are set as they are now; run it
        now on plain arrays. `replay_factory()`, called before `fn` runs, may give a faster
        equivalent of `fn` for the replays."""
        self.saw_leaves(tensors)
        op = Op("python", fn, (), {}, label, user_site())
        op.sync = [(t, d, g) for t, (d, g) in zip(tensors, self.attribute_refs(tensors))]
        for t, data_ref, grad_ref in op.sync:
            t.data = self.slots[data_ref.index].array
            if t.grad is not None:
                t.grad.data = self.slots[grad_ref.index].array
        try:
            fast = replay_factory() if replay_factory is not None else None
            if fast is not None:
                op.fn = fast
            fn()
        finally:
            for t in tensors:
                t.data = self.traced(self.find(t.data))
                if t.grad is not None:
                    t.grad.data = self.traced(self.find(t.grad.data))
        self.ops.append(op)

    def attribute_refs(self, tensors) -> list:
        """(Ref of .data, Ref of .grad.data or None) for each tensor."""
        return [(self.ref(t.data), None if t.grad is None else self.ref(t.grad.data)) for t in tensors]

    def host_check(self, label, fn, *arrays):
        """Record `fn(*arrays)` (a check on the values, e.g. labels in range) to run again on each
        replay; run it now."""
        refs = tuple(self.ref(a) for a in arrays)
        fn(*(_raw(a) for a in arrays))
        self.ops.append(Op("check", fn, refs, {}, label, user_site()))

    def empty(self, shape, dtype) -> TracedArray:
        """A new buffer for a kernel to write (no replay code: the buffer is static)."""
        return self.traced(self.new_slot("temp", np.empty(shape, dtype), const=True))

    def zeros(self, shape, dtype) -> TracedArray:
        """A new array of zeros that every replay fills with zeros again (a gradient scattered into)."""
        slot = self.new_slot("temp", np.zeros(shape, dtype), const=True)
        op = Op("function", np.zeros_like, (Ref(slot.index),), {}, "np.zeros", user_site())
        op.results.append(((), slot.index))
        self.ops.append(op)
        return self.traced(slot)

    def rng(self, label, fill, shape, dtype):
        """A fresh random array drawn by `fill(out)` now and again on every replay."""
        array = np.empty(shape, dtype)
        fill(array)
        slot = self.new_slot("temp", array)
        op = Op("rng", fill, (), {}, label, user_site())
        op.out_slot = slot.index
        self.ops.append(op)
        return self.traced(slot)


def path_bound(op, slot) -> bool:
    return any(index == slot.index for _, index in op.results)
