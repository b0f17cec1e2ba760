"""From a recorded run to a replay: buffers planned once, then one generated Python function.

Every slot is either *static* (one array for all replays: an input buffer, a state or external
array guarded by identity, a temp whose op can write into a given buffer, a view of a static
slot) or *rebound* (a local name assigned on each replay: a gradient read from `.grad`, the
result of a call that allocates its own output). The replay is straight-line code generated
from the ops, one line per array call, with every static operand bound as a global of the
function: no per-op Python beyond the call itself, no node, no Tensor, and no allocation for
static slots.

Each temp starts with the array the capture run made for it as its replay buffer (views of
static slots are the capture run's views, made once). Then temps share buffers by liveness: two
temps of one shape and dtype whose live ranges (first to last op that uses them or a view of
them) do not overlap get one array, unless one escapes the replay (returned, or left in a
tensor's `.grad` / `.data`) or holds a constant. Ops whose effects reach nothing kept (fn's
result, a tensor's attributes, a state or external array, the random generator) are dropped,
and ops that make constants only are left computed in their buffers.
"""

from __future__ import annotations

import numpy as np

from ..autograd import _new_tensor
from ..errors import CaptureError
from . import rewrite
from .trace import _FILLS, _OUT_FUNCTIONS, Ref, _leaves

MISS = object()  # what a replay returns when a guard fails: capture again

_SIMPLE = (int, float, bool, str, type(None))
_DEFAULTS = {"dtype": None, "keepdims": False, "where": True}  # keyword values a ufunc call takes anyway


def _as_array(value):
    """A call's result as an array (a NumPy scalar becomes a 0-d array, as in the capture run)."""
    return np.asarray(value) if isinstance(value, np.generic) else value


def copy_out(array):
    """A returned tensor's value, copied out of the replay's buffers (never overwritten later)."""
    return _new_tensor(array.copy())


class StateEntry:
    """A tensor whose attributes the step reads or sets: `expr` names it in the replay."""

    __slots__ = ("end_data", "end_grad", "end_grad_same", "expr", "grad_was_none", "start_data", "start_grad", "tensor")

    def __init__(self, tensor, expr, grad_was_none: bool):
        self.tensor = tensor
        self.expr = expr  # None: a global of the replay
        self.start_data = self.start_grad = self.end_data = self.end_grad = None
        self.grad_was_none = grad_was_none
        self.end_grad_same = False


class Plan:
    """The compiled replay of one recorded run."""

    def __init__(self, recorder, inputs, entries, result_template, guards):
        self.recorder = recorder
        self.slots = recorder.slots
        self.ops = recorder.ops
        self.inputs = inputs  # [(argument position, slot index or None, is_tensor)]
        self.entries = entries
        self.result_template = result_template
        self.guards = guards  # [(expression on globals, expected value)]
        self.globals = {"MISS": MISS, "_arr": _as_array, "_out": copy_out, "_tensor": _new_tensor, "copyto": np.copyto}
        self._names = {}
        self.rebound = set()
        self.source = ""
        self.replay = None
        self.shared = 0  # temps that took another temp's array
        for entry in entries:
            if entry.expr is None:
                entry.expr = self.const(entry.tensor, "T")

    # ---- names ----------------------------------------------------------------------------
    def const(self, value, prefix="c") -> str:
        """A global name bound to `value` (one per object)."""
        key = id(value)
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"{prefix}{len(self._names)}"
            self.globals[name] = value
        return name

    def name(self, ref: Ref) -> str:
        slot = self.slots[ref.index]
        if ref.index in self.rebound:
            return f"r{ref.index}"
        key = ("slot", ref.index)
        if key not in self._names:
            self._names[key] = f"g{ref.index}"
            self.globals[f"g{ref.index}"] = slot.array
        return self._names[key]

    def expr(self, value) -> str:
        if type(value) is Ref:
            return self.name(value)
        if type(value) is tuple:
            return "(" + "".join(self.expr(v) + ", " for v in value) + ")"
        if type(value) is list:
            return "[" + ", ".join(self.expr(v) for v in value) + "]"
        if type(value) in _SIMPLE and (type(value) is not float or np.isfinite(value)):
            return repr(value)
        return self.const(value)

    def call(self, fn, args, kwargs, extra="") -> str:
        parts = [self.expr(a) for a in args] + [
            f"{k}={self.expr(v)}" for k, v in kwargs.items() if not (k in _DEFAULTS and _DEFAULTS[k] is v)
        ]
        if extra:
            parts.append(extra)
        return f"{self.const(fn, 'f')}({', '.join(parts)})"

    # ---- which slots are static -------------------------------------------------------------
    def _static_form(self, op) -> bool:
        """Whether `op` can write its one new temp into a given buffer on replay."""
        if op.kind == "ufunc":
            return "out" not in op.kwargs
        if op.kind == "function":
            fn = op.fn
            return (
                fn in _FILLS
                or fn is np.full_like
                or fn is np.empty_like
                or fn is np.vdot
                or (fn is np.where and len(op.args) == 3 and not op.kwargs)
                or (fn in _OUT_FUNCTIONS and "out" not in op.kwargs)
            )
        if op.kind == "method":
            return op.fn in (np.ndarray.astype, np.ndarray.copy, np.ndarray.dot) and "out" not in op.kwargs
        return op.kind == "rng"

    def classify(self) -> None:
        for entry in self.entries:
            if entry.start_grad is not None:
                self.rebound.add(entry.start_grad.index)  # read from .grad on each replay
            if (
                entry.start_data is not None
                and entry.end_data is not None
                and entry.end_data.index != entry.start_data.index
            ):
                self.rebound.add(entry.start_data.index)  # fn rebinds .data: read it again on each replay
        for op in self.ops:
            for path, index in op.results:
                slot = self.slots[index]
                if slot.kind == "view":
                    if slot.base.index in self.rebound or self._base_rebound(slot):
                        if slot.derivation is None:
                            raise CaptureError(
                                f"capture: a view made outside the recorded calls ({op.site}) looks "
                                f"into an array read afresh on each call"
                            )
                        self.rebound.add(index)
                elif not (self._static_form(op) and (path == () or op.kind == "ufunc")):
                    self.rebound.add(index)
        for slot in self.slots:  # views registered without a producing op (found through bases)
            if slot.kind == "view" and slot.index not in self.rebound and self._base_rebound(slot):
                if slot.derivation is None:
                    raise CaptureError(
                        "capture: a view made outside the recorded calls looks into an array read afresh on each call"
                    )
                self.rebound.add(slot.index)

    def _base_rebound(self, slot) -> bool:
        base = slot.base
        while base is not None:
            if base.index in self.rebound:
                return True
            base = base.base
        return False

    # ---- code -------------------------------------------------------------------------------
    def set_attributes(self, lines, tensor, data_ref, grad_ref) -> None:
        """Lines that give `tensor` the .data and .grad of the capture run at this point (only
        what differs from what the replay has set so far)."""
        entry = self._entry_of(tensor)
        target = entry.expr if entry is not None else self.const(tensor, "T")
        data_now, grad_now = self._current.get(id(tensor), (None, None))
        if (
            data_ref is not None
            and data_now != data_ref.index
            and not (
                entry is not None
                and entry.start_data is not None
                and data_now is None
                and data_ref.index == entry.start_data.index
            )
        ):
            lines.append(f"{target}.data = {self.name(data_ref)}")
        grad = None if grad_ref is None else grad_ref.index
        if grad != grad_now or grad_now is None:
            if grad_ref is None:
                if grad_now is not None or entry is None or not entry.grad_was_none:
                    lines.append(f"{target}.grad = None")
            elif grad in self.rebound:
                lines.append(f"{target}.grad = _tensor({self.name(grad_ref)})")
            else:
                holder = self.const(_new_tensor(self.slots[grad].array), "G")  # one Tensor per buffer
                lines.append(f"{holder}.data = {self.name(grad_ref)}; {target}.grad = {holder}")
        self._current[id(tensor)] = (data_now if data_ref is None else data_ref.index, grad)

    def emit_op(self, op, lines) -> None:
        if op.kind == "python":
            for tensor, data_ref, grad_ref in op.sync:
                self.set_attributes(lines, tensor, data_ref, grad_ref)
            lines.append(f"{self.const(op.fn, 'f')}()")
            return
        if op.kind == "check":
            lines.append(self.call(op.fn, op.args, {}))
            return
        if op.kind == "rng":
            lines.append(f"{self.const(op.fn, 'f')}({self.name(Ref(op.out_slot))})")
            return
        new = [(path, index) for path, index in op.results]
        static_new = [(p, i) for p, i in new if i not in self.rebound and self.slots[i].kind != "view"]
        rebound_new = [(p, i) for p, i in new if i in self.rebound]
        if not op.writes and not rebound_new and not static_new and op.kind != "kernel":
            return  # a view of static arrays: already made, once
        if static_new:
            out = [self.name(Ref(i)) for _, i in static_new]
            fn = op.fn
            if op.kind == "ufunc" and fn is np.matmul and rewrite.product_as_dot(self.slots, op, static_new[0][1]):
                lines.append(self.call(np.dot, op.args, {}, f"out={out[0]}"))
            elif op.kind == "ufunc":
                target = "(" + "".join(o + ", " for o in out) + ")" if op.fn.__class__ is np.ufunc else out[0]
                lines.append(self.call(fn, op.args, op.kwargs, f"out={target}"))
            elif fn in _FILLS:
                lines.append(f"{out[0]}.fill({_FILLS[fn]})")
            elif fn is np.full_like:
                value = op.args[1] if len(op.args) > 1 else op.kwargs["fill_value"]
                lines.append(f"{out[0]}.fill({self.expr(value)})")
            elif fn is np.empty_like:
                pass
            elif fn is np.where:
                cond, a, b = op.args
                lines.append(f"copyto({out[0]}, {self.expr(b)})")
                lines.append(f"copyto({out[0]}, {self.expr(a)}, where={self.expr(cond)})")
            elif fn is np.vdot:
                lines.append(f"copyto({out[0]}, {self.call(fn, op.args, op.kwargs)})")
            elif fn is np.ndarray.astype:
                lines.append(f"copyto({out[0]}, {self.expr(op.args[0])}, casting='unsafe')")
            elif fn is np.ndarray.copy:
                lines.append(f"copyto({out[0]}, {self.expr(op.args[0])})")
            elif fn is np.ndarray.dot:
                lines.append(self.call(np.dot, op.args, op.kwargs, f"out={out[0]}"))
            else:
                lines.append(self.call(fn, op.args, op.kwargs, f"out={out[0]}"))
            return
        call = self.call(op.fn, op.args, op.kwargs)
        if not rebound_new:
            lines.append(call)
            return
        if len(rebound_new) == 1 and rebound_new[0][0] == ():
            lines.append(f"r{rebound_new[0][1]} = _arr({call})")
            return
        lines.append(f"_t = {call}")
        for path, index in rebound_new:
            lines.append(f"r{index} = _arr(_t{''.join(f'[{k}]' for k in path)})")

    def share_buffers(self, ops) -> None:
        """Give temps whose live ranges (first to last op that uses them or a view of them) do not
        overlap one array per shape and dtype, and rebuild the static views on the new arrays.
        Left alone: temps that escape (returned, left in a tensor's attributes), constants (their
        values must last), rebound ones, and any not C-contiguous."""
        first, last = {}, {}
        for k, op in enumerate(ops):
            for index in _op_refs(op):
                for i in self._with_bases(index):
                    first.setdefault(i, k)
                    last[i] = k
        keep = self.escaping | _template_refs(self.result_template)
        temps = sorted(
            (first[s.index], s.index)
            for s in self.slots
            if s.kind == "temp"
            and s.index in first
            and s.index not in keep
            and s.index not in self.rebound
            and not s.const
            and s.array.flags.c_contiguous
        )
        free: dict = {}  # (shape, dtype) -> [(last use, slot index) of the slots whose arrays can be taken]
        owner = {}  # slot index -> slot index whose array it uses
        busy = []
        for start, index in temps:
            for item in [b for b in busy if b[0] < start]:
                busy.remove(item)
                free.setdefault(_layout(self.slots[item[1]].array), []).append(item[1])
            pool = free.get(_layout(self.slots[index].array))
            if pool:
                owner[index] = owner.get(pool[-1], pool[-1])
                pool.pop()
            busy.append((last[index], index))
        moved = {}
        for index, source in owner.items():
            moved[index] = self.slots[index].array
            self.slots[index].array = self.slots[source].array
        for slot in self.slots:  # views into a moved temp: the same bytes of its new array
            root = slot
            while root.kind == "view" and root.base is not None:
                root = root.base
            if slot.kind == "view" and root.index in moved and slot.index not in self.rebound:
                offset = _data_pointer(slot.array) - _data_pointer(moved[root.index])
                flat = root.array.reshape(-1).view(np.uint8)[offset : offset + slot.array.itemsize]
                slot.array = np.lib.stride_tricks.as_strided(
                    flat.view(slot.array.dtype), slot.array.shape, slot.array.strides
                )
        self.shared = len(owner)

    def _constant(self, op, written) -> bool:
        """An op that makes constants only (the seed gradient, its products with Python numbers)
        into static buffers nothing writes later: the capture run left its values there."""
        if op.kind not in ("ufunc", "function", "method") or op.writes or not op.results:
            return False
        return all(self.slots[i].const and i not in self.rebound and i not in written for _, i in op.results)

    def live_ops(self) -> list:
        """The ops whose effects reach something kept (fn's result, a tensor's attributes, a
        state or external array, the random generator); the rest is dead code of the capture
        run (the seed gradient a loss kernel read as a constant, a product nobody used)."""
        needed = set(self.escaping) | _template_refs(self.result_template)
        persistent = {s.index for s in self.slots if s.kind in ("state", "external", "input")}
        kept = []
        for op in reversed(self.ops):
            outs = {index for _, index in op.results} | set(op.writes)
            reach = set()
            for index in outs:
                reach |= self._with_bases(index)
            if op.kind in ("python", "check", "rng", "kernel") or reach & (needed | persistent):
                kept.append(op)
                for leaf in _leaves((op.args, op.kwargs)):
                    if type(leaf) is Ref:
                        needed |= self._with_bases(leaf.index)
                for _, data_ref, grad_ref in op.sync or ():
                    needed |= self._with_bases(data_ref.index)
                    if grad_ref is not None:
                        needed |= self._with_bases(grad_ref.index)
        return kept[::-1]

    def _with_bases(self, index) -> set:
        found = {index}
        base = self.slots[index].base
        while base is not None:
            found.add(base.index)
            base = base.base
        return found

    def _entry_of(self, tensor):
        for entry in self.entries:
            if entry.tensor is tensor:
                return entry
        return None

    def guard_lines(self, lines) -> None:
        for kind, holder, key, expected in self.guards:
            where = self.const(holder, "h")
            expression = {"cell": f"{where}.cell_contents", "global": f"{where}[{key!r}]", "attr": f"{where}.{key}"}[
                kind
            ]
            lines.append(f"if {expression} != {self.expr(expected)}: return MISS")
        for position, index, is_tensor in self.inputs:
            if index is not None:
                source = f"args[{position}].data" if is_tensor else f"args[{position}]"
                lines.append(f"copyto({self.name(Ref(index))}, {source})")
        for entry in self.entries:
            t = entry.expr
            if entry.start_data is not None and entry.start_data.index not in self.rebound:
                lines.append(f"if {t}.data is not {self.name(entry.start_data)}: return MISS")
            elif entry.start_data is not None:
                self._read_live(lines, f"{t}.data", entry.start_data)
            if entry.start_grad is not None:
                lines.append(f"if {t}.grad is None: return MISS")
                self._read_live(lines, f"{t}.grad.data", entry.start_grad)
            elif entry.grad_was_none:
                lines.append(f"if {t}.grad is not None: return MISS")

    def _read_live(self, lines, source, ref) -> None:
        """r<i> = <source>, checked against the capture's layout; staged when it is an array this
        replay writes (it was left there by the previous replay)."""
        slot = self.slots[ref.index]
        r = f"r{ref.index}"
        lines.append(f"{r} = {source}")
        lines.append(
            f"if {r}.shape != {self.expr(tuple(slot.array.shape))} or {r}.dtype != {self.const(slot.array.dtype)}"
            f" or {r}.flags.c_contiguous != {slot.array.flags.c_contiguous}: return MISS"
        )
        escaping = [
            i
            for i in self.escaping
            if i not in self.rebound
            and self.slots[i].array.shape == slot.array.shape
            and self.slots[i].array.dtype == slot.array.dtype
        ]
        if escaping:
            stage = self.const(np.empty_like(slot.array), "stage")
            test = " or ".join(f"{r} is {self.name(Ref(i))}" for i in escaping)
            lines.append(f"if {test}: copyto({stage}, {r}); {r} = {stage}")

    def end_lines(self, lines) -> None:
        for entry in self.entries:
            if entry.end_grad_same and id(entry.tensor) not in self._current:
                self._current[id(entry.tensor)] = (None, entry.end_grad.index)
            self.set_attributes(lines, entry.tensor, entry.end_data, entry.end_grad)
        lines.append(f"return {self.result_expr(self.result_template)}")

    def result_expr(self, template) -> str:
        kind, value = template
        if kind == "copy":
            return f"_out({self.name(value)})"
        if kind == "array":
            return f"{self.name(value)}.copy()"
        if kind == "entry":
            return self.entries[value].expr
        if kind == "tuple":
            return "(" + "".join(self.result_expr(v) + ", " for v in value) + ")"
        if kind == "list":
            return "[" + ", ".join(self.result_expr(v) for v in value) + "]"
        if kind == "dict":
            return "{" + ", ".join(f"{self.expr(k)}: {self.result_expr(v)}" for k, v in value) + "}"
        return self.expr(value)

    def compile(self):
        """Build the replay function `replay(args)` (MISS when a guard fails)."""
        self.escaping = set()
        for entry in self.entries:
            for ref in (entry.end_data, entry.end_grad):
                if ref is not None:
                    self.escaping.add(ref.index)
        self.classify()
        self._current = {}  # id(tensor) -> (slot of .data, slot of .grad) as the replay has set them
        lines = []
        self.guard_lines(lines)
        written = set()
        for op in self.ops:
            for index in op.writes:
                written |= self._with_bases(index)
        kept = [op for op in self.live_ops() if not self._constant(op, written)]
        self.share_buffers(kept)
        fused = rewrite.scaled_updates(self, kept, self.escaping | _template_refs(self.result_template))
        for k, op in enumerate(kept):
            if k in fused:
                lines.append(fused[k])
            elif k - 1 not in fused:
                self.emit_op(op, lines)
        self.end_lines(lines)
        self.source = "def replay(args):\n" + "".join(f"    {line}\n" for line in lines)
        namespace = dict(self.globals)
        exec(compile(self.source, "<xg.capture replay>", "exec"), namespace)
        self.replay = namespace["replay"]
        return self.replay

    def describe(self) -> list:
        return [op.describe() for op in self.ops]


def _layout(array) -> tuple:
    return array.shape, array.dtype.str


def _data_pointer(array) -> int:
    return array.__array_interface__["data"][0]


def _op_refs(op):
    """Slot indices an op reads, writes or makes (and, for a Python step, sets on tensors)."""
    for leaf in _leaves((op.args, op.kwargs)):
        if type(leaf) is Ref:
            yield leaf.index
    for _, index in op.results:
        yield index
    yield from op.writes
    if op.out_slot is not None:
        yield op.out_slot
    for _, data_ref, grad_ref in op.sync or ():
        yield data_ref.index
        if grad_ref is not None:
            yield grad_ref.index


def _template_refs(template) -> set:
    kind, value = template
    if kind in ("copy", "array"):
        return {value.index}
    if kind in ("tuple", "list"):
        return set().union(*(_template_refs(v) for v in value)) if value else set()
    if kind == "dict":
        return set().union(*(_template_refs(v) for _, v in value)) if value else set()
    return set()


def result_template(recorder, value, entries):
    """How the replay rebuilds fn's return value: tensors copied out of their slots, state
    tensors themselves, Python values as they were."""
    from ..tensor import Tensor

    if isinstance(value, Tensor):
        for k, entry in enumerate(entries):
            if entry.tensor is value:
                return ("entry", k)
        return ("copy", recorder.ref(value.data))
    if isinstance(value, np.ndarray):
        return ("array", recorder.ref(value))
    if type(value) in (tuple, list):
        return (type(value).__name__, [result_template(recorder, v, entries) for v in value])
    if type(value) is dict:
        return ("dict", [(k, result_template(recorder, v, entries)) for k, v in value.items()])
    if isinstance(value, (*_SIMPLE, np.generic)):
        return ("value", value)
    raise CaptureError(
        f"capture: fn returned a {type(value).__name__}; a captured step returns tensors, arrays, "
        f"Python numbers or tuples, lists and dicts of them"
    )


def referenced(ops) -> set:
    """Indices of the slots the ops read or write."""
    found = set()
    for op in ops:
        for leaf in _leaves((op.args, op.kwargs)):
            if type(leaf) is Ref:
                found.add(leaf.index)
        if op.sync:
            for _, d, g in op.sync:
                found.add(d.index)
                if g is not None:
                    found.add(g.index)
    return found
