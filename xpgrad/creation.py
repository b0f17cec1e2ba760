"""Making tensors: `tensor`, `zeros`, `ones`, `full`, `arange`, `randn`, `rand`, seeded by `manual_seed`.

Lists and Python scalars become float32 (ints int64, bools bool); arrays keep their dtype.
Random numbers are drawn on the host with one NumPy Generator, then moved, so every backend
sees the same values for the same seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backend, state
from .tensor import Tensor

DType = Any  # a dtype name ("float32"), a NumPy dtype or a dtype of the backend's namespace
Device = Any  # "cpu", "cuda", "cuda:N", or a device object of the backend's namespace
Shape = int | tuple[int, ...] | list[int]

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator behind randn/rand (and weight init, dropout, shuffling)."""
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The shared host-side random generator."""
    return _rng


def uniform(shape: tuple[int, ...]) -> np.ndarray:
    """Float64 samples in [0, 1) of `shape` from the shared generator (dropout masks, rand)."""
    return _draw("random", shape)


def _draw(kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """generator().<kind>(shape), float64. Under xg.capture the draw is recorded: every replay
    draws afresh from the generator then current (the same stream: `out=` fills in the order a
    shaped draw does)."""
    recorder = state.local.capture
    if recorder is None:
        fresh: np.ndarray = getattr(_rng, kind)(shape)
        return fresh
    drawn: np.ndarray = recorder.rng(kind, _FILLS[kind], shape, np.float64)
    return drawn


_FILLS = {
    "random": lambda out: generator().random(out=out),
    "standard_normal": lambda out: generator().standard_normal(out=out),
}


def _dtype_name(dtype: DType) -> str:
    if isinstance(dtype, str):
        return dtype
    try:
        return str(np.dtype(dtype).name)
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1].strip("'>")


def resolve_dtype(xp: Any, dtype: DType) -> Any:
    """`dtype` (a name, NumPy dtype or backend dtype) as a dtype object of namespace `xp`."""
    if dtype is None:
        return None
    name = _dtype_name(dtype)
    if name == "bool_":
        name = "bool"
    found = getattr(xp, name, None)
    if found is None or name not in {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    }:
        raise TypeError(f"dtype: {dtype!r} is not a dtype of backend {getattr(xp, '__name__', xp)}")
    return found


def _target(device: Device) -> tuple[Any, Any]:
    """The namespace and device for new data: the backend's by default, CuPy for "cuda"."""
    current = backend.get_backend()
    if device is None:
        return current.xp, None
    if not isinstance(device, str) and not hasattr(device, "startswith"):
        return current.xp, device  # a backend device object (e.g. array_api_strict's)
    kind, index = backend.parse_device(device)
    if kind == "cpu":
        if current.name == "cupy":
            return backend.resolve_backend("numpy").xp, None
        return current.xp, None
    return backend.resolve_backend("cupy").xp, index


def _default_dtype_for(host: np.ndarray) -> str | None:
    if host.dtype.kind == "f":
        return "float32"
    if host.dtype.kind in "iu":
        return "int64"
    return None


def _cupy_device(device: Any) -> Any:
    """The CuPy device context for new data on GPU `device` (None: the current GPU, which under
    `mpiexec` is the rank's own; GPU 0 here would put every rank's tensors on GPU 0)."""
    import cupy

    return cupy.cuda.Device(device)


def _is_cupy_namespace(xp: Any) -> bool:
    return str(getattr(xp, "__name__", "")).endswith("cupy")


def _asarray(xp: Any, data: Any, dtype: Any, device: Any) -> Any:
    """`data` (host or same-library array) as a new array of namespace `xp` on `device`."""
    if _is_cupy_namespace(xp):
        with _cupy_device(device):
            return xp.asarray(data if backend.is_cupy(data) else np.asarray(data), dtype=dtype)
    if backend.is_cupy(data):
        data = data.get()
    if device is None and isinstance(data, np.ndarray) and type(data) is not np.ndarray:
        return data.astype(data.dtype if dtype is None else dtype)  # xg.capture's traced arrays: a copy it records
    if device is None:
        return xp.asarray(data, dtype=dtype, copy=True)
    return xp.asarray(data, dtype=dtype, device=device, copy=True)


def tensor(
    data: Any, dtype: DType = None, device: Device = None, requires_grad: bool = False, name: str | None = None
) -> Tensor:
    """A new leaf tensor from a list, scalar or array (copied into the chosen backend).

    Lists and scalars give float32 (ints int64); arrays keep their dtype. With `device=None`,
    host data goes to the current backend and a backend array stays where it is.
    """
    if isinstance(data, Tensor):
        data = data.data
    is_array = isinstance(data, np.ndarray) or hasattr(data, "__array_namespace__")
    if is_array and device is None and type(data) is not np.ndarray:
        xp = backend.namespace_of(data)
        return Tensor(_asarray(xp, data, resolve_dtype(xp, dtype), None), requires_grad=requires_grad, name=name)
    xp, dev = _target(device)
    if is_array:
        wanted = resolve_dtype(xp, dtype)
    else:
        data = np.asarray(data)
        if data.dtype == object:
            raise TypeError(f"tensor: cannot make a tensor from ragged or non-numeric data (got {data!r:.60})")
        wanted = resolve_dtype(xp, dtype if dtype is not None else _default_dtype_for(data))
    return Tensor(_asarray(xp, data, wanted, dev), requires_grad=requires_grad, name=name)


def shape_arg(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """Accept f(2, 3) and f((2, 3)) alike."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _filled(fill: float, shape: tuple[Any, ...], dtype: DType, device: Device, requires_grad: bool) -> Tensor:
    xp, dev = _target(device)
    host = np.full(shape_arg(shape), fill)
    wanted = resolve_dtype(xp, dtype if dtype is not None else _default_dtype_for(host))
    return Tensor(_asarray(xp, host, wanted, dev), requires_grad=requires_grad)


def zeros(*shape: Shape, dtype: DType = "float32", device: Device = None, requires_grad: bool = False) -> Tensor:
    return _filled(0.0, shape, dtype, device, requires_grad)


def ones(*shape: Shape, dtype: DType = "float32", device: Device = None, requires_grad: bool = False) -> Tensor:
    return _filled(1.0, shape, dtype, device, requires_grad)


def full(
    shape: Shape, fill_value: float, dtype: DType = None, device: Device = None, requires_grad: bool = False
) -> Tensor:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    return _filled(fill_value, dims, dtype, device, requires_grad)


def _like(x: Tensor, fill: float, dtype: DType, requires_grad: bool) -> Tensor:
    xp = backend.namespace_of(x.data)
    arr = xp.full(
        x.data.shape, fill, dtype=resolve_dtype(xp, dtype) if dtype is not None else x.dtype, device=x.data.device
    )
    return Tensor(arr, requires_grad=requires_grad)


def zeros_like(x: Tensor, dtype: DType = None, requires_grad: bool = False) -> Tensor:
    return _like(x, 0, dtype, requires_grad)


def ones_like(x: Tensor, dtype: DType = None, requires_grad: bool = False) -> Tensor:
    return _like(x, 1, dtype, requires_grad)


def arange(
    start: float,
    stop: float | None = None,
    step: float = 1,
    dtype: DType = None,
    device: Device = None,
    requires_grad: bool = False,
) -> Tensor:
    """Evenly spaced values in [start, stop); ints give int64, floats float32."""
    host = np.arange(start, stop, step) if stop is not None else np.arange(0, start, step)
    return tensor(host, dtype=dtype or _default_dtype_for(host), device=device, requires_grad=requires_grad)


def randn(*shape: Shape, dtype: DType = "float32", device: Device = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples, seeded by manual_seed: the host generator's, or on CuPy the device
    generator's (Philox in device memory, kernels/cuda_random.py)."""
    return _random("standard_normal", shape_arg(shape), dtype, device, requires_grad)


def rand(*shape: Shape, dtype: DType = "float32", device: Device = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1), seeded by manual_seed: the host generator's, or on CuPy the
    device generator's."""
    return _random("random", shape_arg(shape), dtype, device, requires_grad)


def _random(kind: str, shape: tuple[int, ...], dtype: DType, device: Device, requires_grad: bool) -> Tensor:
    xp, dev = _target(device)
    if _is_cupy_namespace(xp):  # drawn on the GPU: no host copy, fresh on every CUDA-graph replay
        from .autograd import array_fns

        with _cupy_device(dev):
            out = xp.empty(shape, dtype=resolve_dtype(xp, dtype))
            if array_fns(out).random_fill(kind, out):
                return Tensor(out, requires_grad=requires_grad)
    return tensor(_draw(kind, shape), dtype=dtype, device=device, requires_grad=requires_grad)
