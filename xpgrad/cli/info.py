"""`xpgrad info`: backend, devices, versions, kernels and GPU availability."""

from __future__ import annotations

import importlib
import os
import platform

from .common import EXIT_FAILURE, add_backend, fail


def add_parser(sub) -> None:
    info = sub.add_parser("info", help="backend, devices, versions, kernels and GPU availability")
    add_backend(info)
    info.set_defaults(func=run)


def _version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        try:
            return getattr(importlib.import_module(module.replace("-", "_")), "__version__", "installed")
        except ImportError:
            return "not installed"


def run(args) -> int:
    """Handle `xpgrad info`; returns the exit status."""
    import xpgrad as xg

    from .. import backend as _backend
    from ..distributed.mpi_comm import mpi_library_version
    from ..distributed.nccl_comm import nccl_version
    from ..errors import BackendError

    lines = [f"xpgrad {xg.__version__} (python {platform.python_version()}, {platform.system()} {platform.machine()})"]
    problem = None
    env = os.environ.get(_backend.ENV_VAR)
    source = f"--backend {args.backend}" if args.backend else (f"{_backend.ENV_VAR}={env}" if env else "default")
    try:
        current = xg.get_backend()
        lines.append(f"backend: {current.name} (from {source})")
    except BackendError as err:
        problem = str(err)
        lines.append(f"backend: unusable (from {source})")
    gpu = xg.cupy_gpu_available()
    devices = ["cpu"] + (_gpu_names() if gpu else [])
    lines.append(f"devices: {', '.join(devices)}")
    for package in ("numpy", "numba", "array-api-compat", "cupy", "scikit-learn", "matplotlib", "tqdm"):
        lines.append(f"{package}: {_cupy_version() if package == 'cupy' else _version(package)}")
    lines.append(f"kernels (numba): {_kernels_status()}")
    lines.append(f"mpi4py: {_version('mpi4py')}")
    lines.append(f"mpi: {mpi_library_version()}")
    lines.append(f"nccl: {nccl_version()}")
    lines.append(f"gpu: {'available' if gpu else 'not available'}")
    print("\n".join(lines), flush=True)
    if problem:
        return fail(problem, EXIT_FAILURE)
    return 0


def _cupy_version() -> str:
    from importlib import metadata

    for dist in ("cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x", "cupy"):
        try:
            return f"{metadata.version(dist)} ({dist})"
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def _kernels_status() -> str:
    from ..fns import kernels_enabled

    try:
        import numba  # noqa: F401
    except ImportError:
        return "not available (numba is not installed)"
    try:
        importlib.import_module("xpgrad.kernels")
    except Exception as err:  # noqa: BLE001 - report any failure to load, do not crash `info`
        return f"not available (importing xpgrad.kernels failed: {type(err).__name__}: {err})"
    if not kernels_enabled():
        return "available but switched off (XPGRAD_KERNELS=0)"
    return "available"


def _gpu_names() -> list[str]:
    try:
        import cupy

        names = []
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            name = cupy.cuda.runtime.getDeviceProperties(i)["name"]
            names.append(f"cuda:{i} ({name.decode() if isinstance(name, bytes) else name})")
        return names
    except Exception:  # noqa: BLE001 - a listing problem must not break `info`
        return ["cuda (device query failed)"]
