"""Gradient checking against central finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import autograd, backend, backprop
from .tensor import Tensor


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with finite differences; the message names the worst element."""


def _numeric(fn: Callable[..., Tensor], inputs: list[Any], index: int, weights: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of sum(fn(*inputs) * weights) with respect to inputs[index]."""
    target = inputs[index]
    host = target.numpy().astype(np.float64, copy=True)
    grad: np.ndarray = np.zeros_like(host)
    xp = backend.namespace_of(target.data)
    flat, gflat = host.reshape(-1), grad.reshape(-1)

    def value() -> float:
        target.data = xp.asarray(host, dtype=target.dtype, device=target.data.device)
        with autograd.no_grad():
            out = fn(*inputs)
        return float(np.sum(out.numpy().astype(np.float64) * weights))

    original = target.data
    try:
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + eps
            plus = value()
            flat[i] = saved - eps
            minus = value()
            flat[i] = saved
            gflat[i] = (plus - minus) / (2 * eps)
    finally:
        target.data = original
    return grad


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
) -> bool:
    """Check d fn / d inputs against central finite differences; raise GradcheckError if wrong.

    `fn(*inputs)` returns a Tensor; its output is contracted with fixed random weights, so the
    whole Jacobian is exercised by one backward pass. Use float64 inputs for tight tolerances
    (defaults: eps 1e-6, atol 1e-5, rtol 1e-4; float32 gets eps 1e-3, atol 1e-2, rtol 1e-2).
    Only inputs with requires_grad=True are checked. Returns True when every gradient agrees.
    """
    args = list(inputs)
    checked = [i for i, t in enumerate(args) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; pass tensors made with requires_grad=True")
    wide = all(str(args[i].dtype).endswith("float64") for i in checked)
    eps = eps if eps is not None else (1e-6 if wide else 1e-3)
    atol = atol if atol is not None else (1e-5 if wide else 1e-2)
    rtol = rtol if rtol is not None else (1e-4 if wide else 1e-2)

    out = fn(*args)
    weights = np.random.default_rng(seed).uniform(0.5, 1.5, size=out.shape)
    xp = backend.namespace_of(out.data)
    w = xp.asarray(weights, dtype=out.dtype, device=out.data.device)
    analytic = backprop.grad([out], [args[i] for i in checked], grad_outputs=[Tensor(w)])
    for i, g in zip(checked, analytic):
        numeric = _numeric(fn, args, i, weights, eps)
        got = g.numpy().astype(np.float64)
        if got.shape != numeric.shape:
            raise GradcheckError(f"gradcheck: input {i}: gradient shape {got.shape} != input shape {numeric.shape}")
        err = np.abs(got - numeric) - (atol + rtol * np.abs(numeric))
        if err.size and err.max() > 0:
            worst = np.unravel_index(int(np.argmax(err)), err.shape)
            raise GradcheckError(
                f"gradcheck: input {i} (shape {numeric.shape}) gradient wrong at index {tuple(int(k) for k in worst)}: "
                f"analytic {got[worst]:.8g}, numeric {numeric[worst]:.8g} (atol {atol}, rtol {rtol})"
            )
    return True
