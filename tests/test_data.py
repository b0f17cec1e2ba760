"""xpgrad.data: IDX reading, the datasets, their error messages, and DataLoader batching."""

import gzip
import struct
import sys

import numpy as np
import pytest

from xpgrad.data import (
    DATASET_NAMES,
    ArrayDataset,
    DataLoader,
    Dataset,
    DatasetError,
    DatasetFormatError,
    DatasetNotFoundError,
    Splits,
    UnknownDatasetError,
    load_dataset,
    read_idx,
    spiral,
)
from xpgrad.errors import XpgradError

IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array`, written independently of read_idx."""
    code = IDX_CODES[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, payload: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_mnist(folder, n_train=20, n_test=8, gz=False, seed=0):
    """Write a tiny MNIST-style folder; return its four arrays in MNIST_STEMS order."""
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        np.arange(n_train, dtype=np.uint8) % 10,
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        np.arange(n_test, dtype=np.uint8) % 10,
    )
    folder.mkdir(exist_ok=True)
    for stem, array in zip(MNIST_STEMS, arrays):
        write(folder / (stem + ".gz" if gz else stem), idx_bytes(array), gz)
    return arrays


def sample_array(dtype: str, shape) -> np.ndarray:
    values = np.arange(-(np.prod(shape) // 2), np.prod(shape) - np.prod(shape) // 2)
    if dtype == "u1":
        values = values % 256
    scale = 0.37 if dtype[0] == "f" else 1
    return (values * scale).astype(dtype).reshape(shape)


# ---------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5)])
def test_read_idx_round_trip(tmp_path, dtype, shape, gz):
    expected = sample_array(dtype, shape)
    path = write(tmp_path / ("a.idx.gz" if gz else "a.idx"), idx_bytes(expected), gz)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype)
    assert got.dtype.isnative
    assert got.shape == shape
    np.testing.assert_array_equal(got, expected)
    got[...] = 0  # a writable copy, not a view of the file's bytes


def test_read_idx_detects_gzip_by_content_not_suffix(tmp_path):
    expected = sample_array("i2", (2, 3))
    gz_named_plain = write(tmp_path / "labels-idx1-ubyte", idx_bytes(expected), gz=True)
    plain_named_gz = write(tmp_path / "labels-idx1-ubyte.gz", idx_bytes(expected))
    np.testing.assert_array_equal(read_idx(gz_named_plain), expected)
    np.testing.assert_array_equal(read_idx(plain_named_gz), expected)
    np.testing.assert_array_equal(read_idx(str(plain_named_gz)), expected)


def test_read_idx_missing_file(tmp_path):
    path = tmp_path / "nope-idx3-ubyte"
    with pytest.raises(DatasetNotFoundError, match="does not exist") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, DatasetError)
    assert isinstance(info.value, XpgradError)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_read_idx_truncated_data(tmp_path, gz):
    payload = idx_bytes(np.zeros((2, 3), np.uint8))[:-1]  # 12 header + 6 data bytes, one short
    path = write(tmp_path / "short.idx", payload, gz)
    with pytest.raises(DatasetFormatError, match="truncated IDX file") as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert "(2, 3)" in message and "ubyte" in message
    assert "18 bytes are expected, found 17" in message
    assert ("after decompression" in message) == gz
    assert isinstance(info.value, ValueError)


def test_read_idx_trailing_bytes(tmp_path):
    path = write(tmp_path / "long.idx", idx_bytes(np.zeros(4, np.float32)) + b"\0")
    with pytest.raises(DatasetFormatError, match="trailing bytes.*24 bytes are expected, found 25"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = write(tmp_path / "head.idx", bytes([0, 0, 0x08, 3]) + struct.pack(">I", 5))
    with pytest.raises(DatasetFormatError, match="3 dimensions need 16 bytes, found 8") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "payload, shown",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x00", "01 00 08 01"),  # bad leading zeros
        (b"\x00\x00\x07\x01\x00\x00\x00\x00", "00 00 07 01"),  # unknown type code
        (b"\x00\x00\x08\x00", "00 00 08 00"),  # zero dimensions
        (b"\x00\x00", "00 00"),  # shorter than the magic number
        (b"", "nothing"),
    ],
)
def test_read_idx_bad_magic(tmp_path, payload, shown):
    path = write(tmp_path / "bad.idx", payload)
    with pytest.raises(DatasetFormatError, match="not an IDX file") as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert f"starts with {shown};" in message
    assert "08 ubyte" in message and "0E double" in message


def test_read_idx_corrupt_gzip(tmp_path):
    path = write(tmp_path / "broken.gz", gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:-12])
    with pytest.raises(DatasetFormatError, match="corrupt gzip data") as info:
        read_idx(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- mnist-style folders


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_folder_loads(tmp_path, name, gz):
    train_images, train_labels, test_images, test_labels = write_mnist(tmp_path / "d", gz=gz)
    splits = load_dataset(name, tmp_path / "d", val_fraction=0.5)
    assert isinstance(splits, Splits)
    assert splits.name == name
    assert (splits.num_classes, splits.num_features) == (10, 784)
    assert len(splits.train) == len(splits.val) == 10  # half of each of the 10 classes
    assert splits.test.x.shape == (8, 784) and splits.test.x.dtype == np.float32
    assert splits.test.y.dtype == np.int64
    np.testing.assert_array_equal(splits.test.x, test_images.reshape(8, 784) / np.float32(255))
    np.testing.assert_array_equal(splits.test.y, test_labels)
    for part in (splits.train, splits.val, splits.test):
        assert part.x.min() >= 0.0 and part.x.max() <= 1.0
    # train and val together are exactly the training file, each image with its own label
    got = sorted(
        (np.rint(x * 255).astype(np.uint8).tobytes(), int(y))
        for part in (splits.train, splits.val)
        for x, y in zip(part.x, part.y)
    )
    expected = sorted((x.tobytes(), int(y)) for x, y in zip(train_images, train_labels))
    assert got == expected


def test_mnist_folder_mixed_plain_and_gz(tmp_path):
    write_mnist(tmp_path)
    for stem in MNIST_STEMS[1::2]:  # the label files become .gz
        path = tmp_path / stem
        write(tmp_path / (stem + ".gz"), path.read_bytes(), gz=True)
        path.unlink()
    splits = load_dataset("MNIST", str(tmp_path), val_fraction=0.0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 0, 8)
    np.testing.assert_array_equal(splits.train.y, np.arange(20) % 10)


def test_mnist_needs_data_dir():
    with pytest.raises(DatasetNotFoundError, match="give data_dir") as info:
        load_dataset("mnist")
    for stem in MNIST_STEMS:
        assert f"{stem}[.gz]" in str(info.value)


def test_mnist_missing_folder(tmp_path):
    folder = tmp_path / "missing"
    with pytest.raises(DatasetNotFoundError, match="does not exist") as info:
        load_dataset("fashion-mnist", folder)
    message = str(info.value)
    assert str(folder) in message and "'fashion-mnist'" in message
    assert "t10k-labels-idx1-ubyte[.gz]" in message


def test_mnist_data_dir_is_a_file(tmp_path):
    path = write(tmp_path / "file", b"")
    with pytest.raises(DatasetNotFoundError, match="not a folder") as info:
        load_dataset("mnist", path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("stem", MNIST_STEMS)
def test_mnist_missing_file(tmp_path, stem):
    write_mnist(tmp_path)
    (tmp_path / stem).unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", tmp_path)
    assert str(info.value) == (f"dataset 'mnist': expected {tmp_path / stem} or {tmp_path / stem}.gz; neither exists")


def test_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    write(labels, idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DatasetFormatError) as info:
        load_dataset("mnist", tmp_path)
    assert str(info.value) == (f"{tmp_path / 't10k-images-idx3-ubyte'} holds 8 images but {labels} holds 7 labels")


def test_mnist_truncated_file(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    write(images, images.read_bytes()[:1000])
    with pytest.raises(DatasetFormatError, match="truncated IDX file") as info:
        load_dataset("mnist", tmp_path)
    assert str(images) in str(info.value)
    assert f"{16 + 20 * 28 * 28} bytes are expected, found 1000" in str(info.value)


@pytest.mark.parametrize(
    "stem, array, expected",
    [
        ("train-images-idx3-ubyte", np.zeros((20, 784), np.uint8), "ubyte images of shape"),
        ("train-images-idx3-ubyte", np.zeros((20, 28, 28), np.float32), "ubyte images of shape"),
        ("train-labels-idx1-ubyte", np.zeros((20, 1), np.uint8), "integer labels of shape"),
        ("train-labels-idx1-ubyte", np.zeros(20, np.float64), "integer labels of shape"),
        ("train-labels-idx1-ubyte", np.full(20, 10, np.uint8), "labels must be 0 to 9, found 10"),
    ],
)
def test_mnist_wrong_contents(tmp_path, stem, array, expected):
    write_mnist(tmp_path)
    write(tmp_path / stem, idx_bytes(array))
    with pytest.raises(DatasetFormatError, match=expected) as info:
        load_dataset("mnist", tmp_path)
    assert str(tmp_path / stem) in str(info.value)


def test_unknown_dataset_name():
    with pytest.raises(UnknownDatasetError) as info:
        load_dataset("cifar10")
    assert isinstance(info.value, ValueError) and isinstance(info.value, DatasetError)
    assert "'cifar10'" in str(info.value)
    for name in DATASET_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_bad_val_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("spiral", val_fraction=fraction)


# ---------------------------------------------------------------- digits and spiral


def test_digits_splits():
    from sklearn.datasets import load_digits

    splits = load_dataset("digits")
    assert splits.name == "digits"
    assert (splits.num_features, splits.num_classes) == (64, 10)
    sizes = [len(part) for part in (splits.train, splits.val, splits.test)]
    assert sum(sizes) == 1797
    assert 0.18 < sizes[2] / 1797 < 0.22 and 0.08 < sizes[1] / (sizes[0] + sizes[1]) < 0.12
    for part in (splits.train, splits.val, splits.test):
        assert part.x.dtype == np.float32 and part.y.dtype == np.int64
        assert part.x.min() == 0.0 and part.x.max() == 1.0
        assert set(np.unique(part.y)) == set(range(10))  # stratified: every class in every split
    # together the splits are the whole data set, each sample exactly once and with its label
    digits = load_digits()
    everything = np.concatenate(
        [np.column_stack([part.x * 16, part.y]) for part in (splits.train, splits.val, splits.test)]
    )
    original = np.column_stack([digits.data, digits.target])
    for got, expected in zip(
        np.unique(everything, axis=0, return_counts=True), np.unique(original, axis=0, return_counts=True), strict=True
    ):
        np.testing.assert_array_equal(got, expected)


def test_digits_deterministic_and_seeded():
    a, b = load_dataset("digits", seed=3), load_dataset("digits", seed=3)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, name).x, getattr(b, name).x)
        np.testing.assert_array_equal(getattr(a, name).y, getattr(b, name).y)
    other = load_dataset("digits", seed=4)
    assert not np.array_equal(a.test.x, other.test.x)


def test_digits_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'xpgrad\[train\]'"):
        load_dataset("digits")


def test_spiral_arrays():
    x, y = spiral(n_per_class=50, num_classes=4, seed=1)
    assert x.shape == (200, 2) and x.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [50] * 4)
    assert np.linalg.norm(x, axis=1).max() <= 1.0 + 1e-6
    np.testing.assert_array_equal(x[0], [0.0, 0.0])  # every arm starts at the origin
    x2, y2 = spiral(n_per_class=50, num_classes=4, seed=1)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, spiral(n_per_class=50, num_classes=4, seed=2)[0])
    np.testing.assert_allclose(  # noise-free arm j runs from angle 4j to 4(j+1)
        spiral(n_per_class=5, noise=0.0)[0][14], [np.sin(12.0), np.cos(12.0)], rtol=1e-6
    )


def test_spiral_splits():
    splits = load_dataset("spiral", seed=5)
    assert (splits.num_features, splits.num_classes) == (2, 3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (216, 24, 60)
    again = load_dataset("spiral", seed=5)
    np.testing.assert_array_equal(splits.train.x, again.train.x)
    np.testing.assert_array_equal(splits.val.y, again.val.y)
    other = load_dataset("spiral", seed=6)
    assert not np.array_equal(splits.train.x, other.train.x)

    def points(s):
        return np.sort(np.concatenate([s.train.x, s.val.x, s.test.x]), axis=0)

    assert not np.array_equal(points(splits), points(other))  # the seed moves the noise too


# ---------------------------------------------------------------- ArrayDataset


def test_array_dataset():
    data = ArrayDataset(np.arange(12).reshape(6, 2, 1), [0, 1, 2, 0, 1, 4])
    assert isinstance(data, Dataset)
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert (len(data), data.num_classes, data.num_features) == (6, 5, 2)
    x, y = data[3]
    np.testing.assert_array_equal(x, [[6.0], [7.0]])
    assert y == 0
    assert ArrayDataset(np.zeros((2, 3)), [0, 0], num_classes=7).num_classes == 7
    assert ArrayDataset(np.zeros((0, 3)), np.zeros(0)).num_classes == 0


@pytest.mark.parametrize("y", [np.zeros(4), np.zeros((3, 1))], ids=["length", "ndim"])
def test_array_dataset_rejects_mismatched_arrays(y):
    with pytest.raises(ValueError, match=r"got x \(3, 2\) and y"):
        ArrayDataset(np.zeros((3, 2)), y)


# ---------------------------------------------------------------- DataLoader


def numbered(n: int) -> ArrayDataset:
    """Sample i has features (i, -i) and label i, so batches show which samples they hold."""
    i = np.arange(n)
    return ArrayDataset(np.column_stack([i, -i]).astype(np.float64), i.astype(np.int32))


def epoch(loader) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in loader]


class ListDataset(Dataset):
    """A Dataset that is not an ArrayDataset, to exercise the per-sample path."""

    def __init__(self, n):
        self.samples = [(np.array([i, -i], dtype=np.float64), i) for i in range(n)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.samples[index]


@pytest.mark.parametrize("make", [numbered, ListDataset], ids=["array", "generic"])
@pytest.mark.parametrize("drop_last, sizes", [(False, [3, 3, 3, 1]), (True, [3, 3, 3])])
def test_loader_batches_in_order(make, drop_last, sizes):
    loader = DataLoader(make(10), batch_size=3, drop_last=drop_last)
    assert len(loader) == len(sizes)
    batches = epoch(loader)
    assert [len(y) for _, y in batches] == sizes
    for x, y in batches:
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape == (len(y), 2)
        np.testing.assert_array_equal(x, np.column_stack([y, -y]))
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), np.arange(sum(sizes)))


@pytest.mark.parametrize("make", [numbered, ListDataset], ids=["array", "generic"])
def test_loader_shuffle_sees_every_sample_once_per_epoch(make):
    loader = DataLoader(make(50), batch_size=8, shuffle=True, seed=0)
    orders = []
    for _ in range(3):
        batches = epoch(loader)
        assert len(batches) == len(loader) == 7
        for x, y in batches:
            np.testing.assert_array_equal(x, np.column_stack([y, -y]))  # rows keep their labels
        order = np.concatenate([y for _, y in batches])
        np.testing.assert_array_equal(np.sort(order), np.arange(50))
        orders.append(order)
    assert not np.array_equal(orders[0], np.arange(50))
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])


def test_loader_shuffle_drop_last():
    loader = DataLoader(numbered(50), batch_size=8, shuffle=True, drop_last=True, seed=1)
    assert len(loader) == 6
    order = np.concatenate([y for _, y in epoch(loader)])
    assert len(order) == 48 and len(np.unique(order)) == 48


def test_loader_seed_gives_same_orders_epoch_by_epoch():
    def orders(seed):
        loader = DataLoader(numbered(30), batch_size=4, shuffle=True, seed=seed)
        return [np.concatenate([y for _, y in epoch(loader)]) for _ in range(3)]

    first, second = orders(7), orders(7)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], orders(8)[0])


def test_loader_array_and_generic_paths_agree():
    array_batches = epoch(DataLoader(numbered(20), batch_size=6, shuffle=True, seed=3))
    generic_batches = epoch(DataLoader(ListDataset(20), batch_size=6, shuffle=True, seed=3))
    for (xa, ya), (xg_, yg) in zip(array_batches, generic_batches, strict=True):
        np.testing.assert_array_equal(xa, xg_)
        np.testing.assert_array_equal(ya, yg)


def test_loader_accepts_numpy_int_batch_size():
    assert len(DataLoader(numbered(10), batch_size=np.int64(4))) == 3


def test_loader_empty_dataset():
    loader = DataLoader(ArrayDataset(np.zeros((0, 2)), np.zeros(0)), batch_size=4)
    assert len(loader) == 0
    assert epoch(loader) == []


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True, None])
def test_loader_rejects_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        DataLoader(numbered(4), batch_size=batch_size)
