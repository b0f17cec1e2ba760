"""matmul (1-D, 2-D, batched) and the Affine layer `linear` as one node."""
from __future__ import annotations

from ..autograd import Node, apply2, apply_n
from ..errors import ShapeError
from ..tensor import Tensor


class MatMul(Node):
    """a @ b. Local gradients: da = g @ b^T, db = a^T @ g (1-D operands promoted to matrices)."""

    __slots__ = ()
    name = "matmul"
    broadcasts = True  # batch dimensions are summed back by the engine

    def forward(self, xp, a, b):
        return a @ b

    def backward(self, F, gy, args, y):
        a, b = args
        ga = gb = None
        if len(a.shape) == 1 and len(b.shape) == 1:
            return (gy * b if self.needs(0) else None), (gy * a if self.needs(1) else None)
        if len(a.shape) == 1:  # (k,) @ (..., k, n) -> (..., n)
            g = F.reshape(gy, tuple(gy.shape[:-1]) + (1, gy.shape[-1]))
            if self.needs(0):
                ga = F.reshape(g @ b.mT, tuple(gy.shape[:-1]) + (a.shape[0],))
            if self.needs(1):
                gb = F.reshape(a, (a.shape[0], 1)) * g
            return ga, gb
        if len(b.shape) == 1:  # (..., m, k) @ (k,) -> (..., m)
            g = F.reshape(gy, tuple(gy.shape) + (1,))
            if self.needs(0):
                ga = g * b
            if self.needs(1):
                gb = F.reshape(a.mT @ g, tuple(gy.shape[:-1]) + (b.shape[0],))
            return ga, gb
        if self.needs(0):
            ga = gy @ b.mT
        if self.needs(1):
            gb = a.mT @ gy
        return ga, gb


class Linear(Node):
    """The Affine layer y = x @ W + b as one node: dx = dy W^T, dW = x^T dy, db = sum(dy, axis=0)."""

    __slots__ = ()
    name = "linear"

    def forward(self, xp, x, W, b=None):
        y = x @ W
        if b is None:
            return y
        if b.dtype == y.dtype:
            y += b  # in place: the GEMM output is ours
            return y
        return y + b

    def backward(self, F, gy, args, y):
        x, W = args[0], args[1]
        n_in, n_out = W.shape
        g2 = F.reshape(gy, (-1, n_out)) if len(gy.shape) != 2 else gy
        gx = gy @ W.mT if self.needs(0) else None
        gW = None
        if self.needs(1):
            x2 = F.reshape(x, (-1, n_in)) if len(x.shape) != 2 else x
            gW = x2.mT @ g2
        if len(args) == 2:
            return gx, gW
        gb = F.sum(g2, axis=0) if self.needs(2) else None
        return gx, gW, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy semantics (1-D, 2-D and batched operands)."""
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ShapeError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape} ({ka} != {kb})")
    return apply2(MatMul(), a, b)


def linear(x: Tensor, W: Tensor, b: Tensor | None = None) -> Tensor:
    """x @ W + b with W of shape (in, out), as one node (the notes' Affine layer)."""
    if W.ndim != 2:
        raise ShapeError(f"linear: W must be 2-D (in_features, out_features), got shape {W.shape}")
    if x.ndim == 0 or x.shape[-1] != W.shape[0]:
        raise ShapeError(f"linear: x has shape {x.shape} but W expects {W.shape[0]} input features (W shape {W.shape})")
    if b is None:
        return apply2(Linear(), x, W)
    if b.shape != (W.shape[1],):
        raise ShapeError(f"linear: b must have shape ({W.shape[1]},) to match W {W.shape}, got {b.shape}")
    return apply_n(Linear(), (x, W, b))
