"""Datasets and batching: scikit-learn's digits, MNIST-style IDX folders and the cs231n spiral.

Datasets hold NumPy arrays on the host; a DataLoader turns each batch into xpgrad Tensors on the
device asked for.
"""

from __future__ import annotations

import gzip
import math
import numbers
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpgrad.errors import XpgradError

DATASET_NAMES = ("digits", "mnist", "fashion-mnist", "spiral")
IMAGE_SHAPES = {"digits": (8, 8), "mnist": (28, 28), "fashion-mnist": (28, 28)}  # (height, width) of a flat sample
TEST_FRACTION = 0.2  # held out as the test split of the datasets that ship without one

# IDX type code -> (big-endian dtype, name used in messages)
_IDX_TYPES = {
    0x08: (np.dtype(">u1"), "ubyte"),
    0x09: (np.dtype(">i1"), "byte"),
    0x0B: (np.dtype(">i2"), "short"),
    0x0C: (np.dtype(">i4"), "int"),
    0x0D: (np.dtype(">f4"), "float"),
    0x0E: (np.dtype(">f8"), "double"),
}
_IDX_CODES = ", ".join(f"{code:02X} {name}" for code, (_, name) in _IDX_TYPES.items())
_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MNIST_CLASSES = 10


class DatasetError(XpgradError):
    """A dataset cannot be loaded."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A data folder or file is missing."""


class DatasetFormatError(DatasetError, ValueError):
    """A data file is malformed, or files of one dataset disagree."""


class UnknownDatasetError(DatasetError, ValueError):
    """load_dataset() was given a name it does not know."""


class Dataset:
    """A sized collection of (x, y) samples; subclasses give __len__ and __getitem__."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class ArrayDataset(Dataset):
    """Whole arrays in memory: x (n, ...) as float32 and integer labels y (n,) as int64."""

    def __init__(self, x, y, num_classes: int | None = None):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.y = np.ascontiguousarray(y, dtype=np.int64)
        if self.x.ndim < 1 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ValueError(
                f"ArrayDataset needs x of shape (n, ...) and labels y of shape (n,); "
                f"got x {self.x.shape} and y {self.y.shape}"
            )
        self.num_classes = int(self.y.max(initial=-1)) + 1 if num_classes is None else num_classes

    @property
    def num_features(self) -> int:
        """Size of one flattened sample."""
        return math.prod(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[index], self.y[index]

    def subset(self, indices: np.ndarray) -> ArrayDataset:
        """The samples at `indices`, keeping num_classes."""
        return ArrayDataset(self.x[indices], self.y[indices], self.num_classes)


class RandomShift:
    """Augmentation: move each image of a batch by up to `max_shift` pixels along each axis
    (chance `p` per image; pixels shifted in are 0), the "nudged" digits of scikit-learn's RBM
    example. Samples are flat rows of `image_shape` (e.g. (8, 8) for digits).

    The offsets are drawn for a whole (global) batch with `draw` and applied to any part of it
    with `apply`, so data-parallel ranks shift their samples exactly as one process would.
    """

    def __init__(self, image_shape: tuple[int, int], max_shift: int = 1, p: float = 0.5):
        if len(image_shape) != 2 or not all(isinstance(n, numbers.Integral) and n > 0 for n in image_shape):
            raise ValueError(f"RandomShift image_shape must be (height, width) of positive ints, got {image_shape!r}")
        if not isinstance(max_shift, numbers.Integral) or not 0 <= max_shift < min(image_shape):
            raise ValueError(f"RandomShift max_shift must be an int in [0, {min(image_shape)}), got {max_shift!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomShift p must be a probability in [0, 1], got {p!r}")
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.max_shift = int(max_shift)
        self.p = float(p)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 2) int offsets (rows, columns), zero for the images left as they are."""
        offsets = rng.integers(-self.max_shift, self.max_shift + 1, size=(n, 2))
        offsets[rng.random(n) >= self.p] = 0
        return offsets

    def apply(self, x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """The rows of `x` (n, height * width) moved by `offsets` (n, 2), as a new array."""
        h, w = self.image_shape
        if x.ndim != 2 or x.shape[1] != h * w or len(offsets) != len(x):
            raise ValueError(
                f"RandomShift.apply: expected x of shape (n, {h * w}) and offsets (n, 2), "
                f"got {x.shape} and {np.shape(offsets)}"
            )
        m = self.max_shift
        padded = np.zeros((len(x), h + 2 * m, w + 2 * m), x.dtype)
        padded[:, m : m + h, m : m + w] = x.reshape(-1, h, w)
        rows = (m - offsets[:, 0])[:, None] + np.arange(h)  # out[i, r, c] = x[i, r - dy, c - dx]
        cols = (m - offsets[:, 1])[:, None] + np.arange(w)
        out = padded[np.arange(len(x))[:, None, None], rows[:, :, None], cols[:, None, :]]
        return out.reshape(len(x), h * w)


class DataLoader:
    """Iterates a dataset in batches (x float32, y int64) of xpgrad Tensors on `device`.

    With shuffle, each epoch draws a fresh permutation from numpy.random.default_rng(seed), so a
    given seed gives the same order for each epoch number. An ArrayDataset is batched by indexing
    its arrays; any other Dataset sample by sample.

    `augment` (a RandomShift) moves the images of every batch, with offsets drawn from the
    loader's own generator (so a checkpoint of it resumes the same draws).

    With ``shard=(rank, world_size)`` (data-parallel training) `batch_size` is the global batch:
    every rank draws the same order (same seed), global batch i holds the samples of batch i of an
    unsharded loader, and this rank yields its contiguous part of it (`shard_bounds`: a short last
    batch is split as evenly as possible, so a part can be empty). Every rank has len(loader) steps.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 64,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        device: str | None = None,
        shard: tuple[int, int] | None = None,
        augment: RandomShift | None = None,
    ):
        is_int = isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool)
        if not is_int or batch_size < 1:
            raise ValueError(f"DataLoader batch_size must be a positive int, got {batch_size!r}")
        if shard is not None and not _is_shard(shard):
            raise ValueError(f"DataLoader shard must be (rank, world_size) with 0 <= rank < world_size, got {shard!r}")
        self.shard = None if shard is None else (int(shard[0]), int(shard[1]))
        self.augment = augment
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = device
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        import xpgrad as xg

        n = len(self.dataset)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            offsets = self.augment.draw(len(index), self._rng) if self.augment is not None else None
            if self.shard is not None:
                low, high = shard_bounds(len(index), *self.shard)
                index = index[low:high]
                offsets = offsets[low:high] if offsets is not None else None
            x, y = self._batch(index)
            if offsets is not None:
                x = self.augment.apply(x, offsets)
            yield xg.tensor(x, device=self.device), xg.tensor(y, device=self.device)

    def _batch(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fresh (x, y) arrays of the samples at `index`."""
        if isinstance(self.dataset, ArrayDataset):
            return self.dataset.x[index], self.dataset.y[index]
        samples = [self.dataset[int(i)] for i in index]
        x = np.stack([s[0] for s in samples]).astype(np.float32, copy=False)
        y = np.asarray([s[1] for s in samples], dtype=np.int64)
        return x, y


def shard_bounds(batch: int, rank: int, world_size: int) -> tuple[int, int]:
    """[low, high) of rank `rank`'s contiguous part of a batch of `batch` samples split over
    `world_size` ranks as evenly as possible (the first batch % world_size ranks take one more)."""
    base, extra = divmod(batch, world_size)
    low = rank * base + min(rank, extra)
    return low, low + base + (rank < extra)


def _is_shard(shard) -> bool:
    if not isinstance(shard, (tuple, list)) or len(shard) != 2:
        return False
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shard):
        return False
    return 0 <= shard[0] < shard[1]


@dataclass(frozen=True)
class Splits:
    """The train, validation and test splits of one dataset."""

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def num_features(self) -> int:
        return self.train.num_features


def load_dataset(name: str, data_dir=None, *, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """Load dataset `name` (one of DATASET_NAMES) split into train, val and test.

    mnist and fashion-mnist read the four standard IDX files (plain or .gz) from `data_dir` and
    keep their own test set. digits and spiral hold out TEST_FRACTION of each class as the test
    set. Then val_fraction of each class of the training set becomes the validation set. `seed`
    chooses the spiral noise and every held-out sample: the same seed gives the same splits.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in DATASET_NAMES:
        raise UnknownDatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    if key in ("mnist", "fashion-mnist"):
        train, test = _load_idx_folder(key, data_dir)
    else:
        full = _digits() if key == "digits" else ArrayDataset(*spiral(seed=rng))
        train, test = _split(full, TEST_FRACTION, rng)
    train, val = _split(train, val_fraction, rng)
    return Splits(key, train, val, test)


def spiral(n_per_class: int = 100, num_classes: int = 3, noise: float = 0.2, seed=0):
    """The cs231n toy spiral: (x float32 (n_per_class * num_classes, 2), y int64) arrays.

    Class j is an arm with radius 0 to 1 and angle 4j to 4(j+1) plus Gaussian noise of std
    `noise`; `seed` is anything numpy.random.default_rng accepts.
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(num_classes), n_per_class)
    along = np.tile(np.linspace(0.0, 1.0, n_per_class), num_classes)
    theta = 4.0 * (y + along) + noise * rng.standard_normal(len(y))
    x = np.stack([along * np.sin(theta), along * np.cos(theta)], axis=1)
    return x.astype(np.float32), y


def read_idx(path) -> np.ndarray:
    """Read an IDX file (plain or gzip, told apart by its first bytes) into a native-order array."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DatasetNotFoundError(f"IDX file {path} does not exist")
    raw = path.read_bytes()
    compressed = raw[:2] == b"\x1f\x8b"
    if compressed:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DatasetFormatError(f"{path}: corrupt gzip data ({err})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES or raw[3] < 1:
        raise DatasetFormatError(
            f"{path}: not an IDX file: starts with {raw[:4].hex(' ') or 'nothing'}; expected "
            f"00 00, a type code ({_IDX_CODES}) and the number of dimensions (>= 1)"
        )
    dtype, type_name = _IDX_TYPES[raw[2]]
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DatasetFormatError(
            f"{path}: truncated IDX header: {ndim} dimensions need {offset} bytes, found {len(raw)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = offset + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated IDX file" if len(raw) < expected else "IDX file has trailing bytes"
        raise DatasetFormatError(
            f"{path}: {problem}: header gives shape {shape} of {type_name}, so {expected} bytes "
            f"are expected, found {len(raw)}" + (" after decompression" if compressed else "")
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset)
    return data.astype(dtype.newbyteorder("=")).reshape(shape)


def _split(data: ArrayDataset, fraction: float, rng: np.random.Generator):
    """(kept, held_out): `fraction` of each class, drawn by `rng`, held out; order is kept."""
    by_class = [rng.permutation(np.flatnonzero(data.y == c)) for c in np.unique(data.y)]
    held = np.sort(
        np.concatenate([np.empty(0, dtype=np.intp)] + [idx[: round(fraction * len(idx))] for idx in by_class])
    )
    kept = np.setdiff1d(np.arange(len(data)), held, assume_unique=True)
    return data.subset(kept), data.subset(held)


def _digits() -> ArrayDataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("dataset 'digits' needs scikit-learn: pip install 'xpgrad[train]'") from err
    digits = load_digits()
    return ArrayDataset(digits.data / 16.0, digits.target, num_classes=10)


def _load_idx_folder(name: str, data_dir) -> tuple[ArrayDataset, ArrayDataset]:
    """The (train, test) sets of an MNIST-style folder."""
    accepted = ", ".join(f"{f}[.gz]" for f in _MNIST_FILES.values())
    if data_dir is None:
        raise DatasetNotFoundError(
            f"dataset {name!r} is read from IDX files: give data_dir (--data-dir), a folder holding {accepted}"
        )
    folder = Path(data_dir).expanduser().resolve()
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"data folder {folder} for dataset {name!r} does not exist or is not a folder; it should hold {accepted}"
        )
    files = {key: _find_file(folder, stem, name) for key, stem in _MNIST_FILES.items()}
    return tuple(_idx_pair(files[f"{part}_images"], files[f"{part}_labels"]) for part in ("train", "test"))


def _find_file(folder: Path, stem: str, name: str) -> Path:
    """folder/stem, else folder/stem.gz."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    raise DatasetNotFoundError(f"dataset {name!r}: expected {folder / stem} or {folder / stem}.gz; neither exists")


def _idx_pair(images_path: Path, labels_path: Path) -> ArrayDataset:
    """Images scaled to [0, 1] and flattened, with their labels."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetFormatError(
            f"{images_path}: expected ubyte images of shape (count, rows, cols), "
            f"found {images.dtype} of shape {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetFormatError(
            f"{labels_path}: expected integer labels of shape (count,), found {labels.dtype} of shape {labels.shape}"
        )
    if len(images) != len(labels):
        raise DatasetFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if labels.size and not 0 <= labels.min() <= labels.max() < _MNIST_CLASSES:
        raise DatasetFormatError(
            f"{labels_path}: labels must be 0 to {_MNIST_CLASSES - 1}, found {labels.min()} to {labels.max()}"
        )
    x = images.reshape(len(images), -1).astype(np.float32)
    x /= 255.0
    return ArrayDataset(x, labels, num_classes=_MNIST_CLASSES)
