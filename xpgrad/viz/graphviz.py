"""Running the Graphviz `dot` program, and the errors it gives when it is missing or fails."""

from __future__ import annotations

import shutil
import subprocess

from ..errors import XpgradError

INSTALL_HINT = (
    "install Graphviz: Debian/Ubuntu `apt-get install graphviz` (package `graphviz`), "
    "Fedora `dnf install graphviz`, macOS `brew install graphviz`, conda `conda install graphviz`"
)


class GraphvizError(XpgradError, RuntimeError):
    """The Graphviz `dot` program failed to render a graph."""


class GraphvizNotFoundError(GraphvizError):
    """The Graphviz `dot` program is not installed (or not on PATH)."""


FORMATS = ("svg", "png", "pdf", "jpg", "jpeg", "gif", "ps", "eps", "json", "plain")


def find_dot() -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizNotFoundError(
            "render: the Graphviz `dot` program was not found on PATH, so the graph cannot be drawn as an image; "
            f"{INSTALL_HINT}. Without it, xg.viz.to_dot(output) still returns the DOT source "
            "(and render() to a .dot/.gv file needs no Graphviz)."
        )
    return dot


def run_dot(source: str, fmt: str) -> bytes:
    """What ``dot -T<fmt>`` prints for the DOT `source`: the image's bytes.

    Raises GraphvizNotFoundError when `dot` is missing and GraphvizError when it fails.
    """
    dot = find_dot()
    try:
        proc = subprocess.run([dot, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GraphvizError(f"render: could not run Graphviz `{dot}`: {exc}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise GraphvizError(f"render: Graphviz `dot -T{fmt}` failed (exit {proc.returncode}): {err}")
    return proc.stdout
