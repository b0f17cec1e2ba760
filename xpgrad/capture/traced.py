"""TracedArray: the ndarray through which a capture sees every NumPy call, and the stand-in
for the kernel modules through which it sees every Numba kernel (both report to the thread's
recorder, trace.Recorder, and are plain arrays and kernels again when no capture runs)."""

from __future__ import annotations

import numpy as np

from .. import state


def _walk(args, fn):
    """args (nested tuples/lists/dicts) with fn applied to every leaf."""
    if type(args) in (tuple, list):
        return type(args)(_walk(a, fn) for a in args)
    if type(args) is dict:
        return {k: _walk(v, fn) for k, v in args.items()}
    return fn(args)


def _raw(a):
    return a.view(np.ndarray) if type(a) is TracedArray else a


def current_recorder():
    """The recorder of the capture running in this thread, or None."""
    recorder = getattr(state.local, "capture", None)
    return recorder if recorder is not None and not recorder.closed else None


class TracedArray(np.ndarray):
    """An ndarray that reports every NumPy call on it to the running capture (a plain ndarray
    again once no capture runs in this thread)."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        recorder = current_recorder()
        if recorder is None:
            raw_inputs = _walk(inputs, _raw)
            raw_kwargs = {k: _walk(v, _raw) for k, v in kwargs.items()}
            return getattr(ufunc, method)(*raw_inputs, **raw_kwargs)
        return recorder.ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        recorder = current_recorder()
        if recorder is None:
            return func._implementation(*_walk(args, _raw), **{k: _walk(v, _raw) for k, v in kwargs.items()})
        return recorder.function(func, args, kwargs)

    # methods that make new arrays without a NumPy function call under them
    def _method(self, name, *args, **kwargs):
        recorder = current_recorder()
        if recorder is None:
            return getattr(np.ndarray, name)(self.view(np.ndarray), *_walk(args, _raw), **kwargs)
        return recorder.method(name, self, args, kwargs)

    def astype(self, *args, **kwargs):
        return self._method("astype", *args, **kwargs)

    def copy(self, *args, **kwargs):
        return self._method("copy", *args, **kwargs)

    def reshape(self, *args, **kwargs):
        return self._method("reshape", *args, **kwargs)

    def transpose(self, *args):
        return self._method("transpose", *args)

    def ravel(self, *args):
        return self._method("ravel", *args)

    def flatten(self, *args):
        return self._method("flatten", *args)

    def squeeze(self, *args, **kwargs):
        return self._method("squeeze", *args, **kwargs)

    def swapaxes(self, *args):
        return self._method("swapaxes", *args)

    def dot(self, *args, **kwargs):
        return self._method("dot", *args, **kwargs)

    def fill(self, value):
        return self._method("fill", value)

    def __getitem__(self, index):
        return self._method("__getitem__", index)

    def __setitem__(self, index, value):
        return self._method("__setitem__", index, value)

    @property
    def T(self):
        return self._method("transpose")

    @property
    def mT(self):
        return self._method("swapaxes", -1, -2)

    # values brought back to Python
    def _host(self, what):
        recorder = current_recorder()
        return self.view(np.ndarray) if recorder is None else recorder.host_value(self, what)

    def __float__(self):
        return float(self._host("float()"))

    def __int__(self):
        return int(self._host("int()"))

    def __index__(self):
        return self._host("operator.index()").__index__()

    def __bool__(self):
        return bool(self._host("bool()"))

    def __complex__(self):
        return complex(self._host("complex()"))

    def item(self, *args):
        return self._host("ndarray.item()").item(*args)

    def tolist(self):
        return self._host("ndarray.tolist()").tolist()

    def __dlpack__(self, *args, **kwargs):
        return self._host("np.from_dlpack()").__dlpack__(*args, **kwargs)

    def __repr__(self):
        return repr(self._host("repr()"))

    def __str__(self):
        return str(self._host("str()"))

    def __reduce__(self):
        return self._host("pickle").__reduce__()


class RecordingKernels:
    """Stands in for a kernel module (xpgrad.kernels or its `unchecked` table): each kernel call
    is recorded, and run on plain arrays."""

    _not_kernels = ("ready", "set_parallel", "PARALLEL_MIN_SIZE", "ACTIVATIONS", "unchecked", "cuda")

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        target = getattr(self._module, name)
        if name in self._not_kernels or not callable(target):
            return target

        def call(*args, **kwargs):
            recorder = current_recorder()
            if recorder is None:
                return target(*_walk(args, _raw), **{k: _walk(v, _raw) for k, v in kwargs.items()})
            return recorder.kernel(target, name, args, kwargs)

        call.__name__ = name
        setattr(self, name, call)
        return call
