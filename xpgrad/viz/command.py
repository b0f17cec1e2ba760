"""The `xpgrad graph` subcommand: draws one of the notes' examples from the command line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .drawing import render, to_dot
from .examples import EXAMPLES, example


def add_graph_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `graph` subcommand to an argparse subparsers object; its handler is `run_graph`.

    Sets ``func=run_graph`` as the parser default, so ``args.func(args)`` dispatches it.
    """
    p: argparse.ArgumentParser = subparsers.add_parser(
        "graph",
        help="draw a computational graph with values and gradients (cs231n style)",
        description="Draw one of the notes' examples as a circuit diagram: forward values above each wire, "
        "gradients below. Needs Graphviz (`apt-get install graphviz`) except for .dot/.gv output.",
    )
    p.add_argument(
        "--example",
        choices=list(EXAMPLES),
        default="sigmoid-circuit",
        help="which graph to draw (default: sigmoid-circuit)",
    )
    p.add_argument(
        "--out",
        default="graph.svg",
        help="output file; the suffix picks the format (.svg, .png, .pdf, .dot); '-' prints DOT",
    )
    p.add_argument("--no-grads", action="store_true", help="draw forward values only")
    p.add_argument(
        "--collapse",
        choices=["auto", "yes", "no"],
        default=None,
        help="fold MLP layers into one box (default: the example's own choice)",
    )
    p.add_argument(
        "--labels",
        choices=["symbols", "names"],
        default="symbols",
        help="gate labels: cs231n symbols (*, +1, 1/x) or op names (mul, add)",
    )
    p.set_defaults(func=run_graph)
    return p


def run_graph(args: argparse.Namespace) -> int:
    """Handle `xpgrad graph`: draw `args.example` into `args.out`. Returns the exit status."""
    name = getattr(args, "example", "sigmoid-circuit")
    out_path = getattr(args, "out", "graph.svg")
    options: dict[str, Any] = dict(EXAMPLES[name][1]) if name in EXAMPLES else {}
    collapse = getattr(args, "collapse", None)
    if collapse is not None:
        options["collapse"] = {"auto": None, "yes": True, "no": False}[collapse]
    options["show_grads"] = not getattr(args, "no_grads", False)
    options["labels"] = getattr(args, "labels", "symbols")
    source = to_dot(example(name), **options)
    if out_path == "-":
        sys.stdout.write(source)
        return 0
    written = render(source, out_path)  # errors reach the CLI, which prints one `xpgrad: error:` line
    print(f"wrote {os.fspath(written)}")
    return 0
