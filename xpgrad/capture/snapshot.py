"""Copies of everything a step can change, for check mode: restore one, compare two."""

from __future__ import annotations

import numpy as np

from .. import creation
from ..tensor import Tensor


def _copy(a):
    return None if a is None else np.array(a, copy=True)


class Snapshot:
    """The values of the reached tensors (data and grad), the optimizers' lr and state, the
    schedulers' step counts and the random generator, taken now."""

    def __init__(self, reach, args=()):
        tensors = list(reach.tensors) + [a for a in args if isinstance(a, Tensor) and a.requires_grad]
        self.tensors = [
            (
                t,
                t.data,
                _copy(t.data),
                t.grad,
                None if t.grad is None else t.grad.data,
                None if t.grad is None else _copy(t.grad.data),
            )
            for t in tensors
        ]
        self.optimizers = [
            (
                opt,
                opt.lr,
                [{k: (v, _copy(v) if isinstance(v, np.ndarray) else v) for k, v in st.items()} for st in opt.state],
            )
            for opt in reach.optimizers
        ]
        self.schedulers = [(s, s.last_step) for s in reach.schedulers]
        self.generator = creation.generator()
        self.generator_state = self.generator.bit_generator.state

    def restore(self) -> None:
        """Put every value back (into the same array objects, which replays refer to)."""
        for t, data, data_copy, grad, grad_data, grad_copy in self.tensors:
            t.data = data
            np.copyto(data, data_copy)
            t.grad = grad
            if grad is not None:
                grad.data = grad_data
                np.copyto(grad_data, grad_copy)
        for opt, lr, states in self.optimizers:
            opt.lr = lr
            for st, saved in zip(opt.state, states):
                st.clear()
                for k, (obj, value) in saved.items():
                    if isinstance(obj, np.ndarray):
                        np.copyto(obj, value)
                    st[k] = obj
        for s, last_step in self.schedulers:
            s.last_step = last_step
        creation._rng = self.generator
        self.generator.bit_generator.state = self.generator_state

    def differences(self, other: Snapshot) -> list:
        """Names of the values that differ between two snapshots of the same reach."""
        found = []
        for k, (mine, theirs) in enumerate(zip(self.tensors, other.tensors)):
            name = mine[0].name or f"tensor {k} {tuple(mine[2].shape)}"
            if not _same(mine[2], theirs[2]):
                found.append(f"{name}.data")
            if (mine[5] is None) != (theirs[5] is None) or (mine[5] is not None and not _same(mine[5], theirs[5])):
                found.append(f"{name}.grad")
        for k, (mine, theirs) in enumerate(zip(self.optimizers, other.optimizers)):
            if mine[1] != theirs[1]:
                found.append(f"optimizer {k} lr")
            for i, (a, b) in enumerate(zip(mine[2], theirs[2])):
                for key in a.keys() | b.keys():
                    va, vb = a.get(key, (None, None))[1], b.get(key, (None, None))[1]
                    if not _same(va, vb):
                        found.append(f"optimizer {k} state[{i}][{key!r}]")
        if self.generator.bit_generator.state != other.generator.bit_generator.state:
            found.append("the random generator")
        return found


def _same(a, b) -> bool:
    if a is None or b is None or not isinstance(a, np.ndarray):
        return a is b or a == b
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
