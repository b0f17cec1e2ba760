"""RandomShift: images of a batch moved by a pixel (the default recipe of `xpgrad train`)."""

import numpy as np
import pytest

from xpgrad.data import ArrayDataset, DataLoader, RandomShift


def reference_shift(image, dy, dx):
    """out[r, c] = image[r - dy, c - dx], 0 where that falls outside."""
    h, w = image.shape
    out = np.zeros_like(image)
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                out[r, c] = image[r - dy, c - dx]
    return out


def test_apply_moves_each_image_by_its_own_offset():
    rng = np.random.default_rng(0)
    images = rng.random((9, 5, 6)).astype(np.float32)
    offsets = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    out = RandomShift((5, 6)).apply(images.reshape(9, -1), offsets).reshape(9, 5, 6)
    for image, (dy, dx), got in zip(images, offsets, out):
        np.testing.assert_array_equal(got, reference_shift(image, dy, dx))


def test_draw_leaves_images_unshifted_with_chance_one_minus_p():
    offsets = RandomShift((8, 8), p=0.3).draw(20_000, np.random.default_rng(1))
    assert set(np.unique(offsets)) <= {-1, 0, 1}
    moved = np.any(offsets != 0, axis=1).mean()
    assert abs(moved - 0.3 * 8 / 9) < 0.02  # a drawn offset is (0, 0) one time in nine


def test_sharded_ranks_shift_their_samples_as_one_process_would():
    rng = np.random.default_rng(2)
    data = ArrayDataset(rng.random((50, 16)), rng.integers(0, 3, 50))
    shift = RandomShift((4, 4), p=0.5)
    whole = [x.numpy() for x, _ in DataLoader(data, 12, shuffle=True, seed=7, augment=shift)]
    parts = [
        [x.numpy() for x, _ in DataLoader(data, 12, shuffle=True, seed=7, augment=shift, shard=(r, 3))]
        for r in range(3)
    ]
    for i, batch in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([p[i] for p in parts]), batch)
    plain = [x.numpy() for x, _ in DataLoader(data, 12, shuffle=True, seed=7)]
    assert any(not np.array_equal(a, b) for a, b in zip(whole, plain))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_shape=(8,)), "image_shape must be (height, width)"),
        (dict(image_shape=(8, 8), max_shift=8), "max_shift must be an int in [0, 8)"),
        (dict(image_shape=(8, 8), p=1.5), "p must be a probability"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        RandomShift(**kwargs)


def test_apply_names_a_batch_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"expected x of shape \(n, 64\)"):
        RandomShift((8, 8)).apply(np.zeros((2, 63), np.float32), np.zeros((2, 2), int))
