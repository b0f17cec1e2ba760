"""Checkpoints: one .npz archive with the parameters, the optimizer state and a JSON header.

Layout (every entry a plain array, so loading works with ``allow_pickle=False``):

- ``__xpgrad__``: a 0-d string array holding JSON: ``{"format": "xpgrad-checkpoint", "version": 1,
  "model": <Module.config()>, "optimizer": {"type", "hyper", "steps"} or null, "extra": {...}}``
- ``param/<dotted name>``: each parameter as a host NumPy array
- ``optim/<index>.<buffer>``: each optimizer state buffer (SGD velocity, Adam m and v)

Saving is atomic: the archive is written to a temporary file in the target's folder, flushed and
fsynced, then renamed over the target with `os.replace`, so an interrupted or failed save leaves
the previous checkpoint as it was.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import XpgradError

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
    model_config: dict | None
    params: dict[str, np.ndarray]
    optimizer: dict | None  # an Optimizer.state_dict() (buffers as NumPy arrays) or None
    extra: dict = field(default_factory=dict)

    def build_model(self, device=None):
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


def atomic_write(path, write, mode: str = "wb") -> Path:
    """Call `write(fileobj)` on a temporary file beside `path`, fsync it, then rename it onto `path`.

    On any failure (including KeyboardInterrupt) the temporary file is removed and `path` is left
    as it was.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path, model, optimizer=None, *, extra: dict | None = None) -> Path:
    """Write `model`'s parameters, `optimizer`'s state and `extra` (JSON-able) to `path` atomically."""
    header = {"format": FORMAT, "version": VERSION, "model": model.config(), "optimizer": None,
              "extra": extra or {}}
    arrays = {PARAM_PREFIX + name: value for name, value in model.state_dict().items()}
    if optimizer is not None:
        state = optimizer.state_dict()
        header["optimizer"] = {k: v for k, v in state.items() if k != "buffers"}
        arrays.update({OPTIM_PREFIX + key: value for key, value in state["buffers"].items()})
    try:
        text = json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"save_checkpoint: the header is not JSON-serialisable: {err}") from None
    arrays[HEADER_KEY] = np.array(text)
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path) -> Checkpoint:
    """Read and check a checkpoint written by `save_checkpoint` (with allow_pickle=False).

    Raises CheckpointNotFoundError for a missing file and CheckpointError for a file that is
    truncated or corrupt, is not an xpgrad checkpoint, or comes from a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointNotFoundError(f"checkpoint {path} {what}")
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
    header = _parse_header(path, arrays.pop(HEADER_KEY))
    params = {k[len(PARAM_PREFIX):]: v for k, v in arrays.items() if k.startswith(PARAM_PREFIX)}
    buffers = {k[len(OPTIM_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPTIM_PREFIX)}
    optimizer = header.get("optimizer")
    if optimizer is not None:
        optimizer = {**optimizer, "buffers": buffers}
    return Checkpoint(path, header.get("model"), params, optimizer, header.get("extra") or {})


def _parse_header(path: Path, raw: np.ndarray) -> dict:
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise CheckpointError(f"{path} is not an xpgrad checkpoint: {HEADER_KEY!r} is not a JSON string")
    try:
        header = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint {path} is corrupt: its header is not valid JSON ({err})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an xpgrad checkpoint: its header has no format {FORMAT!r}")
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this xpgrad reads versions up to {VERSION}"
        )
    return header


def restore_model(model, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's parameters into `model`; CheckpointError when the architecture differs."""
    from .nn import StateDictError

    saved, own = checkpoint.model_config, model.config()
    if saved is not None and own is not None and _architecture(saved) != _architecture(own):
        raise CheckpointError(
            f"checkpoint {checkpoint.path} was saved from a different architecture: "
            f"{_describe(saved)} in the checkpoint, {_describe(own)} in the model"
        )
    try:
        model.load_state_dict(checkpoint.params)
    except StateDictError as err:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} does not fit the model (different architecture): {err}"
        ) from None


def restore_optimizer(optimizer, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's optimizer state; CheckpointError when it has none or it does not fit."""
    from .optim import OptimizerStateError

    if checkpoint.optimizer is None:
        raise CheckpointError(f"checkpoint {checkpoint.path} holds no optimizer state")
    try:
        optimizer.load_state_dict(checkpoint.optimizer)
    except OptimizerStateError as err:
        raise CheckpointError(f"checkpoint {checkpoint.path}: optimizer state does not fit: {err}") from None


def _architecture(config: dict) -> dict:
    """The parts of a model config that decide parameter shapes and the forward computation."""
    return {k: v for k, v in config.items() if k not in ("init", "dropout")}


def _describe(config: dict) -> str:
    if config.get("type") == "MLP":
        return (f"MLP sizes {'-'.join(str(s) for s in config.get('sizes', []))}, "
                f"activation {config.get('activation')}, dropout {config.get('dropout')}")
    return json.dumps(config, sort_keys=True)


__all__ = [
    "Checkpoint", "CheckpointError", "CheckpointNotFoundError", "atomic_write", "load_checkpoint",
    "restore_model", "restore_optimizer", "save_checkpoint",
]
