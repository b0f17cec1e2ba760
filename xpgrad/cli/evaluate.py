"""`xpgrad eval`: the accuracy of a saved model on a dataset split."""

from __future__ import annotations

from pathlib import Path

from . import arguments
from .common import EVAL_BATCH_SIZE, UsageError, add_backend, resolve_data_dir


def add_parser(sub) -> None:
    ev = sub.add_parser(
        "eval",
        help="accuracy of a saved model",
        description="Print the accuracy of a checkpoint's model on a dataset split.",
    )
    ev.add_argument("--load", metavar="PATH", required=True, help="checkpoint written by xpgrad train --save")
    ev.add_argument("--dataset", type=arguments.dataset_name, help="default: the dataset the checkpoint was trained on")
    ev.add_argument("--data-dir", help="folder of the IDX files for mnist / fashion-mnist")
    ev.add_argument("--split", choices=("test", "val", "train"), default="test", help="default test")
    ev.add_argument(
        "--batch-size",
        type=arguments.positive_int,
        default=EVAL_BATCH_SIZE,
        help=f"evaluation batch size (default {EVAL_BATCH_SIZE})",
    )
    add_backend(ev)
    ev.set_defaults(func=run)


def run(args) -> int:
    """Handle `xpgrad eval`; returns the exit status."""
    from ..checkpoint import CheckpointError, load_checkpoint
    from ..data import load_dataset
    from ..train import accuracy

    ckpt = load_checkpoint(Path(args.load).expanduser())
    saved = ckpt.extra.get("settings", {})
    name = args.dataset or saved.get("dataset")
    if name is None:
        raise UsageError(f"checkpoint {ckpt.path} does not record its dataset; give --dataset")
    splits = load_dataset(name, resolve_data_dir(args.data_dir, name, saved))
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
