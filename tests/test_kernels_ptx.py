"""PTX compile check of every CUDA kernel for compute capability 9.0 (sm_90).

The CUDA simulator accepts kernels that the real compiler rejects, so each kernel is compiled
with `cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))` for float32 and float64, in a
subprocess whose environment has NUMBA_ENABLE_CUDASIM removed (under the simulator compile_ptx
does not exist). Needs the NVRTC/NVVM wheels (`pip install "xpgrad[ptx-check]"`), no GPU; skips
with the reason when they are missing, fails on any other error.
"""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, types
from numba import boolean, cuda, float32, float64, int64, none, uint64, void
import numba.cuda.dispatcher
from xpgrad.kernels import cuda as kc, cuda_random as kr

if not cuda.is_available():
    # compile_ptx(cc=...) still asks the current device for the compute capability of the
    # device functions a kernel calls; with no driver, answer the target's (9, 0).
    numba.cuda.dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))


def signatures(f):
    v, m = f[::1], f[:, ::1]
    return {
        "_sigmoid_bwd": (v, v, v),
        "_bias_act_bwd": (m, m, m, int64, float64[::1], int64),
        "_bias_act_fwd": (m, v, int64, m),
        "_bias_act_fwd_no_bias": (m, none, int64, m),  # Linear(bias=False) + activation
        "_softmax_xent_fwd": (m, int64[::1], m, float64[::1]),
        "_softmax_xent_bwd": (m, int64[::1], f, m),
        "_sgd": (v, v, v, f, f, f, boolean),
        "_sgd_no_velocity": (v, none, v, f, f, f, boolean),  # plain SGD (momentum 0): what optim.SGD launches
        "_adam": (v, v, v, v) + (f,) * 7,
        "_scatter_add": (m, int64[::1], m),
        "_softmax_xent_bwd_upstream": (m, int64[::1], f[::1], int64, m),
        "_label_check": (int64[::1], int64, int64[::1]),
        "_sgd_device": (v, v, v, float64[::1], float64, float64, boolean),
        "_sgd_device_no_velocity": (v, none, v, float64[::1], float64, float64, boolean),
        "_count": (int64[::1],),
        "_adam_device": (v, v, v, v, float64[::1], int64[::1], float64, float64, float64, float64),
        "_sum_squares_blocks": (v, float64[::1]),
        "_sum_blocks": (float64[::1], v),
        "_fill": (uint64[::1], float64, float64, v),
        "_advance": (uint64[::1], int64),
        "_seed": (uint64[::1], int64, int64),
    }


# a second specialization of one kernel
KERNEL_OF = {
    "_sgd_no_velocity": "_sgd",
    "_bias_act_fwd_no_bias": "_bias_act_fwd",
    "_sgd_device_no_velocity": "_sgd_device",
}
RANDOM = {"_fill", "_advance", "_seed"}  # in kernels/cuda_random.py
kernels = {name for module in (kc, kr) for name, obj in vars(module).items()
           if isinstance(obj, numba.cuda.dispatcher.CUDADispatcher) and not obj.targetoptions.get("device")}
report = {"uncovered": sorted(kernels - {KERNEL_OF.get(n, n) for n in signatures(float32)})}
for f in (float32, float64):
    for name, args in signatures(f).items():
        module = kr if name in RANDOM else kc
        ptx, _ = cuda.compile_ptx(getattr(module, KERNEL_OF.get(name, name)).py_func, void(*args), cc=(9, 0))
        lines = [line.strip() for line in ptx.splitlines() if not line.strip().startswith("//")]
        report[f"{name}[{f}]"] = {
            "sm_90": ".target sm_90" in lines,
            "f64_ops": sum(".f64" in line for line in lines),
            "atomic_adds": [
                line.split()[0] for line in lines if line.startswith(("atom.global.add", "red.global.add"))
            ],
        }
print(json.dumps(report))
"""

KERNELS = [
    "_sigmoid_bwd",
    "_bias_act_bwd",
    "_bias_act_fwd",
    "_bias_act_fwd_no_bias",
    "_softmax_xent_fwd",
    "_softmax_xent_bwd",
    "_sgd",
    "_sgd_no_velocity",
    "_adam",
    "_scatter_add",
    "_softmax_xent_bwd_upstream",
    "_label_check",
    "_sgd_device",
    "_sgd_device_no_velocity",
    "_count",
    "_adam_device",
    "_sum_squares_blocks",
    "_sum_blocks",
    "_fill",
    "_advance",
    "_seed",
]
F64_ACCUMULATORS = {"_bias_act_bwd", "_softmax_xent_fwd"}  # sum in float64 on purpose
# float64 on purpose, float32 kernels too: the upstream scale (float(gy) / N as the host computes it),
# lr and Adam's bias corrections read from float64 device scalars, float64 sums, the draws' float64 [0, 1)
F64_BY_DESIGN = {
    "_softmax_xent_bwd_upstream",
    "_sgd_device",
    "_sgd_device_no_velocity",
    "_adam_device",
    "_sum_squares_blocks",
    "_sum_blocks",
    "_fill",
}


@pytest.fixture(scope="module")
def ptx_report():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        if "DynamicLibNotFoundError" in result.stderr:
            pytest.skip("CUDA compiler wheels (NVRTC/NVVM) are not installed: pip install 'xpgrad[ptx-check]'")
        pytest.fail(f"PTX compile failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def test_every_cuda_kernel_is_compiled(ptx_report):
    assert ptx_report["uncovered"] == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_ptx_targets_sm90(ptx_report, kernel, dtype):
    assert ptx_report[f"{kernel}[{dtype}]"]["sm_90"]


@pytest.mark.parametrize("kernel", sorted(set(KERNELS) - F64_ACCUMULATORS - F64_BY_DESIGN))
def test_float32_kernels_have_no_float64_arithmetic(ptx_report, kernel):
    assert ptx_report[f"{kernel}[float32]"]["f64_ops"] == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scatter_add_uses_atomic_add(ptx_report, dtype):
    suffix = ".f32" if dtype == "float32" else ".f64"
    assert any(op.endswith(suffix) for op in ptx_report[f"_scatter_add[{dtype}]"]["atomic_adds"])


def test_label_check_and_sums_use_no_atomics(ptx_report):
    """The label check and the sum of squares reduce in a fixed order (deterministic results)."""
    for kernel in ("_label_check", "_sum_squares_blocks", "_sum_blocks"):
        assert ptx_report[f"{kernel}[float64]"]["atomic_adds"] == []


def test_bias_grad_and_loss_use_float64_atomic_adds(ptx_report):
    for kernel in F64_ACCUMULATORS:
        assert "atom.global.add.f64" in ptx_report[f"{kernel}[float32]"]["atomic_adds"]
