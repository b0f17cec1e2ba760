"""The `xpgrad` command: train, eval, info, bench and graph.

    xpgrad train                                  # MLP on scikit-learn's digits, prints test accuracy
    xpgrad train --dataset mnist --data-dir ~/mnist --hidden 100,100 --save mnist.npz --plot curves.png
    xpgrad eval --load mnist.npz --data-dir ~/mnist
    xpgrad info

Every error prints one line starting with ``xpgrad: error:`` to stderr and exits non-zero:
2 for a bad command line, 1 for a failure while running, 130 when interrupted.

Commands implemented in other modules:
- ``xpgrad bench <target> [--sizes N,M] [--json PATH] [--threads N]`` calls the function named
  in BENCH_TARGETS (imported only when used) as ``fn(sizes=, json_path=, threads=)``; an int
  result is the exit status (anything else means 0).
- ``xpgrad graph``: `xpgrad.viz.add_graph_subcommand(subparsers)` registers its parser and handler.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from pathlib import Path

PROG = "xpgrad"
EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

DEFAULTS = {
    "dataset": "digits",
    "hidden": [256],
    "activation": "relu",
    "dropout": 0.2,
    "loss": "softmax-ce",
    "optimizer": "adam",
    "epochs": 60,
    "batch_size": 32,
    "seed": 0,
}
DEFAULT_LR = {"adam": 2e-3, "sgd": 0.05}
DEFAULT_MOMENTUM = 0.9
EVAL_BATCH_SIZE = 1024

# `xpgrad bench <target>`: (module, function, help); the function is called as
# fn(sizes=list[int] | None, json_path=str | None, threads=int | None) and may return an exit status
BENCH_TARGETS = {
    "kernels": ("xpgrad.bench_kernels", "run", "Numba kernels against NumPy"),
    "mlp": ("xpgrad.bench_mlp", "cli_mlp", "MLP training steps: xpgrad against hand-written NumPy"),
    "overhead": ("xpgrad.bench_mlp", "cli_overhead", "per-op overhead of the engine"),
}
GRAPH_MODULE = "xpgrad.viz"  # add_graph_subcommand(subparsers) registers `xpgrad graph`


class UsageError(Exception):
    """A bad command line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(message)


# ---- argument types --------------------------------------------------------------------------


def _hidden(text: str) -> list[int]:
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _float_arg(accept, expected: str):
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


_dropout = _float_arg(lambda v: 0 <= v < 1, "a probability in [0, 1)")
_positive_float = _float_arg(lambda v: 0 < v < float("inf"), "a positive number")
_momentum = _float_arg(lambda v: 0 <= v < 1, "a number in [0, 1)")


def _size_list(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive sizes such as 1000,100000, got {text!r}")
    return sizes


def _dataset_name(text: str) -> str:
    from .data import DATASET_NAMES

    key = text.strip().lower().replace("_", "-")
    if key not in DATASET_NAMES:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r} (choose from {', '.join(DATASET_NAMES)})")
    return key


def _activation_name(text: str) -> str:
    from .nn import ACTIVATIONS, normalize_activation

    try:
        return normalize_activation(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown activation {text!r} (choose from {', '.join(ACTIVATIONS)})"
        ) from None


# ---- the parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="xpgrad: a small define-by-run autodiff engine; train and inspect MLPs.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    d = DEFAULTS
    train = sub.add_parser(
        "train", help="train an MLP classifier",
        description="Train an MLP classifier on inputs standardized with the training split's mean and "
                    "std (kept in the model). The last line printed is the test accuracy. "
                    "Ctrl-C stops after the current batch (and saves a checkpoint with --save); "
                    "a second Ctrl-C aborts.",
    )
    train.add_argument("--dataset", type=_dataset_name, help=f"digits, mnist, fashion-mnist or spiral "
                       f"(default {d['dataset']}; with --load, the checkpoint's)")
    train.add_argument("--data-dir", help="folder of the IDX files for mnist / fashion-mnist")
    train.add_argument("--hidden", type=_hidden, help=f"hidden layer sizes, e.g. 100,100 "
                       f"(default {','.join(map(str, d['hidden']))})")
    train.add_argument("--activation", type=_activation_name,
                       help=f"relu, leaky_relu, elu, sigmoid or tanh (default {d['activation']})")
    train.add_argument("--dropout", type=_dropout,
                       help=f"dropout probability after each hidden layer (default {d['dropout']})")
    train.add_argument("--loss", choices=("softmax-ce", "hinge", "mse"), help=f"default {d['loss']}")
    train.add_argument("--optimizer", choices=("sgd", "adam"), help=f"default {d['optimizer']}")
    train.add_argument("--lr", type=_positive_float,
                       help=f"learning rate (default {DEFAULT_LR['adam']} for adam, {DEFAULT_LR['sgd']} for sgd)")
    train.add_argument("--momentum", type=_momentum, help=f"SGD momentum (default {DEFAULT_MOMENTUM})")
    train.add_argument("--epochs", type=_nonnegative_int,
                       help=f"total epochs; with --load, training resumes from the checkpoint's epoch "
                            f"(default {d['epochs']})")
    train.add_argument("--batch-size", type=_positive_int, help=f"default {d['batch_size']}")
    train.add_argument("--seed", type=_nonnegative_int,
                       help=f"seed of the weight init, dropout and shuffling (default {d['seed']})")
    _add_backend(train)
    train.add_argument("--save", metavar="PATH", help="write a checkpoint (.npz) at the end or on Ctrl-C")
    train.add_argument("--load", metavar="PATH", help="resume from a checkpoint written by --save")
    train.add_argument("--plot", metavar="PATH.png", help="write loss and accuracy curves (.png, .pdf or .svg)")
    train.add_argument("--metrics-json", metavar="PATH", help="write final and per-epoch metrics as JSON")
    train.add_argument("--graph", metavar="PATH.svg", help="draw one training step's graph (values and gradients)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="accuracy of a saved model",
                        description="Print the accuracy of a checkpoint's model on a dataset split.")
    ev.add_argument("--load", metavar="PATH", required=True, help="checkpoint written by xpgrad train --save")
    ev.add_argument("--dataset", type=_dataset_name, help="default: the dataset the checkpoint was trained on")
    ev.add_argument("--data-dir", help="folder of the IDX files for mnist / fashion-mnist")
    ev.add_argument("--split", choices=("test", "val", "train"), default="test", help="default test")
    ev.add_argument("--batch-size", type=_positive_int, default=EVAL_BATCH_SIZE,
                    help=f"evaluation batch size (default {EVAL_BATCH_SIZE})")
    _add_backend(ev)
    ev.set_defaults(func=cmd_eval)

    info = sub.add_parser("info", help="backend, devices, versions, kernels and GPU availability")
    _add_backend(info)
    info.set_defaults(func=cmd_info)

    bench = sub.add_parser("bench", help="benchmarks: " + ", ".join(BENCH_TARGETS))
    bench_sub = bench.add_subparsers(dest="target", metavar="TARGET", parser_class=_Parser)
    for target, (_, _, text) in BENCH_TARGETS.items():
        b = bench_sub.add_parser(target, help=text, description=text)
        b.add_argument("--sizes", type=_size_list, help="comma-separated problem sizes")
        b.add_argument("--json", dest="json_path", metavar="PATH", help="also write the results as JSON")
        b.add_argument("--threads", type=_positive_int, help="number of CPU threads (Numba / BLAS)")
        if target == "mlp":
            b.add_argument("--plot", dest="plot_path", metavar="PATH.png", help="bar chart of steps/s per config")
        b.set_defaults(func=cmd_bench, target=target)
    bench.set_defaults(func=cmd_bench, target=None)

    importlib.import_module(GRAPH_MODULE).add_graph_subcommand(sub)
    return parser


def _add_backend(p) -> None:
    p.add_argument("--backend", help="numpy, cupy, auto or an array-API module (overrides XPGRAD_BACKEND)")


# ---- main ------------------------------------------------------------------------------------


def main(argv=None) -> int:
    """Run the `xpgrad` command line; returns the exit status (never raises SystemExit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except UsageError as err:
        return _fail(str(err), EXIT_USAGE)
    except SystemExit as exit_:  # --help / --version
        return exit_.code if isinstance(exit_.code, int) else 0
    if args.command is None:
        return _fail("missing command: choose one of train, eval, info, bench, graph (see xpgrad --help)",
                     EXIT_USAGE)
    import contextlib

    from .backend import use_backend
    from .errors import XpgradError

    try:
        # --backend overrides XPGRAD_BACKEND for this command only (restored afterwards)
        with use_backend(args.backend) if getattr(args, "backend", None) else contextlib.nullcontext():
            return args.func(args)
    except UsageError as err:
        return _fail(str(err), EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except (XpgradError, OSError, ValueError, ImportError) as err:
        return _fail(_message(err), EXIT_FAILURE)


def _message(err: BaseException) -> str:
    text = str(err)
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    if isinstance(err, ImportError) and not isinstance(err, ModuleNotFoundError) and not text:
        text = repr(err)
    return text or type(err).__name__


def _fail(message: str, code: int) -> int:
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr, flush=True)
    return code


def _say(text: str, quiet: bool = False) -> None:
    if not quiet:
        print(text, flush=True)


# ---- train -----------------------------------------------------------------------------------


def _check_output_path(flag: str, path: str) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file path")
    folder = p.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: folder {folder} is not writable")
    return p


def _settings(args, saved: dict) -> dict:
    """Flags given on the command line, else the checkpoint's settings, else DEFAULTS."""
    out = {}
    for key in ("dataset", "hidden", "activation", "dropout", "loss", "optimizer", "epochs", "batch_size", "seed"):
        given = getattr(args, key)
        out[key] = given if given is not None else saved.get(key, DEFAULTS[key])
    same_optimizer = out["optimizer"] == saved.get("optimizer")
    if args.lr is not None:
        out["lr"] = args.lr
    elif same_optimizer and "lr" in saved:
        out["lr"] = saved["lr"]
    else:
        out["lr"] = DEFAULT_LR[out["optimizer"]]
    if out["optimizer"] == "sgd":
        if args.momentum is not None:
            out["momentum"] = args.momentum
        else:
            out["momentum"] = saved.get("momentum", DEFAULT_MOMENTUM) if same_optimizer else DEFAULT_MOMENTUM
    elif args.momentum is not None:
        raise UsageError("--momentum applies to --optimizer sgd only")
    return out


def cmd_train(args) -> int:
    import xpgrad as xg

    from . import nn, optim
    from .checkpoint import CheckpointError, load_checkpoint, restore_model, restore_optimizer, save_checkpoint
    from .data import DataLoader, load_dataset
    from .train import (
        Reporter, StopRequest, blas_threads_for, catch_sigint, describe_device, fit, history_from_json, history_to_json,
        make_loss, plot_history, set_rng_state, write_json,
    )

    save = _check_output_path("--save", args.save) if args.save else None
    plot = _check_output_path("--plot", args.plot) if args.plot else None
    metrics_path = _check_output_path("--metrics-json", args.metrics_json) if args.metrics_json else None
    graph = _check_output_path("--graph", args.graph) if args.graph else None
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--plot {args.plot}: the file name must end in .png, .pdf or .svg")
    quiet = args.quiet

    ckpt = load_checkpoint(Path(args.load).expanduser()) if args.load else None
    saved = dict(ckpt.extra.get("settings", {})) if ckpt else {}
    if ckpt is not None:
        config = ckpt.model_config or {}
        if config.get("type") != "MLP":
            raise CheckpointError(f"checkpoint {ckpt.path} holds no MLP configuration; xpgrad train resumes MLPs only")
        saved.setdefault("hidden", list(config["sizes"][1:-1]))
        saved.setdefault("activation", config.get("activation"))
        for key, flag in (("hidden", "--hidden"), ("activation", "--activation")):
            given = getattr(args, key)
            if given is not None and given != saved[key]:
                raise CheckpointError(
                    f"checkpoint {ckpt.path} was saved from a different architecture: it has {key} "
                    f"{_show(saved[key])} but {flag} {_show(given)} was given"
                )
    s = _settings(args, saved)
    data_dir = _data_dir(args.data_dir, s["dataset"], saved)

    splits = load_dataset(s["dataset"], data_dir)
    backend_name = xg.get_backend().name
    xg.manual_seed(s["seed"])
    sizes = [splits.num_features, *s["hidden"], splits.num_classes]
    if ckpt is not None:
        saved_sizes = list(ckpt.model_config["sizes"])
        if saved_sizes[0] != sizes[0] or saved_sizes[-1] != sizes[-1]:
            raise CheckpointError(
                f"checkpoint {ckpt.path} was saved from a different architecture: its MLP takes "
                f"{saved_sizes[0]} inputs and gives {saved_sizes[-1]} classes, but dataset {s['dataset']} has "
                f"{sizes[0]} features and {sizes[-1]} classes"
            )
    # inputs are standardized with the training split's statistics (kept in the model's buffers)
    standardize = bool(ckpt.model_config.get("standardize", False)) if ckpt is not None else True
    model = nn.MLP(sizes, activation=s["activation"], dropout=s["dropout"], standardize=standardize)
    if ckpt is not None:
        restore_model(model, ckpt)
    else:
        model.fit_standardizer(splits.train.x)
    if s["optimizer"] == "adam":
        opt = optim.Adam(model.parameters(), lr=s["lr"])
    else:
        opt = optim.SGD(model.parameters(), lr=s["lr"], momentum=s["momentum"])
    start_epoch, history = 0, []
    loader = DataLoader(splits.train, s["batch_size"], shuffle=True, seed=s["seed"])
    if ckpt is not None:
        start_epoch = int(ckpt.extra.get("epoch", 0))
        history = history_from_json(ckpt.extra.get("history", []))[:start_epoch]
        if ckpt.optimizer is not None and ckpt.optimizer.get("type") == type(opt).__name__:
            restore_optimizer(opt, ckpt)
            opt.lr = s["lr"]
            if s["optimizer"] == "sgd":
                opt.momentum = s["momentum"]
        elif ckpt.optimizer is not None:
            print(f"xpgrad: note: the checkpoint's optimizer is {ckpt.optimizer.get('type')}; "
                  f"starting {type(opt).__name__} from a fresh state", file=sys.stderr)
        set_rng_state(loader, ckpt.extra.get("rng", {}))

    loss_fn = make_loss(s["loss"], splits.num_classes)
    device = describe_device(model)
    arch = "-".join(str(n) for n in sizes)
    optimizer_text = f"{s['optimizer']} lr {s['lr']:g}"
    if s["optimizer"] == "sgd":
        optimizer_text += f" momentum {s['momentum']:g}"
    _say(f"training MLP {arch} ({s['activation']}, dropout {s['dropout']:g}) on {splits.name}: "
         f"{len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test samples; {s['loss']} loss, "
         f"{optimizer_text}, "
         f"batch {s['batch_size']}, epochs {start_epoch + 1}-{s['epochs']}; backend {backend_name} on {device}",
         quiet)
    if start_epoch >= s["epochs"]:
        _say(f"the checkpoint already has {start_epoch} epochs (--epochs {s['epochs']}): nothing to train", quiet)

    stop = StopRequest()
    message = "xpgrad: stopping after this batch" + (f" and saving {save}" if save else "") + \
              " (Ctrl-C again to abort)"
    with catch_sigint(stop, message), blas_threads_for(model, s["batch_size"]):
        result = fit(model, opt, loss_fn, loader, s["epochs"], val=splits.val, test=splits.test,
                     start_epoch=start_epoch, history=history, reporter=Reporter(quiet=quiet), stop=stop,
                     eval_batch_size=EVAL_BATCH_SIZE)
    history = result.history
    if history and history[-1].epoch == result.epochs_done:
        final = history[-1]
        test_acc, val_acc, train_loss = final.test_accuracy, final.val_accuracy, final.train_loss
    else:
        from .train import accuracy

        test_acc = accuracy(model, splits.test, EVAL_BATCH_SIZE)
        val_acc = accuracy(model, splits.val, EVAL_BATCH_SIZE)
        train_loss = None
    if result.interrupted:
        print(f"xpgrad: interrupted after {result.epochs_done} complete epochs", file=sys.stderr, flush=True)

    new_records = history[start_epoch:] if len(history) > start_epoch else []
    train_seconds = sum(r.seconds for r in new_records)
    samples = len(splits.train) * len(new_records)
    if save is not None:
        settings = {**s, "dataset": splits.name, "data_dir": data_dir}
        extra = {"epoch": result.epochs_done, "settings": settings, "history": history_to_json(history),
                 "rng": result.rng_state, "interrupted": result.interrupted, "backend": backend_name,
                 "xpgrad_version": xg.__version__}
        save_checkpoint(save, model, opt, extra=extra)
        _say(f"saved checkpoint to {save}")
    if plot is not None and history:
        plot_history(history, plot, title=f"MLP {arch} ({s['activation']}) on {splits.name}, {optimizer_text}")
        _say(f"saved plot to {plot}")
    if graph is not None:
        _draw_step(model, loss_fn, splits.train, graph)
        _say(f"saved graph of one training step to {graph}")
    if metrics_path is not None:
        payload = {
            "dataset": splits.name, "backend": backend_name, "device": device,
            "model": model.config(), "loss": s["loss"], "optimizer": s["optimizer"], "lr": s["lr"],
            "momentum": s.get("momentum"), "batch_size": s["batch_size"], "seed": s["seed"],
            "epochs": result.epochs_done, "interrupted": result.interrupted,
            "final": {
                "train_loss": train_loss, "val_accuracy": val_acc, "test_accuracy": test_acc,
                "seconds": train_seconds, "total_seconds": result.seconds,
                "samples_per_second": samples / train_seconds if train_seconds > 0 else None,
            },
            "per_epoch": history_to_json(history),
        }
        write_json(metrics_path, _strict(payload))
        _say(f"saved metrics to {metrics_path}")
    print(f"test accuracy: {test_acc:.4f}", flush=True)
    return EXIT_INTERRUPTED if result.interrupted else 0


def _draw_step(model, loss_fn, dataset, path) -> None:
    """Draw the graph of one step of `model` on a few training samples (layers collapsed)."""
    from .data import DataLoader
    from .viz import GraphvizNotFoundError, render_step

    x, y = next(iter(DataLoader(dataset, batch_size=8)))
    try:
        render_step(loss_fn(model(x), y), path, model=model)
    except GraphvizNotFoundError as err:
        raise UsageError(f"--graph {path}: {err}") from None


def _data_dir(given, dataset: str, saved: dict):
    """--data-dir as an absolute path, else the checkpoint's folder when it holds the same dataset."""
    if given:
        return str(Path(given).expanduser().resolve())
    return saved.get("data_dir") if saved.get("dataset") == dataset else None


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _strict(payload):
    """Replace non-finite floats by None, recursively (strict JSON)."""
    import math

    if isinstance(payload, dict):
        return {k: _strict(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_strict(v) for v in payload]
    if isinstance(payload, float) and not math.isfinite(payload):
        return None
    return payload


# ---- eval ------------------------------------------------------------------------------------


def cmd_eval(args) -> int:
    from .checkpoint import CheckpointError, load_checkpoint
    from .data import load_dataset
    from .train import accuracy

    ckpt = load_checkpoint(Path(args.load).expanduser())
    saved = ckpt.extra.get("settings", {})
    name = args.dataset or saved.get("dataset")
    if name is None:
        raise UsageError(f"checkpoint {ckpt.path} does not record its dataset; give --dataset")
    splits = load_dataset(name, _data_dir(args.data_dir, name, saved))
    config = ckpt.model_config or {}
    sizes = config.get("sizes")
    if sizes and (sizes[0] != splits.num_features or sizes[-1] != splits.num_classes):
        raise CheckpointError(
            f"checkpoint {ckpt.path} was saved from a different architecture: its model takes {sizes[0]} inputs "
            f"and gives {sizes[-1]} classes, but dataset {splits.name} has {splits.num_features} features "
            f"and {splits.num_classes} classes"
        )
    model = ckpt.build_model()
    data = getattr(splits, args.split)
    acc = accuracy(model, data, args.batch_size)
    print(f"{splits.name} {args.split} split: {len(data)} samples, model {_describe_model(config)}")
    print(f"{args.split} accuracy: {acc:.4f}", flush=True)
    return 0


def _describe_model(config: dict) -> str:
    if config.get("type") == "MLP":
        return f"MLP {'-'.join(map(str, config['sizes']))} ({config.get('activation')})"
    return str(config.get("type"))


# ---- info ------------------------------------------------------------------------------------


def _version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        try:
            return getattr(importlib.import_module(module.replace("-", "_")), "__version__", "installed")
        except ImportError:
            return "not installed"


def cmd_info(args) -> int:
    import xpgrad as xg

    from . import backend as _backend
    from .errors import BackendError

    lines = [f"xpgrad {xg.__version__} (python {platform.python_version()}, {platform.system()} {platform.machine()})"]
    problem = None
    env = os.environ.get(_backend.ENV_VAR)
    source = f"--backend {args.backend}" if args.backend else (f"{_backend.ENV_VAR}={env}" if env else "default")
    try:
        current = xg.get_backend()
        lines.append(f"backend: {current.name} (from {source})")
    except BackendError as err:
        problem = str(err)
        lines.append(f"backend: unusable (from {source})")
    gpu = xg.cupy_gpu_available()
    devices = ["cpu"] + (_gpu_names() if gpu else [])
    lines.append(f"devices: {', '.join(devices)}")
    for package in ("numpy", "numba", "array-api-compat", "cupy", "scikit-learn", "matplotlib", "tqdm"):
        lines.append(f"{package}: {_cupy_version() if package == 'cupy' else _version(package)}")
    lines.append(f"kernels (numba): {_kernels_status()}")
    lines.append(f"gpu: {'available' if gpu else 'not available'}")
    print("\n".join(lines), flush=True)
    if problem:
        return _fail(problem, EXIT_FAILURE)
    return 0


def _cupy_version() -> str:
    from importlib import metadata

    for dist in ("cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x", "cupy"):
        try:
            return f"{metadata.version(dist)} ({dist})"
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def _kernels_status() -> str:
    from .fns import kernels_enabled

    try:
        import numba  # noqa: F401
    except ImportError:
        return "not available (numba is not installed)"
    try:
        importlib.import_module("xpgrad.kernels")
    except Exception as err:  # noqa: BLE001 - report any failure to load, do not crash `info`
        return f"not available (importing xpgrad.kernels failed: {type(err).__name__}: {err})"
    if not kernels_enabled():
        return "available but switched off (XPGRAD_KERNELS=0)"
    return "available"


def _gpu_names() -> list[str]:
    try:
        import cupy

        names = []
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            name = cupy.cuda.runtime.getDeviceProperties(i)["name"]
            names.append(f"cuda:{i} ({name.decode() if isinstance(name, bytes) else name})")
        return names
    except Exception:  # noqa: BLE001 - a listing problem must not break `info`
        return ["cuda (device query failed)"]


# ---- bench and graph (implemented by other modules) ----------------------------------------


def cmd_bench(args) -> int:
    if args.target is None:
        raise UsageError(f"bench needs a target: one of {', '.join(BENCH_TARGETS)}")
    module_name, function, _ = BENCH_TARGETS[args.target]
    fn = getattr(importlib.import_module(module_name), function)
    extra = {"plot_path": args.plot_path} if getattr(args, "plot_path", None) else {}
    code = fn(sizes=args.sizes, json_path=args.json_path, threads=args.threads, **extra)
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
