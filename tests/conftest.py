"""Test-session set-up: choose the Numba CUDA simulator before anything imports numba.cuda.

With no NVIDIA driver on the machine, CUDA kernels run under Numba's simulator
(NUMBA_ENABLE_CUDASIM=1) so every machine tests them; with a real GPU the same tests use it.
"""

import ctypes
import os
import sys


def _real_gpu_present() -> bool:
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


HAS_GPU = _real_gpu_present()
if not HAS_GPU:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    if "numba" in sys.modules:  # a plugin imported numba first: make it re-read the variable
        import numba.core.config

        numba.core.config.reload_config()

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
