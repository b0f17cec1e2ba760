"""pytest-benchmark: a training step of each issue-5 config, xpgrad (kernels on / off) vs NumPy.

    pytest bench/bench_engine.py --benchmark-enable --benchmark-columns=median,iqr
The same figures, paired round by round with ratios, come from `xpgrad bench mlp`.
"""

import pytest

from xpgrad import bench_mlp
from xpgrad.fns import use_kernels


@pytest.mark.parametrize("config", sorted(bench_mlp.CONFIGS))
@pytest.mark.parametrize("contender", ["numpy", "xpgrad", "xpgrad_no_kernels"])
def test_training_step(benchmark, config, contender):
    cfg = bench_mlp.CONFIGS[config]
    if contender == "numpy":
        step = bench_mlp.numpy_step_fn(cfg)
    else:
        step = bench_mlp.xpgrad_step_fn(cfg)
    kernels = contender != "xpgrad_no_kernels"
    with use_kernels(kernels):
        first = float(step())
        benchmark(step)
        assert float(step()) < first or config == "b"  # training moves downhill (b's lr is mild)
