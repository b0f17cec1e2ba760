"""Checkpoints: the parameters, the optimizer state and a JSON header in one file, .npz or .safetensors.

The suffix picks the format (`save_checkpoint`, `load_checkpoint`); neither is ever read with pickle.

.npz layout (every entry a plain array, so loading works with ``allow_pickle=False``):

- ``__xpgrad__``: a 0-d string array holding JSON: ``{"format": "xpgrad-checkpoint", "version": 1,
  "model": <Module.config()>, "optimizer": {"type", "hyper", "steps"} or null, "extra": {...}}``
- ``param/<dotted name>``: each parameter as a host NumPy array
- ``optim/<index>.<buffer>``: each optimizer state buffer (SGD velocity, Adam m and v)

.safetensors layout: the same ``param/...`` and ``optim/...`` tensors; the header's fields
(``format``, ``version``, ``model``, ``optimizer``, ``extra`` with the epoch) are the file's
metadata, each a JSON string (safetensors metadata maps strings to strings).

Saving is atomic: the file is written to a temporary file in the target's folder, flushed and
fsynced, then renamed over the target with `os.replace`, so an interrupted or failed save leaves
the previous checkpoint as it was.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import XpgradError
from .files import atomic_write
from .safetensors_io import SUFFIX as SAFETENSORS_SUFFIX
from .safetensors_io import SafetensorsFileError, read_safetensors, write_safetensors

if TYPE_CHECKING:
    from .nn import Module
    from .optim import Optimizer

JSONDict = dict[str, Any]  # a JSON object: the header and its fields
PathLike = str | os.PathLike[str]

FORMAT = "xpgrad-checkpoint"
VERSION = 1
HEADER_KEY = "__xpgrad__"
PARAM_PREFIX = "param/"
OPTIM_PREFIX = "optim/"


class CheckpointError(XpgradError, ValueError):
    """A checkpoint cannot be read, or does not fit the model or optimizer it is loaded into."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` read: the header fields and host arrays."""

    path: Path
    model_config: JSONDict | None
    params: dict[str, np.ndarray]
    optimizer: JSONDict | None  # an Optimizer.state_dict() (buffers as NumPy arrays) or None
    extra: JSONDict = field(default_factory=dict)

    def build_model(self, device: object = None) -> Module:
        """A new model from the saved configuration, with the saved parameters loaded."""
        from . import nn

        if self.model_config is None:
            raise CheckpointError(
                f"checkpoint {self.path} holds no model configuration; build the model yourself and call "
                f"restore_model(model, checkpoint)"
            )
        try:
            model = nn.from_config(self.model_config, device=device)
        except (ValueError, TypeError, KeyError) as err:
            raise CheckpointError(f"checkpoint {self.path}: its model configuration is invalid: {err}") from None
        restore_model(model, self)
        return model


def is_safetensors(path: PathLike) -> bool:
    """Whether `path` names a .safetensors checkpoint (else it is an .npz archive)."""
    return Path(path).suffix.lower() == SAFETENSORS_SUFFIX


def save_checkpoint(
    path: PathLike, model: Module, optimizer: Optimizer | None = None, *, extra: JSONDict | None = None
) -> Path:
    """Write `model`'s parameters, `optimizer`'s state and `extra` (JSON-able) to `path` atomically.

    The suffix picks the format: ``.safetensors`` (the header's fields as JSON strings in the
    file's metadata), anything else an .npz archive.
    """
    header = {"format": FORMAT, "version": VERSION, "model": model.config(), "optimizer": None, "extra": extra or {}}
    arrays = {PARAM_PREFIX + name: value for name, value in model.state_dict().items()}
    if optimizer is not None:
        state = optimizer.state_dict()
        header["optimizer"] = {k: v for k, v in state.items() if k != "buffers"}
        arrays.update({OPTIM_PREFIX + key: value for key, value in state["buffers"].items()})
    try:
        fields = {key: json.dumps(value, allow_nan=False) for key, value in header.items()}
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"save_checkpoint: the header is not JSON-serialisable: {err}") from None
    if is_safetensors(path):
        try:
            return write_safetensors(path, arrays, metadata=fields)
        except SafetensorsFileError as err:
            raise CheckpointError(f"save_checkpoint: {err}") from None
    arrays[HEADER_KEY] = np.array(json.dumps(header, allow_nan=False))
    # the keys are param/..., optim/... and the header: none is savez's own allow_pickle flag, which mypy fears
    return atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def load_checkpoint(path: PathLike) -> Checkpoint:
    """Read and check a checkpoint written by `save_checkpoint` (.npz with allow_pickle=False, or .safetensors).

    Raises CheckpointNotFoundError for a missing file and CheckpointError for a file that is
    truncated or corrupt (naming the first tensor cut off, for .safetensors), is not an xpgrad
    checkpoint, or comes from a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointNotFoundError(f"checkpoint {path} {what}")
    arrays, header = _read_safetensors(path) if is_safetensors(path) else _read_npz(path)
    params = {k[len(PARAM_PREFIX) :]: v for k, v in arrays.items() if k.startswith(PARAM_PREFIX)}
    buffers = {k[len(OPTIM_PREFIX) :]: v for k, v in arrays.items() if k.startswith(OPTIM_PREFIX)}
    optimizer = header.get("optimizer")
    if optimizer is not None:
        optimizer = {**optimizer, "buffers": buffers}
    return Checkpoint(path, header.get("model"), params, optimizer, header.get("extra") or {})


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], JSONDict]:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK":
        raise CheckpointError(
            f"{path} is not an xpgrad checkpoint: it is not an .npz (zip) archive "
            f"(starts with {magic.hex(' ') or 'nothing, the file is empty'})"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if HEADER_KEY not in names:
                raise CheckpointError(
                    f"{path} is not an xpgrad checkpoint: the .npz archive has no {HEADER_KEY!r} entry "
                    f"(it holds {', '.join(names[:5]) or 'nothing'}{' ...' if len(names) > 5 else ''})"
                )
            arrays = {name: archive[name] for name in names}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zlib.error) as err:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {err}") from None
    raw = arrays.pop(HEADER_KEY)
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise CheckpointError(f"{path} is not an xpgrad checkpoint: {HEADER_KEY!r} is not a JSON string")
    try:
        header = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint {path} is corrupt: its header is not valid JSON ({err})") from None
    return arrays, _checked_header(path, header)


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], JSONDict]:
    try:
        arrays, metadata = read_safetensors(path)
    except SafetensorsFileError as err:
        raise CheckpointError(f"checkpoint {err}") from None
    if "format" not in metadata:
        raise CheckpointError(
            f"{path} is not an xpgrad checkpoint: its metadata has no 'format' field (it holds "
            f"{len(arrays)} tensors; a file of weights alone, e.g. from PyTorch, loads with "
            f"xg.nn.MLP.from_torch_state_dict(path))"
        )
    header = {}
    for key, text in metadata.items():
        try:
            header[key] = json.loads(text)
        except json.JSONDecodeError as err:
            raise CheckpointError(f"checkpoint {path} is corrupt: metadata field {key!r} is not JSON ({err})") from None
    return arrays, _checked_header(path, header)


def _checked_header(path: Path, header: object) -> JSONDict:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an xpgrad checkpoint: its header has no format {FORMAT!r}")
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this xpgrad reads versions up to {VERSION}"
        )
    return header


def restore_model(model: Module, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's parameters into `model`; CheckpointError when the architecture differs."""
    from .nn import StateDictError

    saved, own = checkpoint.model_config, model.config()
    if saved is not None and own is not None and _architecture(saved) != _architecture(own):
        raise CheckpointError(
            f"checkpoint {checkpoint.path} was saved from a different architecture: "
            f"{_describe(saved)} in the checkpoint, {_describe(own)} in the model"
            f"{_first_difference(checkpoint.params, model.state_dict())}"
        )
    try:
        model.load_state_dict(checkpoint.params)
    except StateDictError as err:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} does not fit the model (different architecture): {err}"
        ) from None


def restore_optimizer(optimizer: Optimizer, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's optimizer state; CheckpointError when it has none or it does not fit."""
    from .optim import OptimizerStateError

    if checkpoint.optimizer is None:
        raise CheckpointError(f"checkpoint {checkpoint.path} holds no optimizer state")
    try:
        optimizer.load_state_dict(checkpoint.optimizer)
    except OptimizerStateError as err:
        raise CheckpointError(f"checkpoint {checkpoint.path}: optimizer state does not fit: {err}") from None


def _first_difference(saved: dict[str, np.ndarray], own: dict[str, np.ndarray]) -> str:
    """'; tensor NAME is ... in the checkpoint but ... in the model' for the first tensor that differs, else ''."""
    for name in [*own, *(n for n in saved if n not in own)]:
        if name not in saved:
            return f"; tensor {name!r} of the model is not in the checkpoint"
        if name not in own:
            return f"; tensor {name!r} of the checkpoint is not in the model"
        if saved[name].shape != own[name].shape:
            return (
                f"; tensor {name!r} has shape {saved[name].shape} in the checkpoint but {own[name].shape} in the model"
            )
    return ""


def _architecture(config: JSONDict) -> JSONDict:
    """The parts of a model config that decide parameter shapes and the forward computation."""
    return {k: v for k, v in config.items() if k not in ("init", "dropout")}


def _describe(config: JSONDict) -> str:
    if config.get("type") == "MLP":
        return (
            f"MLP sizes {'-'.join(str(s) for s in config.get('sizes', []))}, "
            f"activation {config.get('activation')}, dropout {config.get('dropout')}"
        )
    return json.dumps(config, sort_keys=True)


__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointNotFoundError",
    "atomic_write",
    "is_safetensors",
    "load_checkpoint",
    "restore_model",
    "restore_optimizer",
    "save_checkpoint",
]
