"""What a step can reach: the tensors, modules, optimizers and schedulers behind fn's closure.

A captured step reads and updates state it is not given as arguments (a model's parameters,
an optimizer's buffers). `reachable(fn, args)` finds it the way a reader of fn would: its
closure cells, the globals its code (and the code of Python functions it names) refers to, a
bound method's `self`, a `functools.partial`'s arguments, the non-tensor arguments; through
lists, tuples, dicts, `nn.Module` attributes, an optimizer's parameters and a scheduler's
optimizer. The Python numbers, strings and flags found on that path are guarded: a replay
whose closure or globals hold another value captures again (jax.jit's stale-static trap).
"""

from __future__ import annotations

import functools
import os
import types

from ..tensor import Tensor

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MAX_DEPTH = 4
_SCALARS = (int, float, bool, str, type(None))


class Reach:
    """Tensors (in order found), optimizers, schedulers, modules, and scalar guards."""

    def __init__(self):
        self.tensors: list = []
        self.optimizers: list = []
        self.schedulers: list = []
        self.modules: list = []
        self.guards: list = []  # (kind, holder, key, value): a closure cell or a globals entry
        self._seen: set = set()

    def add_tensor(self, t) -> None:
        if id(t) not in self._seen:
            self._seen.add(id(t))
            self.tensors.append(t)


def reachable(fn, args=(), kwargs=None, extra=()) -> Reach:
    """Everything fn can read or update beyond its tensor arguments (and the `extra` tensors an
    earlier capture found it updates)."""
    from ..nn import Module
    from ..optim import LRScheduler, Optimizer

    reach = Reach()
    visited: set = set()

    def visit(obj, depth):
        if depth > _MAX_DEPTH or id(obj) in visited:
            return
        if isinstance(obj, Tensor):
            reach.add_tensor(obj)
            return
        if isinstance(obj, (*_SCALARS, type, types.ModuleType)):
            return
        visited.add(id(obj))
        if isinstance(obj, Module):
            reach.modules.append(obj)
            for name, value in vars(obj).items():
                if isinstance(value, (bool, float)):  # training, dropout's p: a branch taken on them is baked in
                    reach.guards.append(("attr", obj, name, value))
                elif isinstance(value, _SCALARS):
                    continue
                else:
                    visit(value, depth + 1)
        elif isinstance(obj, Optimizer):
            reach.optimizers.append(obj)
            for p in obj.params:
                reach.add_tensor(p)
        elif isinstance(obj, LRScheduler):
            reach.schedulers.append(obj)
            visit(obj.optimizer, depth + 1)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for value in obj:
                visit(value, depth + 1)
        elif isinstance(obj, dict):
            for value in obj.values():
                visit(value, depth + 1)
        elif isinstance(obj, functools.partial):
            visit(obj.func, depth + 1)
            visit(obj.args, depth + 1)
            visit(obj.keywords, depth + 1)
        elif isinstance(obj, types.MethodType):
            visit(obj.__self__, depth + 1)
            visit(obj.__func__, depth + 1)
        elif isinstance(obj, types.FunctionType):
            if not obj.__code__.co_filename.startswith(_PACKAGE_DIR):  # xpgrad's own globals are not the user's state
                visit_function(obj, depth)
        elif hasattr(obj, "__dict__") and not callable(obj):
            for value in vars(obj).values():
                visit(value, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, types.BuiltinFunctionType):
            visit(vars(obj), depth + 1)  # a callable object (a model class with __call__)
            visit(type(obj).__call__, depth + 1)

    def visit_function(f, depth):
        code = f.__code__
        for name, cell in zip(code.co_freevars, f.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell (a name assigned later)
                continue
            if isinstance(value, _SCALARS):
                reach.guards.append(("cell", cell, name, value))
            else:
                visit(value, depth + 1)
        for name in _global_names(code):
            if name in f.__globals__:
                value = f.__globals__[name]
                if isinstance(value, _SCALARS):
                    reach.guards.append(("global", f.__globals__, name, value))
                else:
                    visit(value, depth + 1)
        if f.__defaults__:
            visit(f.__defaults__, depth + 1)

    if isinstance(fn, types.FunctionType):
        visited.add(id(fn))
        visit_function(fn, 0)  # fn itself, wherever it is defined
    else:
        visit(fn, 0)
    for t in extra:
        reach.add_tensor(t)
    for a in args:
        if not isinstance(a, Tensor):
            visit(a, 1)
    for a in (kwargs or {}).values():
        if not isinstance(a, Tensor):
            visit(a, 1)
    return reach


def _global_names(code) -> list:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # lambdas, comprehensions, nested functions
            names.extend(_global_names(const))
    return names
