"""Reusable output buffers for large NumPy gradients.

A fresh 40 MB output costs page faults on every backward (measured 30-60% slower than writing
into memory already mapped). `empty_like` hands out a pooled array whose only remaining
reference is the pool itself, so a buffer comes back exactly when the last gradient that used
it has died (reference counting: no explicit release calls, no aliasing).
"""
from __future__ import annotations

import sys

import numpy as np

MIN_BYTES = 1 << 20  # smaller arrays are cheap to allocate: no pooling
MAX_PER_KEY = 4

_pool: dict = {}


def empty_like(a: np.ndarray) -> np.ndarray:
    """An uninitialised C-contiguous array of `a`'s shape and dtype, reused when one is free."""
    if a.nbytes < MIN_BYTES:
        return np.empty(a.shape, a.dtype)
    key = (a.shape, a.dtype.str)
    slots = _pool.setdefault(key, [])
    for buf in slots:
        # references: the pool's list, this loop variable and getrefcount's argument
        if sys.getrefcount(buf) == 3:
            return buf
    buf = np.empty(a.shape, a.dtype)
    if len(slots) < MAX_PER_KEY:
        slots.append(buf)
    return buf


def clear() -> None:
    """Drop every pooled buffer (their memory returns once no gradient uses them)."""
    _pool.clear()
