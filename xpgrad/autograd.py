"""The tape: grad mode, and the nodes ops record (the backward pass that walks them is
`xpgrad.backprop`).

Each op is a `Node` subclass holding its `forward` and `backward` side by side. Calling an op
makes one node (unless gradients are off), which refers strongly to its inputs and weakly to
its output, so a graph is freed by reference counting alone. Each node records its generation
(one more than its inputs'): the backward pass orders nodes by it.

A node's `backward(F, gy, args, y)` is written once against a small function table `F`: for a
plain backward, `F` works on raw arrays (fast, no graph); for `create_graph=True`, `F` is the
table of differentiable xpgrad ops and the arguments are Tensors, so the backward pass itself
is recorded and can be differentiated again.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref

import numpy as np

from . import backend, state
from .backend import _namespaces
from .errors import NonFiniteError, NotATensorError, XpgradError
from .op_errors import wrap_error
from .tensor import Tensor, is_floating

# ---- switches ---------------------------------------------------------------------------------
# Grad mode is per thread (`state.local`: a new thread starts with it on); debug mode has no
# context form and stays process-wide. Reading a threading.local on every op cost ~70 ns (2.74
# against 2.67 us per op on `xpgrad bench overhead`'s chain), so ops first read `_all_recording`, a process-wide
# summary that is True while no thread has recording off; only then do they read their own
# thread's mode. A thread turns its mode off (and the summary with it) before its own next op,
# and the summary is False whenever any thread's mode is off, so every thread sees its own mode.

_thread = state.local
_debug = os.environ.get("XPGRAD_DEBUG", "") not in ("", "0")
_modes_lock = threading.Lock()
_threads_not_recording = 0
_all_recording = True  # _threads_not_recording == 0


def _set_mode(thread, flag: bool) -> None:
    """Set `thread`'s (this thread's state.local) grad mode, keeping `_all_recording` true to it."""
    global _threads_not_recording, _all_recording
    if thread.grad_enabled is flag:
        return
    with _modes_lock:
        _threads_not_recording += -1 if flag else 1
        _all_recording = _threads_not_recording == 0
        thread.grad_enabled = flag


def is_grad_enabled() -> bool:
    """Whether ops called in this thread record nodes."""
    return _thread.grad_enabled


class set_grad_enabled(contextlib.ContextDecorator):
    """Context manager (or decorator) that turns recording on or off in this thread inside the block.

    A class, not a generator: entering and leaving costs 0.3 us instead of 1 us, which shows in
    a training loop that updates its weights under `no_grad()`. Other threads keep their own mode.
    """

    def __init__(self, flag: bool):
        self.flag = bool(flag)

    def __enter__(self):
        # The mode to restore goes on the thread's own stack, not on this object: one object (a
        # decorator) may be entered again inside, or by several threads at once.
        thread = _thread
        thread.grad_modes.append(thread.grad_enabled)
        _set_mode(thread, self.flag)

    def __exit__(self, *exc_info):
        thread = _thread
        _set_mode(thread, thread.grad_modes.pop())
        return False


def no_grad():
    """Context manager: ops inside (in this thread) record nothing."""
    return set_grad_enabled(False)


def is_debug() -> bool:
    """Whether XPGRAD_DEBUG checks are on."""
    return _debug


def set_debug(flag: bool) -> None:
    """Turn XPGRAD_DEBUG checks (NaN/Inf in every value and gradient) on or off."""
    global _debug
    _debug = bool(flag)


# ---- nodes ----------------------------------------------------------------------------------

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_site() -> str:
    """file:line of the first frame outside the xpgrad package (where the user called the op)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "<unknown>"


class Node:
    """One recorded op application. Subclasses define `name`, `forward` and `backward`.

    Attributes: `inputs` (Tensors or Python scalars, as given), `args` (their raw arrays),
    `takes_grad` (positions of the inputs that take a gradient, fixed when the op ran, e.g.
    ``(0,)`` for ``x * 2``: backward rules test ``0 in self.takes_grad``), `saved` (what
    backward needs beyond the inputs, e.g. the output array), `gen` (1 + the largest input
    generation). A node holds no reference to its output at all, so an unused output (and the
    graph only it kept alive) is freed at once by reference counting.
    """

    __slots__ = ("inputs", "args", "takes_grad", "saved", "gen", "__weakref__")
    name = "op"
    broadcasts = False  # True: input gradients are summed back to each input's shape
    saves_output = False  # True: the output array is kept in `saved` for backward
    array_op = None  # a two-input op whose forward is one Python operator (operator.add, ...) names it here

    def forward(self, xp, *args):
        if self.array_op is None:  # pragma: no cover - abstract
            raise NotImplementedError
        return self.array_op(*args)

    def backward(self, F, gy, args, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"<{self.name} node>"


# Rarely used per-node extras live beside the nodes, not in every node's slots:
_retained = weakref.WeakKeyDictionary()  # node -> weakref to its output, which keeps its .grad
_sites = weakref.WeakKeyDictionary()  # node -> "file:line" of the user's call (XPGRAD_DEBUG only)


def retain_grad(t: Tensor) -> None:
    """Keep the gradient of non-leaf `t` in its `.grad` during backward (Tensor.retain_grad)."""
    _retained[t._node] = weakref.ref(t)


# ---- temporaries ----------------------------------------------------------------------------
# An op may absorb the ops that made its input when every tensor it skips is a temporary (held
# by nothing but the call, as `X @ W` in `sigmoid(X @ W)`): nobody can then ask for that
# tensor's gradient, so the fused node changes the cost only (see `xpgrad.ops.fused`). CPython's
# reference counts tell, measured here on the running interpreter; if the measurement does not
# separate a temporary from a named value, nothing is ever fused.


def _refs_seen_by_callee(value) -> int:
    return sys.getrefcount(value)


class _MethodProbe:
    def refs(self) -> int:
        return sys.getrefcount(self)


def _calibrate() -> tuple:
    lone = _refs_seen_by_callee(object())  # an argument held by nothing but the callee's frame
    named = object()
    held = (named,)
    named_refs = _refs_seen_by_callee(named)  # held by a name (and a tuple slot) as well
    in_tuple_and_named = sys.getrefcount(held[0])
    del named
    in_tuple = sys.getrefcount(held[0])  # held by the tuple slot alone
    separated = (
        named_refs == lone + 2
        and _MethodProbe().refs() == lone
        and _refs_seen_by_callee(held[0]) == lone + 1
        and in_tuple_and_named == in_tuple + 1
    )
    return (lone, in_tuple - 1) if separated else (-1, -1)


# TEMPORARY_REFS: sys.getrefcount(x) of an argument x only the called function holds (the
# check must run in that function itself, before x is passed on). HELD_BY_SLOTS_REFS + k: the
# count of `sys.getrefcount(node.inputs[i])` for a tensor held by k slots of `inputs` alone.
TEMPORARY_REFS, HELD_BY_SLOTS_REFS = _calibrate()


def skippable(node: Node) -> bool:
    """A node the fusion may bypass: recording on, no debug sites, no retain_grad on its output."""
    return (_all_recording or _thread.grad_enabled) and not _debug and (not _retained.data or node not in _retained)


def link_fused(node: Node, data, inputs: tuple, args: tuple, takes_grad: tuple, gen: int) -> Tensor:
    """The output Tensor of a fused `node` over `inputs` (their raw `args`; its raw output `data`
    already computed), recorded with generation `gen` (that of the last node it replaces)."""
    return _link(node, _new_tensor(data), inputs, args, takes_grad, gen - 1)


def _new_tensor(data) -> Tensor:
    """A bare Tensor around `data`, no checks (0-d NumPy scalars become 0-d arrays)."""
    if type(data) is not np.ndarray and isinstance(data, np.generic):
        data = np.asarray(data)
    out = Tensor.__new__(Tensor)
    out.data = data
    out.grad = out.name = out._node = None
    out.requires_grad = False
    return out


def _link(node: Node, out: Tensor, inputs, args, takes_grad: tuple, gen: int) -> Tensor:
    """Record `node` as the creator of `out` (gen is the largest input generation)."""
    node.inputs = inputs
    node.args = args
    node.takes_grad = takes_grad
    node.gen = gen + 1
    node.saved = out.data if node.saves_output else None
    out._node = node
    out.requires_grad = True
    if _debug:
        _sites[node] = user_site()
        _check_finite(out.data, f"{node.name} forward output", _sites[node])
    return out


_FIRST, _SECOND, _BOTH = (0,), (1,), (0, 1)  # the usual `takes_grad` tuples, shared instead of rebuilt


def apply1(node: Node, x: Tensor) -> Tensor:
    """Run a one-input op."""
    if type(x) is not Tensor:
        require_tensor(node.name, x)
    a = x.data
    try:
        data = node.forward(_namespaces.get(type(a)) or backend.namespace_of(a), a)
    except XpgradError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise wrap_error(node, (a,), exc) from None
    out = _new_tensor(data)
    if (_all_recording or _thread.grad_enabled) and x.requires_grad:
        return _link(node, out, (x,), (a,), _FIRST, 0 if x._node is None else x._node.gen)
    if _debug:
        _check_finite(out.data, f"{node.name} forward output", user_site())
    return out


_SCALARS = (int, float, bool)


def require_tensor(op_name: str, x) -> None:
    """Raise NotATensorError, naming the op, unless `x` is a Tensor (or a subclass).

    Op entry points call it only when `type(x) is not Tensor`: a plain Tensor pays no call."""
    if not isinstance(x, Tensor):
        raise NotATensorError(
            f"{op_name}: expected a Tensor, got {type(x).__name__}; wrap arrays and lists with xg.tensor(...)"
        )


def require_tensors(op_name: str, tensors) -> None:
    """require_tensor for every item of a sequence of op inputs."""
    for t in tensors:
        if type(t) is not Tensor:
            require_tensor(op_name, t)


def constant_like(value, like: Tensor) -> Tensor:
    """`value` (an array, a list, a scalar) as a constant Tensor on `like`'s device; arrays keep
    their dtype, lists and scalars take `like`'s."""
    dtype = None if hasattr(value, "shape") else like.dtype
    return Tensor(backend.namespace_of(like.data).asarray(value, dtype=dtype, device=like.data.device))


def operand(value, like: Tensor):
    """A Tensor or Python scalar as given; anything array-like becomes a constant Tensor beside `like`."""
    if isinstance(value, (Tensor, *_SCALARS)):
        return value
    return constant_like(value, like)


def tensor_operands(op_name: str, a, b) -> tuple:
    """(a, b) as Tensors: a non-Tensor becomes a constant beside the other; one must be a Tensor."""
    if isinstance(a, Tensor):
        return a, (b if isinstance(b, Tensor) else constant_like(b, a))
    if isinstance(b, Tensor):
        return constant_like(a, b), b
    raise _no_tensor_operand(op_name, a, b)


def _no_tensor_operand(op_name: str, a, b) -> NotATensorError:
    return NotATensorError(
        f"{op_name}: expected at least one Tensor operand, got {type(a).__name__} and {type(b).__name__}"
    )


def apply2(node: Node, x, y) -> Tensor:
    """Run a two-input op on Tensors, Python scalars or array-likes (at least one Tensor).

    The hottest path of the engine, so it is written out inline: operators go straight to
    `node.array_op` (no namespace look-up, no Python frame), and `_link` is inlined.
    """
    if type(x) is Tensor:
        a = x.data
        if type(y) is Tensor:
            b = y.data
            if type(a) is not type(b) or type(a) is not np.ndarray:
                backend.check_same_place(node.name, a, b)
        else:
            if type(y) not in _SCALARS:
                y = operand(y, x)
            b = y.data if type(y) is Tensor else y
    elif type(y) is Tensor:
        if type(x) not in _SCALARS:
            x = operand(x, y)
        a, b = (x.data if type(x) is Tensor else x), y.data
    else:
        raise _no_tensor_operand(node.name, x, y)
    try:
        op = node.array_op
        if op is not None:
            data = op(a, b)
        else:
            like = a if type(x) is Tensor else b
            data = node.forward(_namespaces.get(type(like)) or backend.namespace_of(like), a, b)
    except XpgradError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise wrap_error(node, (a, b), exc) from None
    if type(data) is not np.ndarray and isinstance(data, np.generic):
        data = np.asarray(data)
    out = Tensor.__new__(Tensor)
    out.data = data
    out.grad = out.name = None
    if _all_recording or _thread.grad_enabled:
        want_x = type(x) is Tensor and x.requires_grad
        want_y = type(y) is Tensor and y.requires_grad
        if want_x or want_y:
            gen = x._node.gen if want_x and x._node is not None else 0
            if want_y and y._node is not None and y._node.gen > gen:
                gen = y._node.gen
            takes_grad = (_BOTH if want_y else _FIRST) if want_x else _SECOND
            if _debug:
                out._node = None
                return _link(node, out, (x, y), (a, b), takes_grad, gen)
            node.inputs = (x, y)  # _link, inlined on the hottest path
            node.args = (a, b)
            node.takes_grad = takes_grad
            node.gen = gen + 1
            node.saved = data if node.saves_output else None
            out._node = node
            out.requires_grad = True
            return out
    out._node = None
    out.requires_grad = False
    if _debug:
        _check_finite(data, f"{node.name} forward output", user_site())
    return out


def apply_n(node: Node, inputs) -> Tensor:
    """Run an op over any number of Tensor inputs (all on one device)."""
    inputs = tuple(inputs)
    for t in inputs:  # require_tensors, inlined: this runs on every layer call
        if type(t) is not Tensor:
            require_tensor(node.name, t)
    args = tuple([t.data for t in inputs])
    first = args[0]
    kind = type(first)
    for other in args:
        if type(other) is not kind or kind is not np.ndarray:
            backend.check_same_place(node.name, first, other)
    try:
        data = node.forward(_namespaces.get(kind) or backend.namespace_of(first), *args)
    except XpgradError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise wrap_error(node, args, exc) from None
    out = _new_tensor(data)
    if _all_recording or _thread.grad_enabled:
        takes_grad, gen = [], 0
        for i, t in enumerate(inputs):
            if t.requires_grad:
                takes_grad.append(i)
                if t._node is not None and t._node.gen > gen:
                    gen = t._node.gen
        if takes_grad:
            return _link(node, out, inputs, args, tuple(takes_grad), gen)
    if _debug:
        _check_finite(out.data, f"{node.name} forward output", user_site())
    return out


# ---- helpers shared by every backward rule ----------------------------------------------------


def unbroadcast(F, g, shape):
    """Sum gradient `g` down to `shape`, undoing broadcasting (the one helper every op uses)."""
    gshape = tuple(g.shape)
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and gshape[lead + i] != 1)
    if axes:
        g = F.sum(g, axis=axes, keepdims=True)
    return F.reshape(g, shape)


def _check_finite(data, what: str, site) -> None:
    if not is_floating(data.dtype):
        return
    xp = backend.namespace_of(data)
    if not bool(xp.all(xp.isfinite(data))):
        where = f" (op created at {site})" if site else ""
        raise NonFiniteError(f"XPGRAD_DEBUG: {what} contains NaN or Inf{where}")


_fns_by_namespace: dict = {}
_fns_by_type: dict = {}


def array_fns(g):
    """The array-level function table (fns.ArrayFns) for the namespace of array `g` (cached by type)."""
    fns = _fns_by_type.get(type(g))
    if fns is None:
        xp = backend.namespace_of(g)
        fns = _fns_by_namespace.get(xp)
        if fns is None:
            from .fns import array_fns_for

            fns = _fns_by_namespace[xp] = array_fns_for(xp)
        _fns_by_type[type(g)] = fns
    return fns


def register_array_type(array_type: type, xp, fns) -> None:
    """Route arrays of `array_type` (e.g. xpgrad.capture's TracedArray, an ndarray subclass) to
    namespace `xp` and function table `fns` (an fns.ArrayFns)."""
    _namespaces[array_type] = xp
    _fns_by_type[array_type] = fns
