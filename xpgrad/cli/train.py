"""`xpgrad train`: train an MLP classifier, optionally resuming from and saving a checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

from . import arguments, parallel
from .common import (
    EVAL_BATCH_SIZE,
    EXIT_INTERRUPTED,
    UsageError,
    add_backend,
    check_output_path,
    resolve_data_dir,
    say,
)

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
    "dtype": "float32",
    "augment": "auto",
}
DEFAULT_LR = {"adam": 2e-3, "sgd": 0.05}
DEFAULT_MOMENTUM = 0.9
# Chance that a training image is shifted by one pixel in an epoch (--augment shift). Chosen on
# the validation split over seeds 0-19 (bench/RESULTS.md, "default recipe"): 0.3 gave the best
# mean validation accuracy of 0.3 / 0.5 / 0.7, with and without a cosine schedule.
SHIFT_CHANCE = 0.3


def add_parser(sub) -> None:
    d = DEFAULTS
    train = sub.add_parser(
        "train",
        help="train an MLP classifier",
        description="Train an MLP classifier on inputs standardized with the training split's mean and "
        "std (kept in the model). The last line printed is the test accuracy. "
        "Ctrl-C stops after the current batch (and saves a checkpoint with --save); "
        "a second Ctrl-C aborts.",
    )
    train.add_argument(
        "--dataset",
        type=arguments.dataset_name,
        help=f"digits, mnist, fashion-mnist or spiral (default {d['dataset']}; with --load, the checkpoint's)",
    )
    train.add_argument("--data-dir", help="folder of the IDX files for mnist / fashion-mnist")
    train.add_argument(
        "--hidden",
        type=arguments.hidden,
        help=f"hidden layer sizes, e.g. 100,100 (default {','.join(map(str, d['hidden']))})",
    )
    train.add_argument(
        "--activation",
        type=arguments.activation_name,
        help=f"relu, leaky_relu, elu, sigmoid or tanh (default {d['activation']})",
    )
    train.add_argument(
        "--dropout",
        type=arguments.dropout,
        help=f"dropout probability after each hidden layer (default {d['dropout']})",
    )
    train.add_argument("--loss", choices=("softmax-ce", "hinge", "mse"), help=f"default {d['loss']}")
    train.add_argument("--optimizer", choices=("sgd", "adam"), help=f"default {d['optimizer']}")
    train.add_argument(
        "--lr",
        type=arguments.positive_float,
        help=f"learning rate (default {DEFAULT_LR['adam']} for adam, {DEFAULT_LR['sgd']} for sgd)",
    )
    train.add_argument("--momentum", type=arguments.momentum, help=f"SGD momentum (default {DEFAULT_MOMENTUM})")
    train.add_argument(
        "--epochs",
        type=arguments.nonnegative_int,
        help=f"total epochs; with --load, training resumes from the checkpoint's epoch (default {d['epochs']})",
    )
    train.add_argument("--batch-size", type=arguments.positive_int, help=f"default {d['batch_size']}")
    train.add_argument(
        "--seed",
        type=arguments.nonnegative_int,
        help=f"seed of the weight init, dropout and shuffling (default {d['seed']})",
    )
    train.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help=f"dtype of the parameters and the computation (default {d['dtype']})",
    )
    add_backend(train)
    train.add_argument(
        "--augment",
        choices=("auto", "shift", "none"),
        help=f"move {SHIFT_CHANCE * 100:.0f}%% of the training images by one pixel each epoch (shift); auto: "
        f"shift on the image datasets (digits, mnist, fashion-mnist), none on spiral (default auto)",
    )
    train.add_argument(
        "--save",
        metavar="PATH",
        help="write a checkpoint at the end or on Ctrl-C: .safetensors by that suffix, else .npz",
    )
    train.add_argument("--load", metavar="PATH", help="resume from a checkpoint written by --save")
    train.add_argument("--plot", metavar="PATH.png", help="write loss and accuracy curves (.png, .pdf or .svg)")
    train.add_argument("--metrics-json", metavar="PATH", help="write final and per-epoch metrics as JSON")
    train.add_argument("--graph", metavar="PATH.svg", help="draw one training step's graph (values and gradients)")
    train.add_argument(
        "--capture",
        action="store_true",
        help="run each batch's step under xg.capture: recorded once, then replayed with no Python "
        "per op (the same results, bit for bit; faster where Python per op dominates: 2x eager "
        "on bench mlp's config (c), 1.4x on the default digits step; see README 'Capture'). Off by default: eager is "
        "the reference behaviour, and a captured step bakes "
        "in its Python branches; not with mpiexec data-parallel training",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    train.set_defaults(func=run)


def _settings(args, saved: dict) -> dict:
    """Flags given on the command line, else the checkpoint's settings, else DEFAULTS."""
    out = {}
    for key in (
        "dataset",
        "hidden",
        "activation",
        "dropout",
        "loss",
        "optimizer",
        "epochs",
        "batch_size",
        "seed",
        "dtype",
        "augment",
    ):
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


def _image_shape_to_shift(augment: str, dataset: str):
    """The (height, width) of the images to shift for --augment (None: no augmentation)."""
    from ..data import IMAGE_SHAPES

    if augment == "none" or (augment == "auto" and dataset not in IMAGE_SHAPES):
        return None
    if dataset not in IMAGE_SHAPES:
        raise UsageError(
            f"--augment shift: dataset {dataset} holds no images; shifting applies to {', '.join(IMAGE_SHAPES)}"
        )
    return IMAGE_SHAPES[dataset]


def run(args) -> int:
    """Handle `xpgrad train`; returns the exit status. Under `mpiexec -n K` (K > 1) it trains
    data-parallel (`parallel`): only rank 0 prints and writes files."""
    import xpgrad as xg

    from .. import nn, optim
    from ..checkpoint import CheckpointError, load_checkpoint, restore_model, restore_optimizer, save_checkpoint
    from ..data import DataLoader, RandomShift, load_dataset
    from ..distributed import DataParallel, RankStop
    from ..train import (
        Reporter,
        StopRequest,
        blas_threads_for,
        catch_sigint,
        describe_device,
        fit,
        history_from_json,
        history_to_json,
        make_loss,
        plot_history,
        set_rng_state,
        write_json,
    )

    ranks = parallel.join()
    save = check_output_path("--save", args.save) if args.save else None
    plot = check_output_path("--plot", args.plot) if args.plot else None
    metrics_path = check_output_path("--metrics-json", args.metrics_json) if args.metrics_json else None
    graph = check_output_path("--graph", args.graph) if args.graph else None
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--plot {args.plot}: the file name must end in .png, .pdf or .svg")
    quiet = args.quiet or not ranks.is_main

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
    if ranks.parallel:
        parallel.check_batch(ranks, s["batch_size"])
        if args.capture:
            raise UsageError(
                "--capture does not combine with data-parallel training (mpiexec -n K, K > 1): the "
                "gradient sync runs in the middle of the step"
            )
    data_dir = resolve_data_dir(args.data_dir, s["dataset"], saved)

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
    model = nn.MLP(sizes, activation=s["activation"], dropout=s["dropout"], standardize=standardize, dtype=s["dtype"])
    if ckpt is not None:
        restore_model(model, ckpt)
    else:
        model.fit_standardizer(splits.train.x)
    trained = DataParallel(model) if ranks.parallel else model  # rank 0's values on every rank
    if s["optimizer"] == "adam":
        opt = optim.Adam(model.parameters(), lr=s["lr"])
    else:
        opt = optim.SGD(model.parameters(), lr=s["lr"], momentum=s["momentum"])
    start_epoch, history = 0, []
    shift = _image_shape_to_shift(s["augment"], splits.name)
    augment = RandomShift(shift, max_shift=1, p=SHIFT_CHANCE) if shift else None
    loader = DataLoader(
        splits.train,
        s["batch_size"],
        shuffle=True,
        seed=s["seed"],
        shard=(ranks.rank, ranks.world_size) if ranks.parallel else None,
        augment=augment,
    )
    if ckpt is not None:
        start_epoch = int(ckpt.extra.get("epoch", 0))
        history = history_from_json(ckpt.extra.get("history", []))[:start_epoch]
        if ckpt.optimizer is not None and ckpt.optimizer.get("type") == type(opt).__name__:
            restore_optimizer(opt, ckpt)
            opt.lr = s["lr"]
            if s["optimizer"] == "sgd":
                opt.momentum = s["momentum"]
        elif ckpt.optimizer is not None and ranks.is_main:
            print(
                f"xpgrad: note: the checkpoint's optimizer is {ckpt.optimizer.get('type')}; "
                f"starting {type(opt).__name__} from a fresh state",
                file=sys.stderr,
            )
        set_rng_state(loader, ckpt.extra.get("rng", {}))
    parallel.seed_rank_stream(ranks, s["seed"], ckpt.extra.get("rng", {}) if ckpt else None, start_epoch)

    loss_fn = make_loss(s["loss"], splits.num_classes)
    device = describe_device(model)
    arch = "-".join(str(n) for n in sizes)
    optimizer_text = f"{s['optimizer']} lr {s['lr']:g}"
    if s["optimizer"] == "sgd":
        optimizer_text += f" momentum {s['momentum']:g}"
    say(
        f"training MLP {arch} ({s['activation']}, dropout {s['dropout']:g}) on {splits.name}: "
        f"{len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test samples; {s['loss']} loss, "
        f"{optimizer_text}, "
        f"{'1-pixel shifts, ' if augment else ''}batch {s['batch_size']}, epochs {start_epoch + 1}-{s['epochs']}; "
        f"{s['dtype']}, backend {backend_name} "
        f"on {device}{parallel.describe(ranks, s['batch_size'])}",
        quiet,
    )
    if start_epoch >= s["epochs"]:
        say(f"the checkpoint already has {start_epoch} epochs (--epochs {s['epochs']}): nothing to train", quiet)

    stop = RankStop() if ranks.parallel else StopRequest()
    message = "xpgrad: stopping after this batch" + (f" and saving {save}" if save else "") + " (Ctrl-C again to abort)"
    with (
        catch_sigint(stop, message if ranks.is_main else None),
        blas_threads_for(model, s["batch_size"] // ranks.world_size),
    ):
        result = fit(
            trained,
            opt,
            loss_fn,
            loader,
            s["epochs"],
            val=splits.val,
            test=splits.test,
            start_epoch=start_epoch,
            history=history,
            reporter=Reporter(quiet=quiet),
            stop=stop,
            eval_batch_size=EVAL_BATCH_SIZE,
            capture=args.capture,
        )
    history = result.history
    if history and history[-1].epoch == result.epochs_done:
        final = history[-1]
        test_acc, val_acc, train_loss = final.test_accuracy, final.val_accuracy, final.train_loss
    else:
        from ..train import accuracy

        test_acc = accuracy(model, splits.test, EVAL_BATCH_SIZE)
        val_acc = accuracy(model, splits.val, EVAL_BATCH_SIZE)
        train_loss = None
    if result.interrupted and ranks.is_main:
        print(f"xpgrad: interrupted after {result.epochs_done} complete epochs", file=sys.stderr, flush=True)

    new_records = history[start_epoch:] if len(history) > start_epoch else []
    train_seconds = sum(r.seconds for r in new_records)
    samples = len(splits.train) * len(new_records)
    rng = parallel.gather_rng(ranks, result.rng_state) if save is not None else None
    if not ranks.is_main:
        return EXIT_INTERRUPTED if result.interrupted else 0
    if save is not None:
        settings = {**s, "dataset": splits.name, "data_dir": data_dir}
        extra = {
            "epoch": result.epochs_done,
            "settings": settings,
            "history": history_to_json(history),
            "rng": rng,
            "interrupted": result.interrupted,
            "backend": backend_name,
            "xpgrad_version": xg.__version__,
        }
        save_checkpoint(save, model, opt, extra=extra)
        say(f"saved checkpoint to {save}")
    if plot is not None and history:
        plot_history(history, plot, title=f"MLP {arch} ({s['activation']}) on {splits.name}, {optimizer_text}")
        say(f"saved plot to {plot}")
    if graph is not None:
        _draw_step(model, loss_fn, splits.train, graph)
        say(f"saved graph of one training step to {graph}")
    if metrics_path is not None:
        payload = {
            "dataset": splits.name,
            "backend": backend_name,
            "device": device,
            "model": model.config(),
            "loss": s["loss"],
            "optimizer": s["optimizer"],
            "lr": s["lr"],
            "momentum": s.get("momentum"),
            "batch_size": s["batch_size"],
            "seed": s["seed"],
            "epochs": result.epochs_done,
            "interrupted": result.interrupted,
            "final": {
                "train_loss": train_loss,
                "val_accuracy": val_acc,
                "test_accuracy": test_acc,
                "seconds": train_seconds,
                "total_seconds": result.seconds,
                "samples_per_second": samples / train_seconds if train_seconds > 0 else None,
            },
            "per_epoch": history_to_json(history),
        }
        write_json(metrics_path, _strict(payload))
        say(f"saved metrics to {metrics_path}")
    print(f"test accuracy: {test_acc:.4f}", flush=True)
    return EXIT_INTERRUPTED if result.interrupted else 0


def _draw_step(model, loss_fn, dataset, path) -> None:
    """Draw the graph of one step of `model` on a few training samples (layers collapsed)."""
    from ..data import DataLoader
    from ..viz import GraphvizNotFoundError, render_step

    x, y = next(iter(DataLoader(dataset, batch_size=8)))
    try:
        render_step(loss_fn(model(x), y), path, model=model)
    except GraphvizNotFoundError as err:
        raise UsageError(f"--graph {path}: {err}") from None


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
