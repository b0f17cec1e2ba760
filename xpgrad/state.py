"""Engine switches that can differ between threads, over process-wide defaults.

A thread serving predictions under `no_grad()` must not stop another thread from recording its
training step, and `use_kernels(False)` or `use_backend(...)` in one thread must not change what
another computes. So each switch lives in `local`, a `threading.local` (one set of attributes
per thread, the way `chainer.config` sits over `chainer.global_config`); a new thread starts
from the process-wide defaults:

| switch | per thread (context form) | process-wide default |
|---|---|---|
| grad mode | `no_grad()`, `set_grad_enabled(flag)`, backward's own switch | always on |
| kernels | `fns.use_kernels(flag)` | `XPGRAD_KERNELS` (`0` switches them off) |
| backend | `use_backend(name)` | `XPGRAD_BACKEND`, `set_backend(name)` |
| capture in progress | `xg.capture` while it records a call (`capture`: its recorder) | none |

Debug mode (`XPGRAD_DEBUG`, `set_debug`) has no context form and stays process-wide.
"""

from __future__ import annotations

import os
import threading

KERNELS_BY_DEFAULT = os.environ.get("XPGRAD_KERNELS", "1") != "0"  # what a new thread's kernels switch starts as


class ThreadState(threading.local):
    """One thread's switches. `backend` is None while the thread follows the process-wide default."""

    def __init__(self):
        self.grad_enabled = True
        self.grad_modes = []  # the modes set_grad_enabled blocks will restore, innermost last
        self.kernels = KERNELS_BY_DEFAULT
        self.backend = None
        self.capture = None  # the xpgrad.capture recorder while this thread records a step


local = ThreadState()
