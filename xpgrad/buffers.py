"""Reusable output buffers for large NumPy arrays (activations, gradients, matrix products).

A fresh 4-40 MB output costs page faults on every step (measured: 30-60% slower than writing
into memory already mapped; in config (b) of `xpgrad bench mlp` fresh GEMM outputs took ~250
faults per step, ~4% of the step). `empty` hands out a pooled array whose only remaining
reference is the pool itself, so a buffer comes back exactly when the last array that used it
has died (reference counting: no explicit release calls, no aliasing). Of the free buffers it
hands out the one handed out last: that memory was written most recently, so it is likeliest
still in cache (config (b): a first-free choice left the step's GEMMs ~1-2% slower than the
same GEMMs writing into malloc's recently freed memory, as hand-written NumPy's do).
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 20  # smaller arrays are cheap to allocate: no pooling
MAX_PER_KEY = 8  # a deep MLP keeps several same-shaped activations and gradients alive at once

_pool: dict = {}
_lock = threading.Lock()  # threads share the pool: choosing a free buffer and moving it is one step


def _pooled(shape: tuple, dtype: np.dtype) -> np.ndarray:
    with _lock:
        slots = _pool.setdefault((shape, dtype.str), [])  # least recently handed out first
        for i in range(len(slots) - 1, -1, -1):
            buf = slots[i]
            # references: the pool's list, this local and getrefcount's argument
            if sys.getrefcount(buf) == 3:
                slots.append(slots.pop(i))
                return buf
        buf = np.empty(shape, dtype)
        if len(slots) < MAX_PER_KEY:
            slots.append(buf)
        return buf


def empty(shape: tuple, dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape` (a tuple) and `dtype`, reused when one is free."""
    if math.prod(shape) * dtype.itemsize < MIN_BYTES:
        return np.empty(shape, dtype)
    return _pooled(shape, dtype)


def empty_like(a: np.ndarray) -> np.ndarray:
    """An uninitialised C-contiguous array of `a`'s shape and dtype, reused when one is free."""
    if a.nbytes < MIN_BYTES:
        return np.empty(a.shape, a.dtype)
    return _pooled(a.shape, a.dtype)


def clear() -> None:
    """Drop every pooled buffer (their memory returns once no array uses them)."""
    with _lock:
        _pool.clear()
