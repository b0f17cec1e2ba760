"""pytest-benchmark: each CPU kernel against its unfused NumPy expression.

    pytest bench/bench_kernels.py --benchmark-enable --benchmark-columns=median,iqr,rounds

Cases (arrays, the fused call and the NumPy call) come from xpgrad.bench_kernels, the module
behind `xpgrad bench kernels`; each pair lands in one group, so the table compares them directly.
Kernels are compiled and warmed up outside the timed call. Serial kernels (Numba's default here).
"""

import numpy as np
import pytest

from xpgrad.bench_kernels import cases

SIZES = [10**5, 4096 * 1024]
NAMES = [case.name for case in cases(16, np.random.default_rng(0))]


@pytest.fixture(scope="module")
def all_cases():
    """{(name, size): Case}, built once per size."""
    return {(case.name, n): case for n in SIZES for case in cases(n, np.random.default_rng(0))}


@pytest.mark.parametrize("impl", ["kernel", "numpy"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_kernel_vs_numpy(benchmark, all_cases, name, size, impl):
    case = all_cases[name, size]
    fn = case.kernel if impl == "kernel" else case.numpy
    fn()  # compile and warm up outside the timing
    benchmark.group = f"{name} n={size}"
    benchmark(fn)
