"""A stand-in for CuPy without a GPU: `Trap` arrays (NumPy arrays whose values cannot be brought
into Python, as reading a CuPy value waits for the device) routed to fns_cupy.CupyFns over the
CUDA kernels run by Numba's CUDA simulator. Used by tests/test_gpu_host_sync.py and
tests/test_device_random_state.py."""

import sys
import threading
import types

import numpy as np

import xpgrad as xg
from xpgrad import autograd, backend, fns_cupy


class HostRead(AssertionError):
    """A value was read back to the host in the middle of a step."""


class _Device:
    id = 0


def _in_kernel() -> bool:
    """Inside a kernel the simulator runs (a BlockThread): device code reads values freely."""
    return type(threading.current_thread()).__name__ == "BlockThread"


def _host_read(conversion: str):
    """A Trap's `conversion` (__float__, ...): refused outside a simulated kernel."""

    def read(self):
        if not _in_kernel():
            raise HostRead(f"host read of a device array of shape {self.shape}")
        return getattr(self.view(np.ndarray)[()], conversion)()

    return read


class Trap(np.ndarray):
    """A host array that behaves like a CuPy array where it matters here (see the module doc)."""

    __float__ = _host_read("__float__")
    __int__ = _host_read("__int__")
    __bool__ = _host_read("__bool__")
    __index__ = _host_read("__index__")

    def item(self, *args):
        if not _in_kernel():
            raise HostRead(f"host read of a device array of shape {self.shape}")
        return self.view(np.ndarray).item(*args)

    def tolist(self):
        raise HostRead(f"host read of a device array of shape {self.shape}")

    def __getitem__(self, index):
        result = super().__getitem__(index)
        if isinstance(result, np.ndarray) or _in_kernel():
            return result
        return np.asarray(result).view(Trap)

    def __array_wrap__(self, array, context=None, return_scalar=False):
        return array.view(Trap)  # ufunc results stay arrays, 0-d ones too, as on CuPy

    def get(self):
        """The host copy (what Tensor.numpy() takes from a CuPy array)."""
        return np.array(self.view(np.ndarray))

    def set(self, host):
        """Copy a host array in (CuPy's ndarray.set)."""
        self.view(np.ndarray)[...] = host

    @property
    def device(self):
        return _Device()


Trap.__module__ = "xpgrad_trap"  # kernels/_frontend._xp finds the namespace below by this name


class _TrapNamespace(types.ModuleType):
    """numpy, with every array it returns a Trap (what fns_cupy.CupyFns and the kernels allocate)."""

    def __getattr__(self, name):
        attr = getattr(np, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def wrapped(*args, **kwargs):
            if isinstance(kwargs.get("device"), _Device):
                del kwargs["device"]  # NumPy knows only "cpu"
            result = attr(*args, **kwargs)
            return result.view(Trap) if isinstance(result, np.ndarray) else result

        return wrapped


trap_xp = _TrapNamespace("xpgrad_trap")


def trap(a):
    return np.array(a).view(Trap)


def plain(a):
    return np.array(a.data if isinstance(a, xg.Tensor) else a).view(np.ndarray)


def install_trap_device(monkeypatch):
    """Trap arrays routed to fns_cupy.CupyFns over the CUDA kernels (small grids for the simulator),
    and treated as CuPy arrays by the engine; fresh device state. Returns the function table."""
    from xpgrad.kernels import cuda

    monkeypatch.setitem(sys.modules, "xpgrad_trap", trap_xp)
    monkeypatch.setattr(cuda, "_THREADS", 8)
    monkeypatch.setattr(cuda, "_MAX_BLOCKS", 2)
    is_cupy = backend.is_cupy
    monkeypatch.setattr(backend, "is_cupy", lambda data: type(data) is Trap or is_cupy(data))
    table = fns_cupy.CupyFns(trap_xp, cuda, trap_xp.empty_like)
    autograd.register_array_type(Trap, trap_xp, table)
    monkeypatch.setattr(fns_cupy, "_label_status", {})
    monkeypatch.setattr(fns_cupy, "_random_states", {})
    monkeypatch.setattr(fns_cupy, "_restored_states", {})
    return table
