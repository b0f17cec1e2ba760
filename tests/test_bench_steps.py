"""The contenders of `xpgrad bench mlp` take the same training step: equal losses step by step."""

import numpy as np
import pytest

from xpgrad import bench_mlp


@pytest.mark.parametrize("config", sorted(bench_mlp.CONFIGS))
def test_numpy_and_xpgrad_steps_agree(config):
    cfg = bench_mlp.CONFIGS[config]
    numpy_step = bench_mlp.numpy_step_fn(cfg, np.float64)
    xpgrad_step = bench_mlp.xpgrad_step_fn(cfg, np.float64)
    numpy_losses = [float(numpy_step()) for _ in range(3)]
    xpgrad_losses = [float(xpgrad_step().item()) for _ in range(3)]
    np.testing.assert_allclose(xpgrad_losses, numpy_losses, rtol=1e-9)
    assert numpy_losses[2] != numpy_losses[0]  # the weights moved, so the later steps compare the updates too


def test_the_notes_update_written_by_hand_takes_the_same_steps():
    cfg = bench_mlp.CONFIGS["a_notes"]
    numpy_step = bench_mlp.numpy_step_fn(cfg, np.float64)
    manual_step = bench_mlp.notes_xpgrad_step_fn(cfg, np.float64, manual_update=True)
    np.testing.assert_allclose(
        [float(manual_step().item()) for _ in range(3)], [float(numpy_step()) for _ in range(3)], rtol=1e-9
    )
