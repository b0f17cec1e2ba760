"""The function table the engine uses for traced arrays: NumPy's, with the kernels recorded.

`RecordingFns` is `fns.KernelFns` (the same fast paths, so a capture run takes exactly the
branches eager takes) over `RecordingKernels` stand-ins for the kernel modules, and with output
buffers made by the recorder. `install()` routes `TracedArray` to it (once per process).
"""

from __future__ import annotations

import numpy as np

from .. import autograd, fast_numpy, kernels
from ..fns import KernelFns
from .traced import RecordingKernels, TracedArray, current_recorder


class RecordingFns(KernelFns):
    """fns.KernelFns for TracedArray: kernel calls recorded, output buffers from the recorder."""

    def __init__(self):
        super().__init__(fast_numpy, RecordingKernels(kernels), self._empty_like)
        self.unchecked = RecordingKernels(kernels.unchecked)

    def zeros(self, shape, dtype):
        recorder = current_recorder()
        if recorder is None:
            return np.zeros(shape, dtype)
        return recorder.zeros(shape, dtype)

    @staticmethod
    def _empty_like(a):
        recorder = current_recorder()
        if recorder is None:
            return np.empty(a.shape, a.dtype)
        return recorder.empty(a.shape, a.dtype)


_installed = False


def install() -> None:
    """Route TracedArray to fast_numpy and RecordingFns (idempotent)."""
    global _installed
    if not _installed:
        autograd.register_array_type(TracedArray, fast_numpy, RecordingFns())
        _installed = True
