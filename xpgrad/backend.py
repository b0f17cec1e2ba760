"""Array backends: which array library new tensors use, and where an existing array lives.

`XPGRAD_BACKEND` picks the library for new tensors: ``numpy`` (default), ``cupy``, ``auto``
(CuPy when a usable GPU is present, else NumPy) or the import name of any array-API namespace
(``array_api_strict``). `set_backend` / `use_backend` override it from code.

Ops never consult the backend: they run in the namespace of their inputs, looked up once per
array *type* (`namespace_of`), so a backward pass runs wherever its data lives. NumPy arrays get
`xpgrad.fast_numpy` (array_api_compat.numpy with method-based reductions and reshapes).
"""

from __future__ import annotations

import contextlib
import importlib
import os

import array_api_compat
import numpy as np

from . import fast_numpy, state
from .errors import CupyNotInstalledError, DeviceMismatchError, NoGPUError, UnknownBackendError

ENV_VAR = "XPGRAD_BACKEND"
BUILTIN_BACKENDS = ("numpy", "cupy", "auto")
CUDA_INSTALL_HINT = 'pip install "xpgrad[cuda13]" (or "xpgrad[cuda12]" for CUDA 12)'


def cupy_gpu_available() -> bool:
    """True when CuPy imports and sees at least one usable CUDA device."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.is_available())
    except Exception:  # a broken driver install raises instead of answering
        return False


class Backend:
    """An array library chosen for new tensors: its name and array-API namespace."""

    __slots__ = ("name", "xp")

    def __init__(self, name: str, xp):
        self.name = name
        self.xp = xp

    def __repr__(self):
        return f"Backend({self.name!r})"


def _load_cupy(requested: str) -> Backend:
    try:
        import cupy  # noqa: F401
    except ImportError as exc:
        raise CupyNotInstalledError(
            f"backend {requested!r}: CuPy is not installed ({exc}); install it with {CUDA_INSTALL_HINT}"
        ) from None
    if not cupy_gpu_available():
        raise NoGPUError(
            f"backend {requested!r}: CuPy is installed but no usable CUDA GPU or driver was found; "
            f"use XPGRAD_BACKEND=numpy (or auto) on this machine, or check the driver with nvidia-smi; "
            f"on a GPU host CuPy must match the CUDA driver: {CUDA_INSTALL_HINT}"
        )
    import array_api_compat.cupy as xp

    return Backend("cupy", xp)


def _numpy_backend() -> Backend:
    return Backend("numpy", fast_numpy)


# Names newcomers try, and the backend they mean.
_MEANT = {
    "torch": "array_api_compat.torch",
    "pytorch": "array_api_compat.torch",
    "cuda": "cupy",
    "gpu": "cupy",
    "cuda:0": "cupy",
    "jax": "jax.numpy",
    "np": "numpy",
    "cpu": "numpy",
}


def _did_you_mean(key: str) -> str:
    meant = _MEANT.get(key.lower())
    return f"; did you mean {meant!r}?" if meant else ""


def resolve_backend(name: str) -> Backend:
    """Turn a backend name into a Backend, raising a specific error when it cannot be used."""
    key = name.strip()
    if key.lower() == "numpy":
        return _numpy_backend()
    if key.lower() == "cupy":
        return _load_cupy(key)
    if key.lower() == "auto":
        return _load_cupy(key) if cupy_gpu_available() else _numpy_backend()
    valid = ", ".join(BUILTIN_BACKENDS)
    if not key or not key.replace(".", "").replace("_", "").isalnum():
        raise UnknownBackendError(
            f"unknown backend {name!r}: expected one of {valid}, or the import name of an array-API namespace "
            f"(e.g. array_api_strict){_did_you_mean(key)}"
        )
    try:
        module = importlib.import_module(key)
    except ImportError as exc:
        raise UnknownBackendError(
            f"unknown backend {name!r}: expected one of {valid}, or the import name of an array-API namespace "
            f"(e.g. array_api_strict); importing {key!r} failed: {exc}{_did_you_mean(key)}"
        ) from None
    if not hasattr(module, "__array_api_version__"):
        raise UnknownBackendError(
            f"backend {name!r}: module {key!r} is not an array-API namespace (it has no __array_api_version__); "
            f"expected one of {valid} or a namespace such as array_api_strict{_did_you_mean(key)}"
        )
    return Backend(key, module)


_current: Backend | None = None  # the process-wide default; a thread inside use_backend overrides it


def get_backend() -> Backend:
    """The backend new tensors made in this thread use (the default is read from XPGRAD_BACKEND on first use)."""
    override = state.local.backend
    if override is not None:
        return override
    global _current
    if _current is None:
        _current = resolve_backend(os.environ.get(ENV_VAR, "numpy") or "numpy")
    return _current


def set_backend(name: str | None = None) -> Backend:
    """Choose the process-wide default backend for new tensors; ``None`` re-reads XPGRAD_BACKEND."""
    global _current
    _current = resolve_backend(name) if name is not None else None
    return get_backend()


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager: new tensors made in this thread use backend `name` inside the block
    (other threads keep theirs)."""
    thread = state.local
    previous, thread.backend = thread.backend, resolve_backend(name)
    try:
        yield thread.backend
    finally:
        thread.backend = previous


# ---- where an array lives ----------------------------------------------------------------

_namespaces: dict[type, object] = {np.ndarray: fast_numpy}


def namespace_of(data):
    """The array-API namespace of `data`, cached by array type (array_namespace costs microseconds)."""
    xp = _namespaces.get(type(data))
    if xp is None:
        xp = _namespaces[type(data)] = array_api_compat.array_namespace(data)
    return xp


def is_cupy(data) -> bool:
    return type(data).__module__.startswith("cupy")


def device_of(data):
    """The device of `data` in xpgrad's terms: "cpu", "cuda:N", or the library's own device object."""
    cls = type(data)
    if cls is np.ndarray:
        return "cpu"
    if is_cupy(data):
        return f"cuda:{data.device.id}"
    return data.device


def describe_place(data) -> str:
    """Library and device of an array, for error messages: e.g. ``numpy:cpu`` or ``cupy:cuda:0``."""
    return f"{type(data).__module__.split('.')[0]}:{device_of(data)}"


def check_same_place(op: str, a, b) -> None:
    """Raise DeviceMismatchError unless arrays `a` and `b` share library and device."""
    if type(a) is type(b) and (type(a) is np.ndarray or device_of(a) == device_of(b)):
        return
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):  # an ndarray subclass (xg.capture's traced arrays)
        return
    raise DeviceMismatchError(
        f"{op}: operands live on different devices: {describe_place(a)} and {describe_place(b)}; "
        f"move one explicitly with .to(...) (xpgrad never moves data implicitly)"
    )


def parse_device(device) -> tuple[str, int | None]:
    """Split "cpu" / "cuda" / "cuda:N" into (kind, index); plain "cuda" is the current GPU (index
    None: under `mpiexec` each rank has made its own GPU current)."""
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu", 0
    if text == "cuda":
        return "cuda", None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise ValueError(f"to/device: unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def move(data, device):
    """Copy `data` to `device` ("cpu", "cuda", "cuda:N"); a no-op when it already lives there."""
    kind, index = parse_device(device)
    if kind == "cpu":
        if type(data) is np.ndarray:
            return data
        if is_cupy(data):
            return data.get()
        if device_of(data) == namespace_of(data).asarray(0).device:  # another CPU library: keep it
            return data
        return np.from_dlpack(data)
    cupy = _load_cupy(device).xp
    import cupy as cp

    target = cp.cuda.Device(index)  # None: the current device
    with target:
        if is_cupy(data) and data.device.id == target.id:
            return data
        return cupy.asarray(data if is_cupy(data) else np.asarray(data))
