"""The `xpgrad` command: train, eval, info, bench and graph.

    xpgrad train                                  # MLP on scikit-learn's digits, prints test accuracy
    xpgrad train --dataset mnist --data-dir ~/mnist --hidden 100,100 --save mnist.npz --plot curves.png
    xpgrad eval --load mnist.npz --data-dir ~/mnist
    xpgrad info

Every error prints one line starting with ``xpgrad: error:`` to stderr and exits non-zero:
2 for a bad command line, 1 for a failure while running, 130 when interrupted.

Each command lives in its own module (`train`, `evaluate`, `info`, `bench`) with `add_parser(subparsers)`
and `run(args)`; the argument types they share are in `arguments`, the rest in `common`.
``xpgrad graph``: `xpgrad.viz.add_graph_subcommand(subparsers)` registers its parser and handler.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from . import bench, evaluate, info, train
from .common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, PROG, Parser, UsageError, fail, message_of

COMMANDS = (train, evaluate, info, bench)
GRAPH_MODULE = "xpgrad.viz"  # add_graph_subcommand(subparsers) registers `xpgrad graph`
USAGE_ABORT_GRACE = 2.0  # seconds a rank > 0 waits for rank 0 to report a command-line error


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="xpgrad: a small define-by-run autodiff engine; train and inspect MLPs.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    importlib.import_module(GRAPH_MODULE).add_graph_subcommand(sub)
    return parser


def main(argv=None) -> int:
    """Run the `xpgrad` command line; returns the exit status (never raises SystemExit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except UsageError as err:
        return fail(str(err), EXIT_USAGE)
    except SystemExit as exit_:  # --help / --version
        return exit_.code if isinstance(exit_.code, int) else 0
    if args.command is None:
        return fail("missing command: choose one of train, eval, info, bench, graph (see xpgrad --help)", EXIT_USAGE)
    import contextlib

    from ..backend import use_backend
    from ..errors import XpgradError

    try:
        # --backend overrides XPGRAD_BACKEND for this command only (restored afterwards)
        with use_backend(args.backend) if getattr(args, "backend", None) else contextlib.nullcontext():
            return args.func(args)
    except UsageError as err:
        return _failed(str(err), EXIT_USAGE)
    except KeyboardInterrupt:
        return _failed("interrupted", EXIT_INTERRUPTED)
    except (XpgradError, OSError, ValueError, ImportError) as err:
        return _failed(message_of(err), EXIT_FAILURE)


def _failed(message: str, code: int) -> int:
    """Report a failure; in a data-parallel run (`mpiexec -n K`) also end every rank, since the
    others would otherwise wait for this one in their next collective."""
    from ..distributed import abort, get_rank, get_world_size

    if get_world_size() == 1:
        return fail(message, code)
    if code != EXIT_USAGE:
        fail(f"rank {get_rank()}: {message}", code)
    elif get_rank() == 0:  # every rank has the same command line: one message is enough
        fail(message, code)
    else:
        time.sleep(USAGE_ABORT_GRACE)  # let rank 0 print before an abort of ours could kill it
    abort(code)
    return code
