"""The training loop behind `xpgrad train`: losses by name, epochs, accuracy, progress, plots, metrics.

Training an MLP on a dataset's splits:

    loss_fn = make_loss("softmax-ce", num_classes=10)
    result = fit(model, opt, loss_fn, DataLoader(splits.train, 32, shuffle=True, seed=0),
                 epochs=20, val=splits.val, test=splits.test)
    result.history[-1].test_accuracy
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

from . import backend, fns_cupy
from .autograd import no_grad
from .capture import capture as capture_step
from .creation import generator, tensor
from .distributed import DataParallel
from .ops import hinge_loss, mse_loss, one_hot, softmax_cross_entropy

LOSSES = ("softmax-ce", "hinge", "mse")


def make_loss(name: str, num_classes: int):
    """loss(scores, labels) -> scalar Tensor for `name`: softmax-ce (softmax with cross-entropy),
    hinge (cs231n multiclass SVM) or mse (squared error against one-hot targets)."""
    if name == "softmax-ce":
        return softmax_cross_entropy
    if name == "hinge":
        return hinge_loss
    if name == "mse":

        def mse_one_hot(scores, labels):
            return mse_loss(scores, one_hot(labels, num_classes, scores.dtype))

        return mse_one_hot
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")


def accuracy(model, dataset, batch_size: int = 1024, device=None) -> float:
    """Fraction of `dataset` whose arg-max score is the label (model in eval mode, no graph)."""
    n = len(dataset)
    if n == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with no_grad():
            for start in range(0, n, batch_size):
                x = tensor(dataset.x[start : start + batch_size], device=device)
                y = tensor(dataset.y[start : start + batch_size], device=device)
                scores = model(x).data
                xp = backend.namespace_of(scores)
                correct += int(xp.sum(xp.astype(xp.argmax(scores, axis=1) == y.data, xp.int64)))
    finally:
        model.train(was_training)
    return correct / n


@dataclass
class EpochRecord:
    """One epoch's figures (accuracies are NaN when that split is empty or not evaluated)."""

    epoch: int
    train_loss: float
    val_accuracy: float
    test_accuracy: float
    seconds: float  # training time of the epoch (evaluation not included)
    samples_per_second: float


@dataclass
class FitResult:
    history: list[EpochRecord]
    interrupted: bool = False
    epochs_done: int = 0
    rng_state: dict = field(default_factory=dict)  # to resume at the start of epoch `epochs_done`
    seconds: float = 0.0


class StopRequest:
    """Set by a first Ctrl-C (SIGINT) while `catch_sigint` is active: training stops after the
    current batch. A second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False

    def __bool__(self):
        return self.requested


class catch_sigint:
    """Context manager that turns the first SIGINT into `StopRequest.requested = True` (main thread only)."""

    def __init__(self, stop: StopRequest, message=None):
        self.stop = stop
        self.message = message
        self.previous = None

    def _handler(self, signum, frame):
        if self.stop.requested:
            raise KeyboardInterrupt
        self.stop.requested = True
        if self.message:
            print(self.message, file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self.stop

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def rng_state(loader) -> dict:
    """The states of the loader's shuffling generator, the host generator (dropout on NumPy) and
    any device generators (dropout on CuPy: read back from the device), JSON-able."""
    state = {"loader": loader._rng.bit_generator.state, "host": generator().bit_generator.state}
    devices = fns_cupy.device_random_states()
    if devices:
        state["device"] = devices
    return state


def set_rng_state(loader, state: dict) -> None:
    """Put back what `rng_state` saved (a checkpoint's "rng"): each part that is there."""
    if "loader" in state:
        loader._rng.bit_generator.state = state["loader"]
    if "host" in state:
        generator().bit_generator.state = state["host"]
    if "device" in state:
        fns_cupy.set_device_random_states(state["device"])


def batch_step(model, optimizer, loss_fn):
    """step(x, y): one batch's zero_grad, forward, backward and update; returns the loss (the
    function `fit(capture=True)` hands to xg.capture)."""

    def step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return step


def train_epoch(model, optimizer, loss_fn, loader, *, on_batch=None, stop=None, step=None):
    """One pass over `loader`: (mean loss over samples, samples seen, finished without a stop).

    With a DataParallel `model` the gradients are averaged over the ranks before each update, and
    the loss, the samples and the stop (a RankStop) are those of every rank together, so every rank
    returns the same figures and stops at the same step. `step` (a captured `batch_step`, for a
    model that is not DataParallel) runs each batch instead of the loop's own calls.
    """
    model.train()
    parallel = model if isinstance(model, DataParallel) else None
    total = None
    seen = 0
    for x, y in loader:
        n = y.shape[0]
        if step is not None:
            loss_sum = step(x, y).data * n
        else:
            optimizer.zero_grad()
            loss_sum = 0.0
            if n:  # a rank's part of a short last global batch can be empty
                loss = loss_fn(model(x), y)
                loss.backward()
                loss_sum = loss.data * n
            if parallel is not None:
                n, loss_sum = parallel.sync_gradients(n, loss_sum=loss_sum, stop=stop)
            optimizer.step()
        total = loss_sum if total is None else total + loss_sum
        seen += n
        if on_batch is not None:
            on_batch(n)
        if stop:
            return _epoch_mean(total, seen), seen, False
    return _epoch_mean(total, seen), seen, True


def _epoch_mean(total, seen: int) -> float:
    """The epoch's mean loss: its one host read, which also raises an error a CuPy step left on
    the device (a label out of range: docs/errors.md)."""
    mean = float(total) / seen if seen else math.nan
    fns_cupy.raise_device_errors()
    return mean


def fit(
    model,
    optimizer,
    loss_fn,
    loader,
    epochs: int,
    *,
    val=None,
    test=None,
    start_epoch: int = 0,
    history=None,
    scheduler=None,
    reporter=None,
    stop=None,
    eval_batch_size: int = 1024,
    capture: bool = False,
) -> FitResult:
    """Train from epoch `start_epoch` up to `epochs` (total), evaluating val and test after each epoch.

    `scheduler.step()` runs once per epoch. `stop` (a StopRequest) ends training after the
    current batch; the result then has interrupted=True and rng_state from the start of the
    unfinished epoch. `capture`: each batch's step runs under xg.capture (the same results; not
    with a DataParallel model).
    """
    if capture and isinstance(model, DataParallel):
        raise ValueError(
            "fit: capture=True does not combine with a DataParallel model (its gradient sync runs mid-step)"
        )
    step = capture_step(batch_step(model, optimizer, loss_fn)) if capture else None
    history = list(history or [])
    result = FitResult(history, epochs_done=start_epoch, rng_state=rng_state(loader))
    t_start = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        epoch_state = rng_state(loader)
        on_batch = reporter.epoch_start(epoch + 1, epochs, len(loader)) if reporter else None
        t0 = time.perf_counter()
        loss, seen, finished = train_epoch(model, optimizer, loss_fn, loader, on_batch=on_batch, stop=stop, step=step)
        seconds = time.perf_counter() - t0
        if not finished:
            if reporter:
                reporter.epoch_abort()
            result.interrupted = True
            result.rng_state = epoch_state
            break
        if scheduler is not None:
            scheduler.step()
        record = EpochRecord(
            epoch=epoch + 1,
            train_loss=loss,
            val_accuracy=accuracy(model, val, eval_batch_size, loader.device) if val is not None else math.nan,
            test_accuracy=accuracy(model, test, eval_batch_size, loader.device) if test is not None else math.nan,
            seconds=seconds,
            samples_per_second=seen / seconds if seconds > 0 else math.inf,
        )
        history.append(record)
        result.epochs_done = epoch + 1
        result.rng_state = rng_state(loader)
        if reporter:
            reporter.epoch_end(record)
        if stop:
            result.interrupted = True
            break
    result.seconds = time.perf_counter() - t_start
    return result


class Reporter:
    """Per-epoch progress: a tqdm bar on stderr when it is a terminal, else one line per epoch on
    stdout (nothing with quiet)."""

    def __init__(self, quiet: bool = False, use_bar: bool | None = None, stream=None):
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stdout
        if use_bar is None:
            use_bar = not quiet and _isatty(sys.stderr)
        if use_bar:
            try:
                import tqdm  # noqa: F401
            except ImportError:
                use_bar = False
        self.use_bar = use_bar
        self.bar = None

    def epoch_start(self, epoch: int, epochs: int, batches: int):
        if not self.use_bar:
            return None
        from tqdm import tqdm

        width = len(str(epochs))
        columns, rows = _terminal_size(sys.stderr)
        self.bar = tqdm(
            total=batches,
            desc=f"epoch {epoch:>{width}}/{epochs}",
            unit="batch",
            leave=True,
            file=sys.stderr,
            dynamic_ncols=columns is None,
            ncols=columns,
            nrows=rows,
        )
        bar = self.bar

        def on_batch(n):
            bar.update(1)

        return on_batch

    def epoch_abort(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def epoch_end(self, record: EpochRecord):
        if self.bar is not None:
            self.bar.set_postfix_str(_summary(record, short=True), refresh=False)
            self.bar.close()
            self.bar = None
        elif not self.quiet:
            print(f"epoch {record.epoch:>3}  {_summary(record)}", file=self.stream, flush=True)


def _terminal_size(stream):
    """(columns, rows) to give tqdm: None where the terminal reports a size (tqdm follows it), else
    100 columns / 24 rows (a pseudo-terminal of size 0, where tqdm would draw nothing)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return 100, 24
    return (None if size.columns > 0 else 100), (None if size.lines > 0 else 24)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _summary(r: EpochRecord, short: bool = False) -> str:
    text = f"loss {r.train_loss:.4f}  val acc {r.val_accuracy:.4f}  test acc {r.test_accuracy:.4f}"
    if short:
        return text
    return f"{text}  {r.seconds:.2f} s  {r.samples_per_second:,.0f} samples/s"


def history_to_json(history) -> list[dict]:
    return [_finite(asdict(r)) for r in history]


def _finite(d: dict) -> dict:
    """NaN / inf -> None so the JSON is strict."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def history_from_json(items) -> list[EpochRecord]:
    return [EpochRecord(**{k: (math.nan if v is None else v) for k, v in item.items()}) for item in items or []]


def write_json(path, payload: dict):
    """Write `payload` as indented strict JSON, atomically."""
    from .checkpoint import atomic_write

    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


PLOT_FORMATS = ("png", "pdf", "svg")


def plot_history(history, path, title: str | None = None):
    """Loss and accuracy curves, side by side, written atomically to `path` (PNG, PDF or SVG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .checkpoint import atomic_write

    fmt = str(path).rsplit(".", 1)[-1].lower()
    if fmt not in PLOT_FORMATS:
        raise ValueError(f"plot path {path} must end in one of: {', '.join('.' + f for f in PLOT_FORMATS)}")
    epochs = [r.epoch for r in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r.train_loss for r in history], marker=".", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training loss")
    ax_loss.grid(True, alpha=0.3)
    ax_acc.plot(epochs, [r.val_accuracy for r in history], marker=".", label="validation")
    ax_acc.plot(epochs, [r.test_accuracy for r in history], marker=".", label="test")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=100))


SMALL_GEMM = 1 << 24  # batch * in * out below which one BLAS thread is faster than several
_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def blas_threads_for(model, batch_size: int):
    """A context manager limiting NumPy's BLAS to one thread when every GEMM of a training step is
    small (a few 100k multiply-adds on digits): extra BLAS threads only add spin and sync cost
    there, and on a busy machine spinning threads can slow a run down tenfold. Nothing changes
    for large models, non-NumPy backends, without threadpoolctl, or when the user set a
    *_NUM_THREADS variable."""
    weights = [p for p in model.parameters() if p.ndim == 2]
    if not weights or any(type(p.data).__module__ != "numpy" for p in weights):
        return contextlib.nullcontext()
    if any(os.environ.get(name) for name in _THREAD_ENV):
        return contextlib.nullcontext()
    work = max(batch_size * p.shape[0] * p.shape[1] for p in weights)
    if work >= SMALL_GEMM:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def describe_device(model) -> str:
    """Where the model's parameters live, e.g. "cpu" or "cuda:0 (NVIDIA H100 ...)"."""
    params = model.parameters()
    if not params:
        return "cpu"
    data = params[0].data
    place = backend.device_of(data)
    if backend.is_cupy(data):
        try:
            import cupy

            name = cupy.cuda.runtime.getDeviceProperties(data.device.id)["name"]
            name = name.decode() if isinstance(name, bytes) else name
            return f"{place} ({name})"
        except Exception:  # noqa: BLE001 - the name is decoration only
            return str(place)
    return str(place)


__all__ = [
    "LOSSES",
    "EpochRecord",
    "FitResult",
    "Reporter",
    "StopRequest",
    "accuracy",
    "blas_threads_for",
    "catch_sigint",
    "describe_device",
    "fit",
    "history_from_json",
    "history_to_json",
    "make_loss",
    "plot_history",
    "rng_state",
    "set_rng_state",
    "train_epoch",
    "write_json",
]
