"""Optimizers (SGD with momentum / Nesterov, Adam) and learning-rate schedules (StepLR, CosineLR).

Each optimizer's arithmetic lives in one function on raw arrays, `sgd_update` and `adam_update`,
which changes the parameter and its state buffers in place on their own device (NumPy, CuPy or
any array-API library). The fused kernels of `xpgrad.kernels` (same names and signatures) replace
them for float32/float64 NumPy and CuPy parameters of any size when the kernels are on: one pass
instead of several, and per call no dearer than NumPy's single `p -= lr * g` even on a (2,) bias.

    opt = optim.Adam(model.parameters(), lr=1e-3)
    for x, y in loader:
        loss = xg.softmax_cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from . import backend, kernels, state
from .errors import XpgradError
from .fns import kernels_enabled
from .fns_cupy import device_id, outside_graph
from .tensor import Tensor, is_floating


class OptimizerStateError(XpgradError, ValueError):
    """load_state_dict() was given the state of another optimizer or other parameters."""


# ---- the updates on raw arrays ---------------------------------------------------------------


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov) -> None:
    """One SGD step in place (PyTorch convention, no dampening), on the arrays:

        g = grad + weight_decay * param
        velocity = momentum * velocity + g           (when momentum != 0; velocity is None otherwise)
        step = g + momentum * velocity  (nesterov)   or   velocity   or   g   (no momentum)
        param -= lr * step

    All in place.
    """
    g = grad + weight_decay * param if weight_decay else grad
    if velocity is not None:
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    param -= lr * g


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step) -> None:
    """One Adam step in place (Kingma & Ba, as PyTorch's Adam; `step` counts from 1).

        g = grad + weight_decay * param
        m = beta1 m + (1 - beta1) g ;  v = beta2 v + (1 - beta2) g^2
        param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)

    m, v and param are updated in place.
    """
    xp = backend.namespace_of(param)
    g = grad + weight_decay * param if weight_decay else grad
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    denom = xp.sqrt(v)
    denom /= math.sqrt(1.0 - beta2**step)
    denom += eps
    param -= (lr / (1.0 - beta1**step)) * (m / denom)


def _fused_kernels(param, grad):
    """The kernels with the fused updates for these arrays (xpgrad.kernels for NumPy,
    xpgrad.kernels.cuda for CuPy) when they apply, else None."""
    if type(param) is np.ndarray:
        module = kernels
    elif backend.is_cupy(param):
        module = kernels.cuda
    else:
        return None  # other array-API libraries: the portable update
    dtype = param.dtype
    if type(grad) is not type(param) or dtype.char not in "fd" or grad.dtype != dtype or not kernels_enabled():
        return None
    return module


def _device_count(like, value: int):
    """An int64 (1,) array holding `value` on like's device (a fill kernel, no copy)."""
    return backend.namespace_of(like).full(1, value, dtype=np.int64)


# ---- optimizers ------------------------------------------------------------------------------


def _check_number(owner: str, name: str, value, low=0.0, high=None, low_open=False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}") from None
    bad = not math.isfinite(value) or value < low or (low_open and value == low) or (high is not None and value >= high)
    if bad:
        interval = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")
    return value


class Optimizer:
    """Holds the parameters (one group), the learning rate `lr` and per-parameter state buffers."""

    _hyper: tuple = ()  # names of the JSON-able hyperparameters saved in state_dict
    _buffers: tuple = ()  # names of the per-parameter state arrays

    def __init__(self, params, lr):
        name = type(self).__name__
        params = list(params)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameter {i} is a {type(p).__name__}, not an xpgrad Tensor")
            if not p.requires_grad or not p.is_leaf or not is_floating(p.dtype):
                raise ValueError(
                    f"{name}: parameter {i} (shape {p.shape}, dtype {p.dtype}) must be a floating-point leaf "
                    f"tensor with requires_grad=True"
                )
            if id(p) in seen:
                raise ValueError(f"{name}: parameter {i} (shape {p.shape}) appears more than once")
            seen.add(id(p))
        self.params: list[Tensor] = params
        self.lr = _check_number(name, "lr", lr, low_open=True)
        self.state: list[dict] = [{} for _ in params]
        self._lr_device: dict = {}  # CuPy: device -> [float64 (1,) array the kernels read lr from, the lr it holds]

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (the next backward writes a fresh one)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient (under xg.capture: recorded as one step that
        runs again on every replay, so the live `lr` and step counts take effect)."""
        recorder = state.local.capture
        if recorder is None:
            self._update()
        elif getattr(recorder, "on_device", False) and self._on_device():
            # a CUDA graph: the kernels go into it and read lr and the step counts from device
            # memory; a piece that runs first on every replay advances the host's step counts and
            # writes the live lr into its device scalar (a fill kernel: no copy, no wait). The
            # other hyperparameters (momentum, nesterov, weight_decay, betas, eps) are kernel
            # arguments, passed by value: the graph keeps those of the capture run, so changing
            # them between replays has no effect (only lr and the step counts are read live)
            counted = [st for p, st in zip(self.params, self.state) if p.grad is not None]

            def count_and_sync_lr() -> None:
                for st in counted:
                    st["step"] = st.get("step", 0) + 1
                for entry in self._lr_device.values():
                    self._fill_lr(entry)

            recorder.host(count_and_sync_lr)
            self._update(count=False)
            # the graph holds the state buffers by address: a load_state_dict replaces them (and the
            # dicts the piece above counts in), so the step is captured again
            states = self.state
            buffers = [(st, k, v) for st in states for k, v in st.items() if k != "step"]
            recorder.check(lambda: self.state is states and all(st.get(k) is v for st, k, v in buffers))
        else:
            recorder.python_step(f"{type(self).__name__}.step", self._update, self.params, self._replay_update)

    def _update(self, count: bool = True) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_device(self) -> bool:
        """Every update of this step takes the CUDA kernels (CuPy parameters, kernels on)."""
        return all(
            p.grad is None or (backend.is_cupy(p.data) and _fused_kernels(p.data, p.grad.data) is not None)
            for p in self.params
        )

    def _device_lr(self, param):
        """lr as a float64 (1,) array on param's device, which the CUDA kernels read (so a captured
        graph sees schedule changes); refilled by a fill kernel when `lr` has changed."""
        key = device_id(param)
        entry = self._lr_device.get(key)
        if entry is None:
            xp = backend.namespace_of(param)
            entry = self._lr_device[key] = [outside_graph(lambda: xp.full(1, self.lr, dtype=np.float64)), self.lr]
        self._fill_lr(entry)
        return entry[0]

    def _fill_lr(self, entry: list) -> None:
        if entry[1] != self.lr:
            entry[0].fill(self.lr)
            entry[1] = self.lr

    def _replay_update(self):
        """For xg.capture: `_update` as a function bound to the parameters' present arrays, with
        the per-call checks done once here and the same kernel calls (bit for bit); lr, the
        hyperparameters and the step counts are read on each call. None where it does not apply
        (then replays call `_update`)."""
        return

    def _ready_items(self, names: tuple):
        """[(tensor, state dict)] of the parameters with a gradient, when every update takes the
        CPU kernels' unchecked path (the state arrays `names` exist); else None."""
        items = []
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            param, grad = p.data, p.grad.data
            arrays = [param, grad] + [st.get(n) for n in names]
            if (
                _fused_kernels(param, grad) is not kernels
                or not param.ndim
                or "step" not in st
                or any(a is None or a.shape != param.shape for a in arrays)
                or not kernels.ready(*arrays)
            ):
                return None
            items.append((p, st))
        return items

    def _zeros(self, p: Tensor):
        xp = backend.namespace_of(p.data)
        return outside_graph(lambda: xp.zeros_like(p.data))

    def hyperparameters(self) -> dict:
        return {"lr": self.lr, **{k: getattr(self, k) for k in self._hyper}}

    def state_dict(self) -> dict:
        """{"type", "hyper" (JSON-able), "steps" (per parameter), "buffers" {"<index>.<name>": NumPy copy}}."""
        from .nn import to_host

        buffers = {}
        steps = []
        for i, st in enumerate(self.state):
            steps.append(int(st.get("step", 0)))
            for key in self._buffers:
                if st.get(key) is not None:
                    buffers[f"{i}.{key}"] = to_host(st[key])
        return {"type": type(self).__name__, "hyper": self.hyperparameters(), "steps": steps, "buffers": buffers}

    def load_state_dict(self, state: dict) -> None:
        """Restore hyperparameters and buffers saved by `state_dict` (checked before anything changes)."""
        from .nn import to_place

        name = type(self).__name__
        if state.get("type") != name:
            raise OptimizerStateError(f"{name}.load_state_dict: the state is of optimizer {state.get('type')!r}")
        steps = list(state.get("steps", []))
        if len(steps) != len(self.params):
            raise OptimizerStateError(
                f"{name}.load_state_dict: the state holds {len(steps)} parameters, this optimizer {len(self.params)}"
            )
        buffers = state.get("buffers", {})
        for key, value in buffers.items():
            index, _, buf = key.partition(".")
            if not index.isdigit() or int(index) >= len(self.params) or buf not in self._buffers:
                raise OptimizerStateError(f"{name}.load_state_dict: unexpected state buffer {key!r}")
            p = self.params[int(index)]
            if tuple(np.shape(value)) != p.shape:
                raise OptimizerStateError(
                    f"{name}.load_state_dict: buffer {key!r} has shape {tuple(np.shape(value))} but parameter "
                    f"{index} has shape {p.shape}"
                )
        hyper = dict(state.get("hyper", {}))
        self.lr = float(hyper.pop("lr", self.lr))
        for k, v in hyper.items():
            if k in self._hyper:
                setattr(self, k, tuple(v) if isinstance(v, list) else v)
        self.state = [{} for _ in self.params]
        for i, n in enumerate(steps):
            if n:
                self.state[i]["step"] = int(n)
        for key, value in buffers.items():
            index, _, buf = key.partition(".")
            p = self.params[int(index)]
            self.state[int(index)][buf] = to_place(value, p.data)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay."""

    _hyper = ("momentum", "nesterov", "weight_decay")
    _buffers = ("velocity",)

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum = _check_number("SGD", "momentum", momentum, high=1.0)
        self.weight_decay = _check_number("SGD", "weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")

    def _update(self, count: bool = True) -> None:
        lr, momentum, wd, nesterov = self.lr, self.momentum, self.weight_decay, self.nesterov
        for p, st in zip(self.params, self.state):
            grad = p.grad
            if grad is None:
                continue
            param, grad = p.data, grad.data
            velocity = None
            if momentum:
                velocity = st.get("velocity")
                if velocity is None:
                    velocity = st["velocity"] = self._zeros(p)
            if count:
                st["step"] = st.get("step", 0) + 1
            k = _fused_kernels(param, grad)
            if k is None or k is kernels:
                (sgd_update if k is None else k.sgd_update)(param, grad, velocity, lr, momentum, wd, nesterov)
            else:  # CUDA: lr read from device memory
                k.sgd_update_device(param, grad, velocity, self._device_lr(param), momentum, wd, nesterov)

    def _replay_update(self):
        items = self._ready_items(("velocity",) if self.momentum else ())
        if items is None:
            return None
        run = kernels.unchecked.sgd_update

        def update():
            lr, momentum, wd, nesterov = self.lr, self.momentum, self.weight_decay, bool(self.nesterov)
            for p, st in items:
                st["step"] += 1
                run(p.grad.data, st["velocity"] if momentum else None, p.data, lr, momentum, wd, nesterov)

        return update


class Adam(Optimizer):
    """Adam with bias correction and optional L2 weight decay (added to the gradient)."""

    _hyper = ("betas", "eps", "weight_decay")
    _buffers = ("m", "v")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (_check_number("Adam", "beta1", b1, high=1.0), _check_number("Adam", "beta2", b2, high=1.0))
        self.eps = _check_number("Adam", "eps", eps)
        self.weight_decay = _check_number("Adam", "weight_decay", weight_decay)

    def _update(self, count: bool = True) -> None:
        lr, (b1, b2), eps, wd = self.lr, self.betas, self.eps, self.weight_decay
        for p, st in zip(self.params, self.state):
            grad = p.grad
            if grad is None:
                continue
            param, grad = p.data, grad.data
            m = st.get("m")
            if m is None:
                m = st["m"] = self._zeros(p)
                st["v"] = self._zeros(p)
            n = st["step"] = st.get("step", 0) + count
            k = _fused_kernels(param, grad)
            if k is None or k is kernels:
                (adam_update if k is None else k.adam_update)(param, grad, m, st["v"], lr, b1, b2, eps, wd, n)
                continue
            # CUDA: lr and the step count read from device memory; the kernel advances the count
            step = st.get("device_step")
            if step is None:
                step = st["device_step"] = outside_graph(partial(_device_count, param, n - 1))
            k.adam_update_device(param, grad, m, st["v"], self._device_lr(param), step, b1, b2, eps, wd)

    def _replay_update(self):
        items = self._ready_items(("m", "v"))
        if items is None:
            return None
        run, scalars = kernels.unchecked.adam_update, kernels.adam_scalars

        def update():
            lr, (b1, b2), eps, wd = self.lr, self.betas, self.eps, self.weight_decay
            for p, st in items:
                n = st["step"] = st["step"] + 1
                run(p.grad.data, st["m"], st["v"], p.data, *scalars(lr, b1, b2, eps, wd, n))

        return update


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


# ---- learning-rate schedules -----------------------------------------------------------------


class LRScheduler:
    """Sets `optimizer.lr` from `base_lr` and the number of `step()` calls (call it once per epoch
    or once per batch, as `step_size` / `total_steps` were counted)."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an xpgrad Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_step = 0

    def lr_at(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> float:
        """Advance one step and set the optimizer's learning rate; returns it (under xg.capture:
        recorded as a step that runs again on every replay)."""
        recorder = state.local.capture
        if recorder is None:
            self._advance()
        else:
            recorder.python_step(f"{type(self).__name__}.step", self._advance, [])
        return self.optimizer.lr

    def _advance(self) -> None:
        self.last_step += 1
        self.optimizer.lr = self.lr_at(self.last_step)

    def state_dict(self) -> dict:
        return {"type": type(self).__name__, "base_lr": self.base_lr, "last_step": self.last_step}

    def load_state_dict(self, state: dict) -> None:
        if state.get("type") != type(self).__name__:
            raise OptimizerStateError(f"{type(self).__name__}.load_state_dict: the state is of {state.get('type')!r}")
        self.base_lr = float(state["base_lr"])
        self.last_step = int(state["last_step"])
        self.optimizer.lr = self.lr_at(self.last_step)


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (steps // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size = step_size
        self.gamma = _check_number("StepLR", "gamma", gamma, low_open=True)

    def lr_at(self, step: int) -> float:
        return self.base_lr * self.gamma ** (step // self.step_size)


class CosineLR(LRScheduler):
    """Cosine annealing from base_lr to min_lr over `total_steps` steps, then min_lr:
    lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * min(step, total_steps) / total_steps)) / 2."""

    def __init__(self, optimizer: Optimizer, total_steps: int, min_lr: float = 0.0):
        super().__init__(optimizer)
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"CosineLR: total_steps must be a positive int, got {total_steps!r}")
        self.total_steps = total_steps
        self.min_lr = _check_number("CosineLR", "min_lr", min_lr)
        if self.min_lr > self.base_lr:
            raise ValueError(f"CosineLR: min_lr {self.min_lr} exceeds the optimizer's lr {self.base_lr}")

    def lr_at(self, step: int) -> float:
        t = min(step, self.total_steps) / self.total_steps
        return self.min_lr + (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t)) / 2.0


__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "CosineLR",
    "LRScheduler",
    "Optimizer",
    "OptimizerStateError",
    "StepLR",
    "adam_update",
    "sgd_update",
]
