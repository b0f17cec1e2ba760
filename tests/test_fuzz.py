"""Property-based gradient fuzzing: random graphs of the engine's ops, checked in float64.

A hypothesis strategy builds random programs: random compositions of every differentiable op
of the engine (elementwise arithmetic with tensors and Python scalars, math, activations,
reductions, shape ops, indexing, concat/stack, matmul, linear and the fused
linear+activation node, the losses) over mutually
broadcastable shapes, with fan-out (one value consumed by several ops, ``a * a``,
``stack([a, a])``, ``a.T @ a``) and reuse of intermediate values. Every value nobody
consumed is flattened into the output, so every op contributes to it. Each program is then

* run forward in float64 and differentiated by `xg.grad`;
* checked against central finite differences (`xg.testing.gradcheck`: eps 1e-6,
  atol 1e-5, rtol 1e-4) for every leaf that requires grad;
* differentiated again with ``out.backward(w)``: the accumulated ``.grad`` of every leaf
  must equal what `xg.grad` returned (fan-out sums);
* on NumPy, run again with the Numba kernels switched off (`xpgrad.fns.use_kernels(False)`):
  forward value and gradients must agree with the kernel path to ~1e-12;
* when PyTorch is importable, run again in torch (float64) and compared value by value,
  output and every gradient, with tight tolerances. Without torch that comparison is skipped
  (a separate test, reported as skipped);
* (a separate property) differentiated with ``create_graph=True``: the gradient must equal the
  plain one, and its own gradient must match finite differences of the gradient.

A meta-test breaks tanh's backward rule and checks that the same search finds the bug.

Programs whose base point sits within 1e-3 of a kink (relu/abs/leaky_relu/elu and the fused
linear+relu at 0, a near tie in maximum/minimum/max/min/maxout, a hinge margin at 0) or whose
values overflow are rejected with `assume`: finite differences are meaningless there.

Profiles
--------
CI runs a short, derandomized profile: 100 graphs on NumPy, 25 on array_api_strict, 30 for
second order and 60 against torch (a few seconds in all). The long profile is selected by an
environment variable giving the number of graphs::

    XPGRAD_FUZZ_EXAMPLES=10000 python -m pytest tests/test_fuzz.py -s

With the variable set, the NumPy test and the torch test each check that many graphs,
randomized (a new seed every run; a failure prints the falsifying program and a
``@reproduce_failure`` blob), and the array_api_strict and second-order tests a tenth of it.
Each test prints a summary line (graphs checked, op applications, graphs with fan-out,
rejections, how often each op was drawn) and fails unless the requested number of graphs was
actually checked; the long NumPy run also fails unless every op was drawn. Last results are in
docs/reliability.md.
"""

from __future__ import annotations

import math
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

import xpgrad as xg
from xpgrad.fns import use_kernels
from xpgrad.testing import GradcheckError, gradcheck

try:  # the PyTorch cross-check is optional
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

LONG_EXAMPLES = int(os.environ.get("XPGRAD_FUZZ_EXAMPLES", "0") or 0)
LONG = LONG_EXAMPLES > 0


def _profile(ci_examples: int, long_examples: int) -> settings:
    health = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
    if LONG:
        return settings(
            max_examples=long_examples,
            deadline=None,
            derandomize=False,
            database=None,
            suppress_health_check=health,
            print_blob=True,
        )
    return settings(
        max_examples=ci_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=health,
        print_blob=True,
    )


CI_EXAMPLES = {"numpy": 100, "array_api_strict": 25, "torch": 60, "second_order": 30}
LONG_COUNTS = {
    "numpy": LONG_EXAMPLES,
    "array_api_strict": max(LONG_EXAMPLES // 10, 1),
    "torch": LONG_EXAMPLES,
    "second_order": max(LONG_EXAMPLES // 10, 1),
}
REQUESTED = LONG_COUNTS if LONG else CI_EXAMPLES

NUMPY_PROFILE = _profile(CI_EXAMPLES["numpy"], LONG_COUNTS["numpy"])
STRICT_PROFILE = _profile(CI_EXAMPLES["array_api_strict"], LONG_COUNTS["array_api_strict"])
TORCH_PROFILE = _profile(CI_EXAMPLES["torch"], LONG_COUNTS["torch"])
SECOND_PROFILE = _profile(CI_EXAMPLES["second_order"], LONG_COUNTS["second_order"])

MAX_SIZE = 24  # elements per value: keeps finite differences cheap
MAX_NDIM = 4
MIN_STEPS = 3
MAX_STEPS = 12
KINK_MARGIN = 1e-3  # finite differences use eps 1e-6; stay this far from any kink
VALUE_LIMIT = 1e4  # larger intermediate values are rejected (FD round-off)

# ---- programs -------------------------------------------------------------------------------


class Program:
    """Leaves (shape, requires_grad), a value seed, and steps (op, argument indices, params).

    Values form a pool: a ``("leaf", (), {"k": k})`` step appends leaf k, any other step appends
    the op's result. Arguments index the pool, so any value can be consumed many times.
    """

    def __init__(self):
        self.leaves: list[tuple[tuple, bool]] = []
        self.steps: list[tuple[str, tuple, dict]] = []
        self.shapes: list[tuple] = []
        self.uses: list[int] = []
        self.seed = 0

    def __repr__(self):
        lines = [f"Program(seed={self.seed})"]
        for j, (op, args, params) in enumerate(self.steps):
            if op == "leaf":
                shape, rg = self.leaves[params["k"]]
                lines.append(f"  v{j} = leaf{params['k']} shape {shape} requires_grad={rg}")
                continue
            shown = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in params.items()}
            lines.append(f"  v{j} = {op}({', '.join(f'v{a}' for a in args)}) {shown}")
        return "\n".join(lines)


def _size(shape) -> int:
    return math.prod(shape)


def _broadcast(s1, s2):
    """The broadcast shape of s1 and s2, or None when they do not broadcast."""
    try:
        return np.broadcast_shapes(s1, s2)
    except ValueError:
        return None


class Builder:
    """Draws a program step by step, tracking shapes so every op gets operands it accepts."""

    def __init__(self, draw):
        self.draw = draw
        self.p = Program()

    def leaf(self, shape, requires_grad=None):
        if requires_grad is None:
            requires_grad = self.draw(st.sampled_from([True, True, True, False]))
        self.p.leaves.append((tuple(shape), requires_grad))
        return self.emit("leaf", (), shape, k=len(self.p.leaves) - 1)

    def emit(self, op, args, out_shape, **params):
        self.p.steps.append((op, tuple(args), params))
        for a in args:
            self.p.uses[a] += 1
        self.p.shapes.append(tuple(out_shape))
        self.p.uses.append(0)
        return len(self.p.shapes) - 1

    def choose(self, candidates):
        return self.draw(st.sampled_from(candidates)) if candidates else None


def _variant(draw, shape):
    """A shape broadcast-compatible with `shape` (drop leading dims, set dims to 1, add one)."""
    dims = list(shape)
    if dims:
        drop = draw(st.integers(0, len(dims)))
        dims = dims[drop:]
    dims = [1 if draw(st.booleans()) and draw(st.booleans()) else d for d in dims]
    if len(dims) < 3 and draw(st.integers(0, 4)) == 0:
        dims = [draw(st.integers(1, 2))] + dims
    out = tuple(dims)
    full = _broadcast(out, shape)
    return out if full is not None and _size(full) <= MAX_SIZE else tuple(shape)


SHAPES = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)

# Ops and how to apply them. Each generator gets the builder and the first operand index `a`
# and returns the new value's index, or None when the op does not apply to `a`.

UNARY = ("neg", "exp", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "abs")
BINARY = ("add", "sub", "mul", "div", "maximum", "minimum", "pow", "where")
REDUCE = ("sum", "mean", "max", "min")
SCALAR = ("add_s", "radd_s", "sub_s", "rsub_s", "mul_s", "rmul_s", "div_s", "rdiv_s", "pow_s", "rpow_s")
OTHER = (
    "log",
    "sqrt",
    "softmax",
    "log_softmax",
    "reshape",
    "transpose",
    "broadcast_to",
    "getitem",
    "concat",
    "stack",
    "matmul",
    "gram",
    "linear",
    "linear_act",
    "softmax_cross_entropy",
    "hinge_loss",
    "mse_loss",
    "maxout",
)
OP_KINDS = UNARY + BINARY + REDUCE + SCALAR + OTHER


def _positive(b: Builder, a):
    """a * a + 0.5: a smooth, strictly positive value (fan-out of `a`)."""
    sq = b.emit("mul", (a, a), b.p.shapes[a])
    return b.emit("add_s", (sq,), b.p.shapes[a], c=0.5)


def _second_operand(b: Builder, a, fits, make_shape):
    """An existing value that `fits` (reuse / fan-out, maybe `a` itself) or a new leaf."""
    candidates = [i for i, s in enumerate(b.p.shapes) if fits(s)]
    if candidates and b.draw(st.integers(0, 2)) > 0:
        return b.choose(candidates)
    if make_shape is None:
        return None
    return b.leaf(make_shape())


def _gen_step(b: Builder, kind, a):
    draw = b.draw
    s = b.p.shapes[a]
    nd = len(s)
    if kind in UNARY:
        params = {}
        if kind == "leaky_relu":
            params["slope"] = draw(st.sampled_from([0.01, 0.2]))
        if kind == "elu":
            params["alpha"] = draw(st.sampled_from([1.0, 0.5]))
        return b.emit(kind, (a,), s, **params)
    if kind in ("log", "sqrt"):
        return b.emit(kind, (_positive(b, a),), s)
    if kind in SCALAR:
        c = draw(st.sampled_from([0.5, 1.5, -2.0, 3.0]))
        if kind == "rdiv_s":
            return b.emit(kind, (_positive(b, a),), s, c=c)
        if kind == "pow_s":
            p = draw(st.sampled_from([2, 3, 0.5, -1.5]))
            base = a if isinstance(p, int) else _positive(b, a)
            return b.emit(kind, (base,), s, c=float(p) if not isinstance(p, int) else p)
        if kind == "rpow_s":
            return b.emit(kind, (a,), s, c=draw(st.sampled_from([2.0, 0.5])))
        return b.emit(kind, (a,), s, c=c)
    if kind in BINARY:
        other = _second_operand(
            b,
            a,
            lambda t: _broadcast(s, t) is not None and _size(_broadcast(s, t)) <= MAX_SIZE,
            lambda: _variant(draw, s),
        )
        out_shape = _broadcast(s, b.p.shapes[other])
        if kind == "div":
            return b.emit("div", (a, _positive(b, other)), out_shape)
        if kind == "pow":
            return b.emit("pow", (_positive(b, a), other), out_shape)
        if kind == "where":
            cond = np.random.default_rng(draw(st.integers(0, 2**16))).random(out_shape) > 0.5
            return b.emit("where", (a, other), out_shape, cond=cond)
        return b.emit(kind, (a, other), out_shape)
    if kind in REDUCE:
        mode = draw(st.sampled_from(["all", "one", "tuple"]))
        keepdims = draw(st.booleans())
        if mode == "all" or nd == 0:
            axis = None
        elif mode == "one":
            axis = draw(st.integers(-nd, nd - 1))
        else:
            axis = tuple(sorted(draw(st.sets(st.integers(0, nd - 1), min_size=1, max_size=nd))))
        axes = range(nd) if axis is None else ([axis % nd] if isinstance(axis, int) else axis)
        out = (
            tuple(1 if i in axes else d for i, d in enumerate(s))
            if keepdims
            else tuple(d for i, d in enumerate(s) if i not in axes)
        )
        return b.emit(kind, (a,), out, axis=axis, keepdims=keepdims)
    if kind in ("softmax", "log_softmax"):
        if nd == 0:
            return None
        return b.emit(kind, (a,), s, axis=draw(st.integers(-nd, nd - 1)))
    if kind == "reshape":
        size = _size(s)
        options = [(size,), tuple(reversed(s)), (1,) + s]
        options += [(d, size // d) for d in range(1, size + 1) if size % d == 0]
        if size == 1:
            options.append(())
        target = draw(st.sampled_from([o for o in options if len(o) <= MAX_NDIM]))
        if draw(st.booleans()) and target:
            k = draw(st.integers(0, len(target) - 1))
            shown = tuple(-1 if i == k else t for i, t in enumerate(target))
        else:
            shown = target
        return b.emit("reshape", (a,), target, shape=shown)
    if kind == "transpose":
        if nd < 2:
            return None
        perm = tuple(draw(st.permutations(range(nd))))
        return b.emit("transpose", (a,), tuple(s[i] for i in perm), axes=perm)
    if kind == "broadcast_to":
        target = list(s)
        target = [draw(st.integers(1, 3)) if d == 1 else d for d in target]
        if len(target) < 3 and draw(st.booleans()):
            target = [draw(st.integers(1, 3))] + target
        target = tuple(target)
        if _size(target) > MAX_SIZE:
            return None
        return b.emit("broadcast_to", (a,), target, shape=target)
    if kind == "getitem":
        if nd == 0:
            return None
        style = draw(st.sampled_from(["int", "slices", "array"]))
        if style == "int":
            i = draw(st.integers(-s[0], s[0] - 1))
            return b.emit("getitem", (a,), s[1:], index=(i, Ellipsis))
        if style == "array":
            idx = np.asarray(draw(st.lists(st.integers(0, s[0] - 1), min_size=1, max_size=4)), dtype=np.int64)
            out = (len(idx),) + s[1:]
            if _size(out) > MAX_SIZE:
                return None
            return b.emit("getitem", (a,), out, index=idx)
        index, out = [], []
        for d in s:
            start = draw(st.integers(0, d - 1))
            stop = draw(st.integers(start + 1, d))
            step = draw(st.integers(1, 2))
            index.append(slice(start, stop, step))
            out.append(len(range(start, stop, step)))
        return b.emit("getitem", (a,), tuple(out), index=tuple(index))
    if kind in ("concat", "stack"):
        if kind == "concat" and nd == 0:
            return None
        if kind == "stack" and nd >= MAX_NDIM:
            return None
        if kind == "concat":
            axis = draw(st.integers(-nd, nd - 1))
            ax = axis % nd

            def fits(t):
                return len(t) == nd and all(t[i] == s[i] for i in range(nd) if i != ax)

            def make():
                return tuple(draw(st.integers(1, 2)) if i == ax else d for i, d in enumerate(s))
        else:
            axis = draw(st.integers(-(nd + 1), nd))

            def fits(t):
                return t == s

            def make():
                return s

        parts = [a]
        for _ in range(draw(st.integers(1, 2))):
            other = _second_operand(b, a, fits, None)
            if other is None:
                other = a if draw(st.booleans()) else None
            if other is None:
                other = b.leaf(make())
            parts.append(other)
        if kind == "concat":
            out = tuple(sum(b.p.shapes[p][ax] for p in parts) if i == ax else d for i, d in enumerate(s))
        else:
            out = s[: axis % (nd + 1)] + (len(parts),) + s[axis % (nd + 1) :]
        if _size(out) > MAX_SIZE:
            return None
        return b.emit(kind, parts, out, axis=axis)
    if kind == "matmul":
        if nd == 0:
            return None
        k = s[-1]
        batch = s[:-2]

        def fits(t):
            if len(t) == 1:
                return t[0] == k
            if len(t) < 2 or t[-2] != k:
                return False
            full = _broadcast(batch, t[:-2])
            return full is not None and len(full) + 2 <= MAX_NDIM

        other = _second_operand(b, a, fits, lambda: draw(st.sampled_from([(k,), (k, draw(st.integers(1, 3)))])))
        t = b.p.shapes[other]
        if nd == 1 and len(t) == 1:
            out = ()
        elif nd == 1:
            out = t[:-2] + (t[-1],)
        elif len(t) == 1:
            out = s[:-1]
        else:
            out = _broadcast(batch, t[:-2]) + (s[-2], t[-1])
        if _size(out) > MAX_SIZE:
            return None
        return b.emit("matmul", (a, other), out)
    if kind == "gram":
        if nd != 2:
            return None
        t = b.emit("transpose", (a,), (s[1], s[0]), axes=(1, 0))
        return b.emit("matmul", (t, a), (s[1], s[1]))
    if kind in ("linear", "linear_act"):  # linear_act: the fused linear(..., activation=) node
        if nd == 0:
            return None
        k = s[-1]
        other = _second_operand(b, a, lambda t: len(t) == 2 and t[0] == k, lambda: (k, draw(st.integers(1, 3))))
        n = b.p.shapes[other][1]
        out = s[:-1] + (n,)
        if _size(out) > MAX_SIZE:
            return None
        params = {"activation": draw(st.sampled_from(["relu", "sigmoid"]))} if kind == "linear_act" else {}
        if draw(st.booleans()):
            bias = _second_operand(b, a, lambda t: t == (n,), lambda: (n,))
            return b.emit(kind, (a, other, bias), out, **params)
        return b.emit(kind, (a, other), out, **params)
    if kind in ("softmax_cross_entropy", "hinge_loss"):
        if nd == 0:
            return None
        c = s[-1]
        rows = _size(s) // c
        x = b.emit("reshape", (a,), (rows, c), shape=(rows, c)) if s != (rows, c) else a
        labels = np.asarray(draw(st.lists(st.integers(0, c - 1), min_size=rows, max_size=rows)), dtype=np.int64)
        params = {"labels": labels}
        if kind == "hinge_loss":
            params["margin"] = draw(st.sampled_from([1.0, 0.5]))
        return b.emit(kind, (x,), (), **params)
    if kind == "mse_loss":
        other = _second_operand(b, a, lambda t: t == s, lambda: s)
        return b.emit("mse_loss", (a, other), ())
    if kind == "maxout":
        if nd == 0:
            return None
        pieces = [p for p in (2, 3) if s[-1] % p == 0]
        if not pieces:
            return None
        p = draw(st.sampled_from(pieces))
        return b.emit("maxout", (a,), s[:-1] + (s[-1] // p,), pieces=p)
    raise AssertionError(kind)  # pragma: no cover


@st.composite
def programs(draw, kinds=OP_KINDS):
    """A random program: a first leaf, then 1..MAX_STEPS ops on values drawn from the pool."""
    b = Builder(draw)
    b.leaf(draw(SHAPES), requires_grad=True)
    for _ in range(draw(st.integers(MIN_STEPS, MAX_STEPS))):
        pool = len(b.p.shapes)
        # mostly extend the newest value (depth), sometimes reuse an older one (fan-out)
        a = draw(st.integers(0, pool - 1)) if draw(st.booleans()) else pool - 1
        _gen_step(b, draw(st.sampled_from(kinds)), a)
    return _finish(b, draw)


def _finish(b: Builder, draw) -> Program:
    """Flatten every value nobody consumed into one output, so everything is differentiated."""
    p = b.p
    sinks = [i for i, u in enumerate(p.uses) if u == 0]
    if len(sinks) > 1:
        flat = [b.emit("reshape", (i,), (_size(p.shapes[i]),), shape=(-1,)) for i in sinks]
        b.emit("concat", flat, (sum(_size(p.shapes[i]) for i in sinks),), axis=0)
    p.seed = draw(st.integers(0, 2**32 - 1))
    return p


# ---- interpreters ---------------------------------------------------------------------------


def _xg_ops():
    return {
        "neg": lambda a: -a,
        "exp": xg.exp,
        "log": xg.log,
        "sqrt": xg.sqrt,
        "abs": xg.abs,
        "sigmoid": xg.sigmoid,
        "tanh": xg.tanh,
        "relu": xg.relu,
        "leaky_relu": lambda a, slope: xg.leaky_relu(a, negative_slope=slope),
        "elu": lambda a, alpha: xg.elu(a, alpha=alpha),
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
        "pow": lambda a, b: a**b,
        "maximum": xg.maximum,
        "minimum": xg.minimum,
        "where": lambda a, b, cond: xg.where(_const(cond, a), a, b),
        "add_s": lambda a, c: a + c,
        "radd_s": lambda a, c: c + a,
        "sub_s": lambda a, c: a - c,
        "rsub_s": lambda a, c: c - a,
        "mul_s": lambda a, c: a * c,
        "rmul_s": lambda a, c: c * a,
        "div_s": lambda a, c: a / c,
        "rdiv_s": lambda a, c: c / a,
        "pow_s": lambda a, c: a**c,
        "rpow_s": lambda a, c: c**a,
        "sum": lambda a, axis, keepdims: a.sum(axis=axis, keepdims=keepdims),
        "mean": lambda a, axis, keepdims: xg.mean(a, axis=axis, keepdims=keepdims),
        "max": lambda a, axis, keepdims: a.max(axis=axis, keepdims=keepdims),
        "min": lambda a, axis, keepdims: xg.min(a, axis=axis, keepdims=keepdims),
        "softmax": lambda a, axis: xg.softmax(a, axis=axis),
        "log_softmax": lambda a, axis: a.log_softmax(axis=axis),
        "reshape": lambda a, shape: a.reshape(shape),
        "transpose": lambda a, axes: a.transpose(*axes),
        "broadcast_to": lambda a, shape: xg.broadcast_to(a, shape),
        "getitem": lambda a, index: a[_const(index, a) if isinstance(index, np.ndarray) else index],
        "concat": lambda *xs, axis: xg.concat(xs, axis=axis),
        "stack": lambda *xs, axis: xg.stack(xs, axis=axis),
        "matmul": lambda a, b: a @ b,
        "linear": lambda x, W, b=None: xg.linear(x, W, b),
        "linear_act": lambda x, W, b=None, activation=None: xg.linear(x, W, b, activation=activation),
        "softmax_cross_entropy": lambda z, labels: xg.softmax_cross_entropy(z, _const(labels, z)),
        "hinge_loss": lambda s, labels, margin: xg.hinge_loss(s, _const(labels, s), margin=margin),
        "mse_loss": xg.mse_loss,
        "maxout": lambda a, pieces: xg.maxout(a, pieces),
    }


def _const(arr: np.ndarray, like):
    """A constant array (labels, indices, masks) in the backend of tensor `like`."""
    return (
        xg.tensor(arr, device=None)
        if type(like.data) is np.ndarray
        else xg.Tensor(xg.backend.namespace_of(like.data).asarray(arr))
    )


XG_OPS = _xg_ops()


def run_program(p: Program, leaves, ops, keep=None):
    """Evaluate `p` with `ops` (a name -> function table) on `leaves`; returns the last value."""
    pool = []
    for op, args, params in p.steps:
        if op == "leaf":
            pool.append(leaves[params["k"]])
        else:
            pool.append(ops[op](*(pool[i] for i in args), **params))
    if keep is not None:
        keep.extend(pool)
    return pool[-1]


def leaf_values(p: Program) -> list[np.ndarray]:
    rng = np.random.default_rng(p.seed)
    return [rng.uniform(-2.0, 2.0, size=shape) for shape, _ in p.leaves]


def make_leaves(p: Program, backend_name="numpy"):
    with xg.use_backend(backend_name):
        return [xg.tensor(v, dtype="float64", requires_grad=rg) for v, (_, rg) in zip(leaf_values(p), p.leaves)]


# ---- validity: kinks and overflow -----------------------------------------------------------


def _min_nonzero_abs(d: np.ndarray) -> float:
    d = np.abs(d[d != 0])
    return float(d.min()) if d.size else math.inf


def _group_gap(x: np.ndarray, axes) -> float:
    """Smallest gap between a group's extremum and its nearest different value (near ties)."""
    if x.ndim == 0 or not axes:
        return math.inf
    keep = [i for i in range(x.ndim) if i not in axes]
    groups = np.transpose(x, keep + list(axes)).reshape(int(np.prod([x.shape[i] for i in keep])), -1)
    best = math.inf
    for row in groups:
        u = np.unique(row)
        if u.size > 1:
            best = min(best, u[-1] - u[-2], u[1] - u[0])
    return best


def kink_margin(p: Program, values) -> float:
    """How close the base point comes to a point where the program is not differentiable."""
    arrays = [v.numpy() for v in values]
    margin = math.inf
    for op, args, params in p.steps:
        xs = [arrays[i] for i in args]
        if op in ("relu", "leaky_relu", "abs", "elu"):
            margin = min(margin, _min_nonzero_abs(xs[0]))
        elif op in ("maximum", "minimum"):
            margin = min(margin, _min_nonzero_abs(xs[0] - xs[1]))
        elif op == "linear_act" and params["activation"] == "relu":
            z = xs[0] @ xs[1] + (xs[2] if len(xs) == 3 else 0.0)
            margin = min(margin, _min_nonzero_abs(z))
        elif op in ("max", "min"):
            x = xs[0]
            axis = params["axis"]
            axes = tuple(range(x.ndim)) if axis is None else ((axis % x.ndim,) if isinstance(axis, int) else axis)
            margin = min(margin, _group_gap(x, axes))
        elif op == "maxout":
            x = xs[0]
            k = params["pieces"]
            grouped = x.reshape(x.shape[:-1] + (x.shape[-1] // k, k))
            margin = min(margin, _group_gap(grouped, (grouped.ndim - 1,)))
        elif op == "hinge_loss":
            s, y = xs[0], params["labels"]
            m = s - s[np.arange(len(y)), y][:, None] + params["margin"]
            m[np.arange(len(y)), y] = np.inf
            margin = min(margin, _min_nonzero_abs(m))
    return margin


def _well_conditioned(p: Program, values) -> bool:
    for v in values:
        arr = v.numpy()
        if not np.all(np.isfinite(arr)) or (arr.size and np.max(np.abs(arr)) > VALUE_LIMIT):
            return False
    return kink_margin(p, values) > KINK_MARGIN


# ---- statistics for the long profile ---------------------------------------------------------

STATS = {"numpy": Counter(), "array_api_strict": Counter(), "torch": Counter(), "second_order": Counter()}


def _note(where: str, p: Program, fanout: bool) -> None:
    c = STATS[where]
    c["graphs"] += 1
    c["fanout_graphs"] += fanout
    for op, _, _ in p.steps:
        if op != "leaf":
            c["op:" + op] += 1


def _has_fanout(p: Program) -> bool:
    return any(u > 1 for u in p.uses) or any(len(set(args)) < len(args) for _, args, _ in p.steps)


# ---- the checks -----------------------------------------------------------------------------


def _valid(where: str, p: Program, kept) -> None:
    """Reject (hypothesis `assume`) programs whose base point is ill-conditioned; count both."""
    STATS[where]["drawn"] += 1
    ok = _well_conditioned(p, kept)
    STATS[where]["rejected"] += not ok
    assume(ok)


def _forward(p: Program, leaves, backend_name="numpy"):
    """The base-point forward pass, keeping every intermediate (overflow is rejected later)."""
    kept: list = []
    with xg.use_backend(backend_name), np.errstate(all="ignore"):
        out = run_program(p, leaves, XG_OPS, keep=kept)
    return out, kept


def check_program(p: Program, backend_name: str):
    leaves = make_leaves(p, backend_name)
    out, kept = _forward(p, leaves, backend_name)
    _valid(backend_name, p, kept)
    wanted = [t for t in leaves if t.requires_grad]
    if not wanted:  # pragma: no cover - leaf 0 always requires grad
        return

    def fn(*ins):
        with xg.use_backend(backend_name):
            return run_program(p, ins, XG_OPS)

    gradcheck(fn, leaves)  # raises GradcheckError naming the worst element

    # backward() accumulation must agree with xg.grad (fan-out sums into .grad)
    w = np.random.default_rng(1).uniform(0.5, 1.5, size=out.shape)
    with xg.use_backend(backend_name):
        wt = xg.tensor(w, dtype="float64")
    grads = xg.grad([out], wanted, grad_outputs=[wt], retain_graph=True)
    out.backward(wt)
    for t, g in zip(wanted, grads):
        assert t.grad is not None, f"{p!r}\nbackward left a leaf without .grad"
        np.testing.assert_allclose(t.grad.numpy(), g.numpy(), rtol=1e-12, atol=1e-12, err_msg=repr(p))
    if backend_name == "numpy":  # the Numba kernels against the portable array code, same program
        with use_kernels(False), np.errstate(all="ignore"):
            plain_out = run_program(p, leaves, XG_OPS)
            plain = xg.grad([plain_out], wanted, grad_outputs=[wt])
        np.testing.assert_allclose(
            out.numpy(), plain_out.numpy(), rtol=1e-12, atol=1e-13, err_msg=f"forward with kernels != without\n{p!r}"
        )
        for g, q in zip(grads, plain):
            np.testing.assert_allclose(
                g.numpy(), q.numpy(), rtol=1e-11, atol=1e-12, err_msg=f"gradient with kernels != without\n{p!r}"
            )
    return out, grads


@NUMPY_PROFILE
@given(programs())
def _fuzz_numpy(p):
    check_program(p, "numpy")
    _note("numpy", p, _has_fanout(p))


@STRICT_PROFILE
@given(programs())
def _fuzz_strict(p):
    check_program(p, "array_api_strict")
    _note("array_api_strict", p, _has_fanout(p))


def _summary(where: str, requested: int) -> str:
    c = STATS[where]
    ops = sorted((k[3:], v) for k, v in c.items() if k.startswith("op:"))
    missing = sorted(set(OP_NAMES) - {k for k, _ in ops})
    steps = sum(v for k, v in c.items() if k.startswith("op:"))
    return (
        f"fuzz[{where}]: {c['graphs']} graphs checked (requested {requested}), {steps} op applications, "
        f"{c['fanout_graphs']} with fan-out, {c['rejected']} of {c['drawn']} drawn rejected (kink/overflow); ops used "
        f"{len(ops)}/{len(OP_NAMES)}"
        + (f", never drawn: {missing}" if missing else "")
        + "; counts "
        + ", ".join(f"{k}={v}" for k, v in ops)
    )


OP_NAMES = sorted(set(XG_OPS))


def _run_and_count(where, inner, requested):
    STATS[where].clear()
    inner()
    line = _summary(where, requested)
    print("\n" + line)
    assert STATS[where]["graphs"] >= requested, line
    return STATS[where]


def test_fuzz_numpy_gradients_match_finite_differences():
    stats = _run_and_count("numpy", _fuzz_numpy, REQUESTED["numpy"])
    assert stats["fanout_graphs"] > 0, "the strategy never produced fan-out"
    if LONG:  # a long run must have exercised every op
        used = {k[3:] for k in stats if k.startswith("op:")}
        assert used == set(OP_NAMES), f"ops never drawn: {sorted(set(OP_NAMES) - used)}"


def test_fuzz_array_api_strict_gradients_match_finite_differences():
    pytest.importorskip("array_api_strict")
    _run_and_count("array_api_strict", _fuzz_strict, REQUESTED["array_api_strict"])


# ---- second order on random graphs -----------------------------------------------------------


@SECOND_PROFILE
@given(programs())
def _fuzz_second_order(p):
    """create_graph=True on a random graph: the gradient's own gradient vs finite differences
    of the gradient (gradcheck of x -> grad(x), recomputed at each perturbed point)."""
    leaves = make_leaves(p)
    out, kept = _forward(p, leaves)
    _valid("second_order", p, kept)
    wanted = [i for i, t in enumerate(leaves) if t.requires_grad]
    w = xg.tensor(np.random.default_rng(3).uniform(0.5, 1.5, size=out.shape), dtype="float64")

    def gradient(*ins):
        with xg.set_grad_enabled(True):
            o = run_program(p, ins, XG_OPS)
            gs = xg.grad([o], [ins[i] for i in wanted], grad_outputs=[w], create_graph=True)
            return xg.concat([g.reshape(-1) for g in gs])

    first = gradient(*leaves)
    plain = xg.grad([out], [leaves[i] for i in wanted], grad_outputs=[w])
    np.testing.assert_allclose(
        first.numpy(), np.concatenate([g.numpy().reshape(-1) for g in plain]), rtol=1e-12, atol=1e-12, err_msg=repr(p)
    )
    if first.requires_grad:
        gradcheck(gradient, leaves)
    else:  # the engine says the gradient is constant: it must not move when the differentiated leaves do
        for i in wanted:
            leaves[i].data = np.asarray(leaves[i].data + 1e-3)
        np.testing.assert_allclose(
            gradient(*leaves).numpy(),
            first.numpy(),
            rtol=1e-9,
            atol=1e-12,
            err_msg=f"gradient has no graph but depends on the inputs\n{p!r}",
        )
        STATS["second_order"]["constant_gradient"] += 1
    _note("second_order", p, _has_fanout(p))


def test_fuzz_second_order_matches_finite_differences():
    _run_and_count("second_order", _fuzz_second_order, REQUESTED["second_order"])


def test_fuzzer_catches_a_wrong_backward_rule(monkeypatch):
    """The harness can fail: with tanh's local gradient broken (dy*(1-y) instead of
    dy*(1-y^2)) the same search finds a graph whose gradient disagrees with finite differences."""
    from xpgrad.ops import activation

    monkeypatch.setattr(activation.Tanh, "backward", lambda self, F, gy, args, y: (gy * (1 - y),))

    @settings(
        max_examples=50,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(programs(kinds=("tanh", "add", "mul", "sum")))
    def search(p):
        check_program(p, "numpy")

    with pytest.raises((GradcheckError, ExceptionGroup)) as info:
        search()
    assert "gradient wrong" in str(info.value) or any(
        isinstance(e, GradcheckError) for e in getattr(info.value, "exceptions", ())
    )


# ---- PyTorch cross-check ----------------------------------------------------------------------


def _torch_ops():
    F = torch.nn.functional

    def reduce(fn):
        def apply(a, axis, keepdims):
            dims = tuple(range(a.ndim)) if axis is None else ((axis,) if isinstance(axis, int) else axis)
            if a.ndim == 0:
                return a
            return fn(a, dim=dims, keepdim=keepdims)

        return apply

    def index(a, index):
        if isinstance(index, np.ndarray):
            return a[torch.as_tensor(index)]
        return a[index]

    def hinge(s, labels, margin):
        y = torch.as_tensor(labels)
        hot = F.one_hot(y, s.shape[1]).to(s.dtype)
        correct = (s * hot).sum(dim=1, keepdim=True)
        return (torch.relu(s - correct + margin) * (1 - hot)).sum() / s.shape[0]

    def maxout(a, pieces):
        return a.reshape(a.shape[:-1] + (a.shape[-1] // pieces, pieces)).amax(dim=-1)

    return {
        "neg": lambda a: -a,
        "exp": torch.exp,
        "log": torch.log,
        "sqrt": torch.sqrt,
        "abs": torch.abs,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": lambda a, slope: F.leaky_relu(a, slope),
        "elu": lambda a, alpha: F.elu(a, alpha),
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
        "pow": lambda a, b: a**b,
        "maximum": torch.maximum,
        "minimum": torch.minimum,
        "where": lambda a, b, cond: torch.where(torch.as_tensor(cond), a, b),
        "add_s": lambda a, c: a + c,
        "radd_s": lambda a, c: c + a,
        "sub_s": lambda a, c: a - c,
        "rsub_s": lambda a, c: c - a,
        "mul_s": lambda a, c: a * c,
        "rmul_s": lambda a, c: c * a,
        "div_s": lambda a, c: a / c,
        "rdiv_s": lambda a, c: c / a,
        "pow_s": lambda a, c: a**c,
        "rpow_s": lambda a, c: c**a,
        "sum": reduce(torch.sum),
        "mean": reduce(torch.mean),
        "max": reduce(torch.amax),
        "min": reduce(torch.amin),
        "softmax": lambda a, axis: torch.softmax(a, dim=axis),
        "log_softmax": lambda a, axis: torch.log_softmax(a, dim=axis),
        "reshape": lambda a, shape: a.reshape(shape),
        "transpose": lambda a, axes: a.permute(*axes),
        "broadcast_to": lambda a, shape: a.expand(shape),
        "getitem": index,
        "concat": lambda *xs, axis: torch.cat(xs, dim=axis),
        "stack": lambda *xs, axis: torch.stack(xs, dim=axis),
        "matmul": lambda a, b: a @ b,
        "linear": lambda x, W, b=None: x @ W if b is None else x @ W + b,
        "linear_act": lambda x, W, b=None, activation=None: (torch.relu if activation == "relu" else torch.sigmoid)(
            x @ W if b is None else x @ W + b
        ),
        "softmax_cross_entropy": lambda z, labels: F.cross_entropy(z, torch.as_tensor(labels)),
        "hinge_loss": hinge,
        "mse_loss": lambda p, t: ((p - t) ** 2).mean(),
        "maxout": maxout,
    }


@TORCH_PROFILE
@given(programs())
def _fuzz_torch(p):
    leaves = make_leaves(p)
    out, kept = _forward(p, leaves)
    _valid("torch", p, kept)
    wanted = [i for i, t in enumerate(leaves) if t.requires_grad]
    w = np.random.default_rng(2).uniform(0.5, 1.5, size=out.shape)
    grads = xg.grad([out], [leaves[i] for i in wanted], grad_outputs=[xg.tensor(w, dtype="float64")])

    tleaves = [torch.tensor(v, dtype=torch.float64, requires_grad=rg) for v, (_, rg) in zip(leaf_values(p), p.leaves)]
    tout = run_program(p, tleaves, TORCH_OPS)
    np.testing.assert_allclose(
        out.numpy(), tout.detach().numpy(), rtol=1e-9, atol=1e-11, err_msg=f"forward differs from torch\n{p!r}"
    )
    tgrads = torch.autograd.grad(
        [tout], [tleaves[i] for i in wanted], grad_outputs=[torch.from_numpy(w)], allow_unused=True
    )
    for i, g, tg in zip(wanted, grads, tgrads):
        expected = np.zeros(leaves[i].shape) if tg is None else tg.numpy()
        np.testing.assert_allclose(
            g.numpy(), expected, rtol=1e-8, atol=1e-10, err_msg=f"gradient of leaf v{i} differs from torch\n{p!r}"
        )
    _note("torch", p, _has_fanout(p))


TORCH_OPS = _torch_ops() if torch is not None else None


@pytest.mark.skipif(
    torch is None, reason="PyTorch is not installed: the torch cross-check is skipped (pip install torch to run it)"
)
def test_fuzz_matches_pytorch_autograd():
    _run_and_count("torch", _fuzz_torch, REQUESTED["torch"])


def test_interpreters_cover_every_op():
    """The fuzzer draws every op kind, and both interpreters know every op the programs emit."""
    emitted = set(XG_OPS)
    assert set(OP_KINDS) - {"gram"} <= emitted
    if TORCH_OPS is not None:
        assert set(TORCH_OPS) == emitted
