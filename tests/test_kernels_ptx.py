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
from numba import boolean, cuda, float32, float64, int64, uint64, void
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
        "_bias_act_fwd": (m, v, boolean, int64, m),  # without a bias: a row of z stands in, has_bias False
        "_softmax_xent_fwd": (m, int64[::1], m, float64[::1]),
        "_softmax_xent_bwd": (m, int64[::1], f, m),
        "_sgd": (v, v, v, f, f, f, boolean),  # plain SGD (momentum 0) too: grad stands in for the velocity
        "_adam": (v, v, v, v) + (f,) * 7,
        "_scatter_add": (m, int64[::1], m),
        "_softmax_xent_bwd_upstream": (m, int64[::1], f[::1], int64, m),
        "_label_check": (int64[::1], int64, int64[::1]),
        "_sgd_device": (v, v, v, float64[::1], float64, float64, boolean),
        "_count": (int64[::1],),
        "_adam_device": (v, v, v, v, float64[::1], int64[::1], float64, float64, float64, float64),
        "_sum_squares_blocks": (v, float64[::1]),
        "_sum_blocks": (float64[::1], v),
        "_fill": (uint64[::1], int64, float64, float64, v),
        "_advance": (uint64[::1], int64),
        "_seed": (uint64[::1], int64, int64),
    }


# a second specialization of one kernel (none at present: no kernel takes None, see below)
KERNEL_OF: dict = {}
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

# What each public entry point launches, its non-array arguments marshalled by numba-cuda's own
# _Kernel._prepare_args (what a launch on a device runs; the simulator skips it and takes None)
import numpy as np
from numba.core.typing.typeof import Purpose, typeof
from numba.cuda.dispatcher import _Kernel

launches = []
record = lambda kernel, grid, *args: launches.append((kernel.py_func.__name__, args))
kc._launch = kr._launch = record
a = lambda *shape: np.ones(shape)
labels, status, hyper, state = np.array([0, 1, 2]), np.zeros(3, np.int64), np.ones(1), np.zeros(3, np.uint64)
kc.sigmoid_backward(a(3), a(3))
kc.bias_act_backward(a(3, 4), a(3, 4), "relu")
kc.bias_act_forward(a(3, 4), a(4), "relu")
kc.bias_act_forward(a(3, 4), None, "sigmoid")  # Linear(bias=False), xg.sigmoid / xg.relu
kc.unchecked.bias_act_forward(a(3, 4), None, 1, a(3, 4))
kc.softmax_xent_forward(a(3, 4), labels)
kc.softmax_xent_forward(a(3, 4), labels, status=status)
kc.softmax_xent_backward(a(3, 4), labels, 0.5)
kc.softmax_xent_backward_upstream(a(3, 4), labels, np.array(0.5), 3)
kc.label_check(labels, 3, status)
for velocity, momentum in ((None, 0.0), (a(3), 0.9)):  # plain SGD (momentum 0) and with momentum
    kc.sgd_update(a(3), a(3), velocity, 0.1, momentum)
    kc.sgd_update_device(a(3), a(3), velocity, hyper, momentum)
kc.adam_update(a(3), a(3), a(3), a(3), 0.1, 0.9, 0.999, 1e-8, 0.0, 1)
kc.adam_update_device(a(3), a(3), a(3), a(3), hyper, np.zeros(1, np.int64), 0.9, 0.999, 1e-8, 0.0)
kc.scatter_add(a(3, 2), labels, a(3, 2))
kc.sum_of_squares(a(5))
kr.seed_state(state, (1, 2))
kr.dropout_mask(state, (3, 4), 0.5)
kr.uniform(state, a(5))
kr.normal(state, a(5))
marshal = lambda value: _Kernel._prepare_args(
    types.SimpleNamespace(extensions=[]), typeof(value, Purpose.argument), value, 0, [], []
)
try:
    marshal(None)
    report["none_rejected"] = False
except NotImplementedError:
    report["none_rejected"] = True
report["launched"] = sorted({name for name, _ in launches})
report["unmarshallable"] = []
for name, args in launches:
    for value in args:
        if not hasattr(value, "shape"):
            try:
                marshal(value)
            except NotImplementedError:
                report["unmarshallable"].append(f"{name}: {value!r}")
print(json.dumps(report))
"""

KERNELS = [
    "_sigmoid_bwd",
    "_bias_act_bwd",
    "_bias_act_fwd",
    "_softmax_xent_fwd",
    "_softmax_xent_bwd",
    "_sgd",
    "_adam",
    "_scatter_add",
    "_softmax_xent_bwd_upstream",
    "_label_check",
    "_sgd_device",
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


def test_every_launch_passes_arguments_numba_cuda_can_marshal(ptx_report):
    """numba-cuda 0.30's _Kernel._prepare_args raises NotImplementedError for a None argument on
    a device (the simulator accepts it): plain SGD and a bias-free Linear / xg.relu / xg.sigmoid
    once passed None. Every kernel is launched through the entry points here (on a stub launcher)
    and each non-array argument is marshalled by numba-cuda's own code."""
    assert ptx_report["none_rejected"]  # the premise: None is what numba-cuda cannot pass
    assert ptx_report["launched"] == sorted(KERNELS)
    assert ptx_report["unmarshallable"] == []


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
