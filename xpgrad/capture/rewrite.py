"""Rewrites of recorded calls that the replay makes cheaper with the same bits (used by
`plan.Plan` while it emits the replay's lines).

- `product_as_dot`: a 2-D product replays as `np.dot`, the same BLAS gemm as `np.matmul` for
  ~0.5 us less per call;
- `scaled_updates`: `t = s * g` then `x -= t` (or `+=`) in place, t read by nothing else (the
  manual update `p.data -= lr * p.grad.data`), replays as one pass with NumPy's rounding.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from .trace import Ref, _leaves


def product_as_dot(slots, op, out_index: int) -> bool:
    """Whether the matrix product `op` may replay as np.dot: two distinct 2-D float operands
    with every dimension > 1 and a C-contiguous output of their dtype, where np.dot makes the
    same BLAS gemm call as np.matmul (no gemv, no syrk) for ~0.5 us less per call. Checked
    on the capture's own arrays: the two must agree bit for bit, or the product stays matmul."""
    if op.kwargs or len(op.args) != 2 or not all(type(a) is Ref for a in op.args):
        return False
    a, b = (slots[ref.index].array for ref in op.args)
    out = slots[out_index].array
    if (
        a.ndim != 2
        or b.ndim != 2
        or min(a.shape + b.shape) < 2
        or a.dtype != b.dtype
        or a.dtype.char not in "fd"
        or out.dtype != a.dtype
        or not out.flags.c_contiguous
        or np.shares_memory(a, b)
    ):
        return False
    return np.array_equal(np.dot(a, b), np.matmul(a, b), equal_nan=True)


def scaled_updates(plan, ops, kept_whole: set) -> dict:
    """{k: one replay line} for each pair ops[k], ops[k + 1] that is `t = s * g` then `x -= t`
    (or `x += t`) in place, t a temp nothing else reads (the manual update `p.data -= lr *
    p.grad.data`): one pass of `kernels.unchecked.scaled_add`, same dtype and shape throughout,
    no FMA, so the bits of the two NumPy calls without writing and reading t."""
    read_later: dict = {}  # slot index -> last op position that reads it (or a view of it)
    for k, op in enumerate(ops):
        for leaf in _leaves((op.args, op.kwargs)):
            if type(leaf) is Ref:
                for index in plan._with_bases(leaf.index):
                    read_later[index] = k
    fused = {}
    for k in range(len(ops) - 1):
        scale, update = ops[k], ops[k + 1]
        if scale.fn is not np.multiply or scale.kind != "ufunc" or scale.kwargs or len(scale.results) != 1:
            continue
        t = scale.results[0][1]
        arrays = [a for a in scale.args if type(a) is Ref]
        numbers = [a for a in scale.args if type(a) in (float, int)]
        if len(arrays) != 1 or len(numbers) != 1 or t in kept_whole or read_later.get(t) != k + 1:
            continue
        if update.kind != "ufunc" or update.fn not in (np.subtract, np.add) or set(update.kwargs) != {"out"}:
            continue
        out = update.kwargs["out"]
        if type(out) is not tuple or len(out) != 1 or [type(a) for a in (*update.args, *out)] != [Ref, Ref, Ref]:
            continue
        x = out[0]
        operands = tuple(a.index for a in update.args)
        wanted = {(x.index, t)} if update.fn is np.subtract else {(x.index, t), (t, x.index)}
        if operands not in wanted:
            continue
        xa, ga, ta = plan.slots[x.index].array, plan.slots[arrays[0].index].array, plan.slots[t].array
        if (
            xa.dtype.char not in "fd"
            or not (xa.dtype == ga.dtype == ta.dtype)
            or not (xa.shape == ga.shape == ta.shape)
            or not (xa.flags.c_contiguous and ga.flags.c_contiguous)
            or np.shares_memory(xa, ga)
        ):
            continue
        sign = -1 if update.fn is np.subtract else 1
        call = plan.const(kernels.unchecked.scaled_add, "f")
        fused[k] = f"{call}({plan.name(x)}, {plan.name(arrays[0])}, {plan.expr(numbers[0])}, {sign})"
    return fused
