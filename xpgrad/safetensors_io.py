"""Reading and writing .safetensors files (the `safetensors` package's NumPy API), atomically and with errors
that name the tensor at fault.

A .safetensors file is an 8-byte little-endian header length, a JSON header (each tensor's dtype,
shape and byte range, plus an optional ``__metadata__`` dict of strings) and the raw tensor bytes;
nothing in it is executable, so loading one cannot run code (unlike a pickle).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import XpgradError
from .files import atomic_write

SUFFIX = ".safetensors"


class SafetensorsFileError(XpgradError, ValueError):
    """A .safetensors file is truncated or corrupt, or an array cannot be stored in one."""


class SafetensorsFileNotFoundError(SafetensorsFileError, FileNotFoundError):
    """The .safetensors file does not exist."""


def write_safetensors(
    path: str | os.PathLike[str], arrays: Mapping[str, object], metadata: dict[str, str] | None = None
) -> Path:
    """Write NumPy `arrays` (by name) and string `metadata` to `path` atomically; returns the path."""
    from safetensors import SafetensorError
    from safetensors.numpy import save

    contiguous = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind not in "biuf":
            raise SafetensorsFileError(
                f"write_safetensors: tensor {name!r} has dtype {value.dtype}; a .safetensors file holds numbers only"
            )
        contiguous[name] = np.ascontiguousarray(value)
    try:
        data = save(contiguous, metadata=metadata)
    except SafetensorError as err:
        raise SafetensorsFileError(f"write_safetensors {path}: {err}") from None
    return atomic_write(path, lambda f: f.write(data))


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays (by name, in file order) and the string metadata of the .safetensors file `path`.

    Raises SafetensorsFileError naming the first tensor whose bytes are missing when the file is
    truncated, and saying what is wrong when it is not a .safetensors file at all.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise SafetensorsFileNotFoundError(f"{path} {'is a folder, not a file' if path.is_dir() else 'does not exist'}")
    _check_layout(path)
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = dict(f.metadata() or {})
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except SafetensorError as err:
        raise SafetensorsFileError(f"{path} is not a readable .safetensors file: {err}") from None
    return arrays, metadata


def _check_layout(path: Path) -> None:
    """Check the header against the file's size, so a truncated file names the first tensor cut off."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsFileError(
                f"{path} is not a .safetensors file: it holds {size} bytes, fewer than the 8 of the header length"
            )
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise SafetensorsFileError(
                f"{path} is truncated or not a .safetensors file: its header length says {header_len} bytes "
                f"but only {size - 8} follow"
            )
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SafetensorsFileError(f"{path} is not a .safetensors file: its header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise SafetensorsFileError(f"{path} is not a .safetensors file: its header is not a JSON object")
    data_size = size - 8 - header_len
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise SafetensorsFileError(f"{path} is corrupt: tensor {name!r} has no valid data_offsets in the header")
        if offsets[1] > data_size:
            raise SafetensorsFileError(
                f"{path} is truncated: tensor {name!r} (shape {tuple(info.get('shape', ()))}, {info.get('dtype')}) "
                f"needs bytes {offsets[0]}..{offsets[1]} of the data, but the file holds only {data_size}"
            )
