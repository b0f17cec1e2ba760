"""Argument types shared by the `xpgrad` commands: each parses one flag's text or raises ArgumentTypeError."""

from __future__ import annotations

import argparse


def hidden(text: str) -> list[int]:
    if text.strip().lower() in ("", "none"):
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer sizes such as 100,100 (or 'none'), got {text!r}"
        )
    return sizes


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def float_arg(accept, expected: str):
    """An argparse type: a float for which `accept(value)` holds, else an error naming `expected`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


dropout = float_arg(lambda v: 0 <= v < 1, "a probability in [0, 1)")
positive_float = float_arg(lambda v: 0 < v < float("inf"), "a positive number")
momentum = float_arg(lambda v: 0 <= v < 1, "a number in [0, 1)")


def size_list(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive sizes such as 1000,100000, got {text!r}")
    return sizes


def dataset_name(text: str) -> str:
    from ..data import DATASET_NAMES

    key = text.strip().lower().replace("_", "-")
    if key not in DATASET_NAMES:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r} (choose from {', '.join(DATASET_NAMES)})")
    return key


def activation_name(text: str) -> str:
    from ..nn import ACTIVATIONS, normalize_activation

    try:
        return normalize_activation(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown activation {text!r} (choose from {', '.join(ACTIVATIONS)})"
        ) from None
