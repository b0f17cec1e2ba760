"""matmul (1-D, 2-D, batched) and the Affine layer `linear` as one node."""

from __future__ import annotations

import operator

import numpy as np

from ..autograd import Node, apply2, apply_n, array_fns, constant_like, tensor_operands
from ..errors import ShapeError
from ..tensor import Tensor
from .activation import act_grad
from .reduce import sum as reduce_sum


class MatMul(Node):
    """a @ b. Local gradients: da = g @ b^T, db = a^T @ g (1-D operands promoted to matrices)."""

    __slots__ = ()
    name = "matmul"
    broadcasts = True  # batch dimensions are summed back by the engine
    array_op = operator.matmul  # forward: a @ b, called by apply2 with no forward frame (NumPy arrays)

    def forward(self, xp, a, b):
        """a @ b through the arrays' function table (TableMatMul's forward)."""
        return array_fns(a).matmul(a, b)

    def backward(self, F, gy, args, y):
        a, b = args
        ga = gb = None
        if len(a.shape) > 1 and len(b.shape) > 1:  # matrices (or stacks of them): the usual case first
            if 0 in self.takes_grad:
                ga = F.matmul(gy, b.mT)
            if 1 in self.takes_grad:
                gb = F.matmul(a.mT, gy)
            return ga, gb
        if len(a.shape) == 1 and len(b.shape) == 1:
            return (gy * b if 0 in self.takes_grad else None), (gy * a if 1 in self.takes_grad else None)
        if len(a.shape) == 1:  # (k,) @ (..., k, n) -> (..., n)
            g = F.reshape(gy, tuple(gy.shape[:-1]) + (1, gy.shape[-1]))
            if 0 in self.takes_grad:
                ga = F.reshape(F.matmul(g, b.mT), tuple(gy.shape[:-1]) + (a.shape[0],))
            if 1 in self.takes_grad:
                gb = F.reshape(a, (a.shape[0], 1)) * g
            return ga, gb
        g = F.reshape(gy, tuple(gy.shape) + (1,))  # (..., m, k) @ (k,) -> (..., m)
        if 0 in self.takes_grad:
            ga = g * b
        if 1 in self.takes_grad:
            gb = F.reshape(F.matmul(a.mT, g), tuple(gy.shape[:-1]) + (b.shape[0],))
        return ga, gb


class Linear(Node):
    """The Affine layer y = x @ W + b as one node: dx = dy W^T, dW = x^T dy, db = sum(dy, axis=0)."""

    __slots__ = ("activation",)
    name = "linear"

    def forward(self, xp, x, W, b=None):
        F = array_fns(x)
        z = F.matmul(x, W)
        if b is None and self.activation is None:
            return z
        return F.bias_act(z, b, self.activation)

    def pre_activation_grad(self, F, gy, y, with_bias: bool):
        """(dz, db): the gradient before the affine map's output activation (none here)."""
        return gy, (F.sum(gy, axis=0) if with_bias else None)

    def backward(self, F, gy, args, y):
        x, W = args[0], args[1]
        n_in, n_out = W.shape
        if len(gy.shape) != 2:  # (..., out): the batch dimensions flatten into rows
            gy = F.reshape(gy, (-1, n_out))
            y = F.reshape(y, (-1, n_out)) if y is not None else None
        dz, db = self.pre_activation_grad(F, gy, y, len(args) == 3 and 2 in self.takes_grad)
        gx = gW = None
        if 0 in self.takes_grad:
            gx = F.matmul(dz, W.mT)
            if len(x.shape) != 2:
                gx = F.reshape(gx, tuple(x.shape))
        if 1 in self.takes_grad:
            rows = F.reshape(x, (-1, n_in)) if len(x.shape) != 2 else x
            gW = F.matmul(rows.mT, dz)
        return (gx, gW) if len(args) == 2 else (gx, gW, db)


class LinearAct(Linear):
    """act(x @ W + b) as one node: bias add and activation in one pass over the GEMM output, and
    in backward the activation gradient and db = sum(dz, axis=0) in one pass (fused kernels)."""

    __slots__ = ()
    name = "linear_act"
    saves_output = True

    def pre_activation_grad(self, F, gy, y, with_bias: bool):
        return F.bias_act_grad(self.activation, y, gy, with_bias)


def bias_act_grad(activation: str, y: Tensor, gy: Tensor, with_bias: bool):
    """Differentiable (dz, db) of act(z + b) given its output y (create_graph path of LinearAct)."""
    dz = act_grad(activation, y, gy)
    return dz, (reduce_sum(dz, axis=0) if with_bias else None)


ACTIVATIONS = (None, "identity", "relu", "sigmoid")


class TableMatMul(MatMul):
    """MatMul for arrays other than NumPy's: the product goes through their function table, so on
    CuPy a CUDA-graph capture in this thread can run it (cuBLAS) between graphs."""

    __slots__ = ()
    array_op = None


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy semantics (1-D, 2-D and batched operands)."""
    if type(a) is not Tensor or type(b) is not Tensor:
        a, b = tensor_operands("matmul", a, b)
    a_data = a.data
    a_shape, b_shape = a_data.shape, b.data.shape  # raw shapes: this runs on every product
    if not a_shape or not b_shape:
        raise ShapeError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
    ka = a_shape[-1]
    kb = b_shape[0] if len(b_shape) == 1 else b_shape[-2]
    if ka != kb:
        raise ShapeError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape} ({ka} != {kb})")
    return apply2(MatMul() if isinstance(a_data, np.ndarray) else TableMatMul(), a, b)


def linear(x: Tensor, W: Tensor, b: Tensor | None = None, activation: str | None = None) -> Tensor:
    """x @ W + b with W of shape (in, out), as one node (the notes' Affine layer).

    `activation` ("relu" or "sigmoid") fuses the activation into the same node: one pass over
    the GEMM output forward, one pass for dz and db backward (Numba kernels on NumPy).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"linear: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if type(x) is not Tensor or type(W) is not Tensor:
        x, W = tensor_operands("linear", x, W)
    if b is not None and type(b) is not Tensor:
        b = constant_like(b, W)
    x_shape, w_shape = x.data.shape, W.data.shape  # raw shapes: these checks run on every layer call
    if len(w_shape) != 2:
        raise ShapeError(f"linear: W must be 2-D (in_features, out_features), got shape {W.shape}")
    if not x_shape or x_shape[-1] != w_shape[0]:
        raise ShapeError(f"linear: x has shape {x.shape} but W expects {w_shape[0]} input features (W shape {W.shape})")
    node = Linear() if activation is None or activation == "identity" else LinearAct()
    node.activation = None if activation == "identity" else activation
    if b is None:
        return apply2(node, x, W)
    if b.data.shape != w_shape[1:]:
        raise ShapeError(f"linear: b must have shape ({w_shape[1]},) to match W {W.shape}, got {b.shape}")
    return apply_n(node, (x, W, b))
