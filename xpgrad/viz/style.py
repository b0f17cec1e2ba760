"""How the drawing looks: its colours and the numbers on its wires, written as the notes write them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..tensor import Tensor

VALUE_COLOR = "#1a7f1a"  # forward values: green, as in the notes
GRAD_COLOR = "#d62728"  # gradients: red
CONST_COLOR = "#777777"  # leaves that need no gradient (data, labels, constants)
GROUP_FILL = "#e8f0fb"


def fmt_number(x: float) -> str:
    """A scalar as the notes print it: 0.73, -0.20, 2.00, 1.37, 220, 1.2e-05."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    a = abs(x)
    if a == 0:
        return "0.00"
    if a < 1:
        s = f"{x:#.2g}"
        return s if abs(float(s)) < 1 else f"{x:.2f}"
    if a < 100:
        return f"{x:.2f}"
    if a < 1e6:
        return f"{x:.0f}"
    return f"{x:.3g}"


def fmt_const(c: float) -> str:
    """A Python scalar folded into a gate label: 1, -1, 0.5, 1.1."""
    if isinstance(c, bool):
        return str(c)
    if isinstance(c, int):
        return str(c)
    return f"{float(c):g}"


def fmt_shape(shape: tuple[int, ...]) -> str:
    """A shape as the wires show it: ``2\u00d73``, or ``scalar``."""
    return "\u00d7".join(str(n) for n in shape) if shape else "scalar"


def format_value(array: object) -> str:
    """One line describing an array (or Tensor) the way the wires show it.

    One element: the number (``0.73``). At most 4 elements: the values (``[0.10, -0.20]``).
    More: shape, mean and range (``2\u00d74 mean 0.52 [0.12, 0.93]``). Integer and boolean arrays
    print exactly. In an array, rounding noise (below a millionth of its largest magnitude)
    prints as 0.00.
    """
    a = np.asarray(host_array(array))
    exact = a.dtype.kind in "biu"
    if a.size == 1:
        v = a.reshape(()).item()
        return str(v) if exact else fmt_number(v)
    if a.size == 0:
        return f"{fmt_shape(a.shape)} (empty)"
    if exact:
        if a.size <= 4:
            return "[" + ", ".join(str(v) for v in a.reshape(-1).tolist()) + "]"
        return f"{fmt_shape(a.shape)} {a.dtype} [{a.min()}, {a.max()}]"
    af = a.astype(np.float64)
    finite = af[np.isfinite(af)]
    floor = float(np.abs(finite).max()) * 1e-6 if finite.size else 0.0

    def fmt(v: float) -> str:
        return "0.00" if abs(v) < floor else fmt_number(v)

    if a.size <= 4:
        return "[" + ", ".join(fmt(v) for v in af.reshape(-1).tolist()) + "]"
    return f"{fmt_shape(a.shape)} mean {fmt(af.mean())} [{fmt(af.min())}, {fmt(af.max())}]"


def host_array(data: Any) -> np.ndarray:
    """`data` (a Tensor, a NumPy, CuPy or other array-API array) as a NumPy array on the host."""
    if isinstance(data, Tensor):
        host: np.ndarray = data.numpy()
        return host
    if isinstance(data, np.ndarray):
        return data
    if hasattr(data, "get") and type(data).__module__.startswith("cupy"):
        copied: np.ndarray = data.get()
        return copied
    try:
        return np.from_dlpack(data)
    except Exception:  # noqa: BLE001 - last resort for exotic array types
        return np.asarray(data)
