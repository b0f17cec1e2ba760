"""DataLoader(shard=(rank, world_size)): each rank's part of the same global batches (no MPI needed)."""

import itertools

import numpy as np
import pytest

from xpgrad.data import ArrayDataset, DataLoader, shard_bounds


def _dataset(n):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return ArrayDataset(x, np.arange(n) % 4, num_classes=4)


@pytest.mark.parametrize("n, batch, world", [(103, 16, 2), (103, 16, 3), (50, 7, 4), (9, 4, 5), (64, 64, 2)])
def test_rank_parts_put_together_are_the_one_process_batches(n, batch, world):
    data = _dataset(n)
    single = DataLoader(data, batch, shuffle=True, seed=3)
    shards = [DataLoader(data, batch, shuffle=True, seed=3, shard=(r, world)) for r in range(world)]
    assert all(len(s) == len(single) for s in shards)  # every rank runs the same number of steps
    for _epoch in range(2):
        parts = [list(s) for s in shards]
        for i, (x, y) in enumerate(single):
            rank_x = [parts[r][i][0].numpy() for r in range(world)]
            np.testing.assert_array_equal(np.concatenate(rank_x), x.numpy())
            np.testing.assert_array_equal(np.concatenate([parts[r][i][1].numpy() for r in range(world)]), y.numpy())
            sizes = [len(p) for p in rank_x]
            assert max(sizes) - min(sizes) <= 1  # split as evenly as possible


def test_shard_bounds_cover_the_batch_in_order():
    for batch in range(12):
        for world in range(1, 5):
            bounds = [shard_bounds(batch, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == batch
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


def test_drop_last_is_global():
    data = _dataset(50)
    shards = [DataLoader(data, 16, drop_last=True, shard=(r, 2)) for r in range(2)]
    assert [len(s) for s in shards] == [3, 3]
    assert sum(len(y) for s in shards for _, y in s) == 48


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0), (0,), "01", (0.0, 2), (True, 2)])
def test_bad_shard_is_rejected(shard):
    with pytest.raises(ValueError, match="shard must be"):
        DataLoader(_dataset(4), 2, shard=shard)
