"""Losses: Softmax-with-loss as one node, mean squared error, and the cs231n multiclass SVM."""

from __future__ import annotations

import math
from functools import partial

from .. import backend, state
from ..autograd import Node, apply2, array_fns, require_tensor
from ..errors import DTypeError, ShapeError
from ..fns import label_error
from ..tensor import Tensor, dtype_name, is_floating, is_integer
from .activation import relu, softmax
from .arith import operand
from .reduce import sum as reduce_sum
from .shape import one_hot


def _labels(op: str, scores: Tensor, labels, check_range: bool = True) -> Tensor:
    """Validate (N, C) scores against integer labels in [0, C); the same error on every backend.

    check_range=False skips the range check (two reductions), for a caller whose op checks it.
    """
    if type(scores) is not Tensor:
        require_tensor(op, scores)
    if not isinstance(labels, Tensor):
        if isinstance(labels, (list, tuple)):
            import numpy as np

            labels = np.asarray(labels)  # a list of ints is int64 labels, not float32 values beside `scores`
        if not hasattr(labels, "shape"):
            raise DTypeError(f"{op}: labels must be an integer array of shape (N,), got {labels!r}")
        labels = operand(labels, scores)
    if not is_floating(scores.dtype):
        raise DTypeError(f"{op}: scores must be floating point, got dtype {dtype_name(scores.dtype)}")
    if scores.ndim != 2:
        raise ShapeError(f"{op}: scores must be 2-D (N, C), got shape {scores.shape}")
    if not is_integer(labels.dtype):
        raise DTypeError(f"{op}: labels must be integer class indices, got dtype {dtype_name(labels.dtype)}")
    if labels.shape != (scores.shape[0],):
        raise ShapeError(
            f"{op}: labels must have shape ({scores.shape[0]},) to match scores {scores.shape}, got {labels.shape}"
        )
    backend.check_same_place(op, scores.data, labels.data)
    if check_range:
        _check_range(op, labels.data, scores.shape[1])
    return labels


def _check_range(op: str, labels, num_classes: int) -> None:
    """Raise LabelError unless every label (a raw integer array) lies in [0, num_classes).

    `from None`: raised while the kernel's IndexError is handled, the LabelError stands alone.
    Under xg.capture the check is recorded and runs again on every replay's labels. On CuPy the
    check runs on the device and the LabelError comes at the next host read (fns_cupy.raise_device_errors).
    """
    if array_fns(labels).defer_label_check(op, labels, num_classes):
        return
    recorder = state.local.capture
    if recorder is not None:
        recorder.host_check(f"{op} label check", partial(_check_range_now, op, num_classes=num_classes), labels)
    else:
        _check_range_now(op, labels, num_classes)


def _check_range_now(op: str, labels, num_classes: int) -> None:
    if labels.shape[0]:
        low, high = array_fns(labels).min_max(labels)
        if low < 0 or high >= num_classes:
            raise label_error(op, num_classes, low, high) from None


class SoftmaxCrossEntropy(Node):
    """mean_i -log softmax(z_i)[y_i]; backward (softmax(z) - onehot(y)) / N, row by row without a
    one-hot matrix on NumPy (one Numba pass each way)."""

    __slots__ = ("probs",)
    name = "softmax_cross_entropy"

    def forward(self, xp, z, labels):
        F = array_fns(z)
        if not F.softmax_xent_checks_labels(z):
            _check_range(self.name, labels, z.shape[1])  # before any label is used as an index
        try:
            loss, self.probs = F.softmax_xent(z, labels)
        except IndexError:  # a kernel that checks the labels itself found one out of range
            _check_range(self.name, labels, z.shape[1])  # the LabelError, when the labels are the cause
            raise
        return loss

    def backward(self, F, gy, args, y):
        z, labels = args
        if F.tensors:
            return (softmax(z, axis=1) - one_hot(labels, z.shape[1], z.dtype)) * (gy / z.shape[0]), None
        return F.softmax_xent_grad(self.probs, labels, gy, z.shape[0]), None


def softmax_cross_entropy(logits: Tensor, labels) -> Tensor:
    """Softmax-with-loss: mean cross-entropy of integer class `labels` under softmax(`logits`)."""
    labels = _labels("softmax_cross_entropy", logits, labels, check_range=False)  # the forward checks the range
    if logits.shape[0] == 0:
        raise ShapeError("softmax_cross_entropy: the batch is empty (shape (0, C))")
    return apply2(SoftmaxCrossEntropy(), logits, labels)


class SquaredError(Node):
    """sum or mean of (pred - target)^2 as one node (a loss layer, like Softmax-with-loss):
    forward keeps d = pred - target; backward d pred = d * 2 gy / n (n = 1 for the sum), d target = -d pred."""

    __slots__ = ("diff", "scale")
    name = "mse_loss"

    @classmethod
    def for_reduction(cls, reduction: str, size: int) -> SquaredError:
        """The node of `reduction` ("sum" or "mean") over `size` elements (the mean of nothing is NaN)."""
        node = cls()
        node.scale = 2.0 if reduction == "sum" else 2.0 / size if size else math.nan
        return node

    def forward(self, xp, pred, target):
        diff = self.diff = pred - target
        total = array_fns(diff).sum_of_squares(diff)
        return total if self.scale == 2.0 else total * (self.scale / 2)  # "sum": no multiply by 1

    def backward(self, F, gy, args, y):
        diff = args[0] - args[1] if F.tensors else self.diff  # create_graph: rebuilt from Tensors, differentiable
        g = diff * (gy * self.scale)
        return g, (-g if 1 in self.takes_grad else None)


MSE_REDUCTIONS = ("mean", "sum", "none")


def mse_loss(pred: Tensor, target, reduction: str = "mean") -> Tensor:
    """(pred - target)^2 over every element: its mean (default), its sum, or itself (reduction="none").

    Shapes must match exactly; the devices too (checked by the op, as for every two-input op).
    "mean" and "sum" run as one node (forward: one BLAS dot on NumPy, a reduction kernel on CuPy;
    backward: one multiply).
    """
    if reduction not in MSE_REDUCTIONS:
        raise ValueError(f"mse_loss: reduction must be one of {MSE_REDUCTIONS}, got {reduction!r}")
    if type(pred) is not Tensor:
        require_tensor("mse_loss", pred)
    target = operand(target, pred)
    if type(target) is Tensor and target.data.shape != pred.data.shape:  # raw shapes: this runs every step
        raise ShapeError(f"mse_loss: pred has shape {pred.shape} but target has shape {target.shape}; they must match")
    if reduction == "none":
        diff = pred - target
        return diff * diff
    return apply2(SquaredError.for_reduction(reduction, pred.data.size), pred, target)


def hinge_loss(scores: Tensor, labels, margin: float = 1.0) -> Tensor:
    """cs231n multiclass SVM: mean over the batch of sum_{j != y} max(0, s_j - s_y + margin)."""
    labels = _labels("hinge_loss", scores, labels)
    hot = one_hot(labels, scores.shape[1], scores.dtype)
    correct = reduce_sum(scores * hot, axis=1, keepdims=True)
    margins = relu(scores - correct + margin) * (1 - hot)
    return reduce_sum(margins) / scores.shape[0]
