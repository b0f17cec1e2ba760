"""What every `xpgrad` command shares: exit statuses, the usage error, messages and path checks."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROG = "xpgrad"
EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
EVAL_BATCH_SIZE = 1024


class UsageError(Exception):
    """A bad command line (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(message)


def add_backend(p) -> None:
    p.add_argument("--backend", help="numpy, cupy, auto or an array-API module (overrides XPGRAD_BACKEND)")


def message_of(err: BaseException) -> str:
    text = str(err)
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    if isinstance(err, ImportError) and not isinstance(err, ModuleNotFoundError) and not text:
        text = repr(err)
    return text or type(err).__name__


def fail(message: str, code: int) -> int:
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr, flush=True)
    return code


def say(text: str, quiet: bool = False) -> None:
    if not quiet:
        print(text, flush=True)


def check_output_path(flag: str, path: str) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file path")
    folder = p.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: folder {folder} is not writable")
    return p


def resolve_data_dir(given, dataset: str, saved: dict):
    """--data-dir as an absolute path, else the checkpoint's folder when it holds the same dataset."""
    if given:
        return str(Path(given).expanduser().resolve())
    return saved.get("data_dir") if saved.get("dataset") == dataset else None
