"""Why an op failed, in words that are the same on every backend (the error path only: an op
that succeeds never calls anything here). `autograd` wraps a backend's TypeError, ValueError or
IndexError from an op's forward in `wrap_error`."""

from __future__ import annotations

import numpy as np

from .errors import DTypeError, ShapeError, XpgradError
from .tensor import dtype_kind, dtype_name, is_integer


def wrap_error(node, args, exc: Exception) -> XpgradError:
    """The DTypeError or ShapeError an op raises for a backend's TypeError / ValueError / IndexError."""
    shapes = ", ".join(f"{tuple(a.shape)} {dtype_name(a.dtype)}" if hasattr(a, "shape") else repr(a) for a in args)
    kind = DTypeError if isinstance(exc, TypeError) else ShapeError
    return kind(f"{node.name}: cannot apply to operands [{shapes}]: {_reason(node, args, exc)}")


def _broadcast(s1: tuple, s2: tuple) -> bool:
    try:
        np.broadcast_shapes(s1, s2)
    except ValueError:
        return False
    return True


def _reason(node, args, exc: Exception) -> str:
    """Why an op failed, worded the same on every backend (error path only: costs nothing otherwise)."""
    arrays = [a for a in args if hasattr(a, "shape")]
    shapes = [tuple(a.shape) for a in arrays]
    if isinstance(exc, TypeError) and len({dtype_kind(a.dtype) for a in arrays}) > 1:
        return (
            " and ".join(dtype_name(a.dtype) for a in arrays) + " operands cannot be mixed (the array API "
            "defines no promotion between integer, bool and floating dtypes); convert one with .astype(...)"
        )
    if not isinstance(exc, TypeError):
        if node.name == "matmul" and len(shapes) == 2 and not _broadcast(shapes[0][:-2], shapes[1][:-2]):
            return f"batch dimensions {shapes[0][:-2]} and {shapes[1][:-2]} cannot be broadcast together"
        if node.broadcasts and len(shapes) == 2 and not _broadcast(*shapes):
            return f"shapes {shapes[0]} and {shapes[1]} cannot be broadcast together"
        if node.name == "reshape" and shapes:
            size = 1
            for n in shapes[0]:
                size *= n
            return f"cannot reshape {size} elements into shape {tuple(node.shape)}"
        if node.name == "broadcast_to" and shapes:
            return f"shape {shapes[0]} cannot be broadcast to {tuple(node.shape)}"
        if node.name == "concat" and len({len(s) for s in shapes}) > 1:
            return f"all tensors must have the same number of dimensions, got shapes {shapes}"
        if node.name == "concat":
            return f"shapes {shapes} must agree in every dimension except axis {node.axis}"
        if node.name == "getitem" and shapes:
            found = _index_out_of_bounds(node.index, shapes[0])
            if found:
                return found
    text = str(exc)
    for a in arrays:  # the backend's own words, without its module prefix on dtype names
        text = text.replace(type(a).__module__.split(".")[0] + ".", "")
    return text


def _index_out_of_bounds(index, shape: tuple):
    """NumPy's wording for the first int (or integer-array entry) out of range, on any backend."""
    axis = 0
    for item in index if isinstance(index, tuple) else (index,):
        if item is Ellipsis:
            return None  # axes after an Ellipsis are not worth mapping for an error message
        if item is None:
            continue
        if axis >= len(shape):
            return None
        size = shape[axis]
        if hasattr(item, "shape") and is_integer(item.dtype) and item.ndim and item.shape[0]:
            from .autograd import array_fns  # here, not at the top: autograd imports this module

            low, high = array_fns(item).min_max(item)
            bad = high if high >= size else low if low < -size else None
        else:
            bad = item if isinstance(item, int) and not -size <= item < size else None
        if bad is not None:
            return f"index {bad} is out of bounds for axis {axis} with size {size}"
        axis += 1
    return None
