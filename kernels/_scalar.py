"""Per-element formulas shared by the CPU and CUDA kernels.

Plain Python on purpose: cpu.py compiles them with `njit(inline="always")`, cuda.py with
`cuda.jit(device=True)`. They call nothing else, so they compile on either target. `one` and
`zero` are passed in the array dtype so float32 kernels never promote to float64.
"""

import math

IDENTITY, SIGMOID, RELU = 0, 1, 2
ACTIVATIONS = {"identity": IDENTITY, "sigmoid": SIGMOID, "relu": RELU}


def act_grad(act, y, dy, one, zero):
    """dz from the activation output y and its gradient dy (SIGMOID or RELU)."""
    if act == SIGMOID:
        return dy * y * (one - y)
    return dy if y > zero else zero


def sgd_step(p, g, vel, lr, momentum, weight_decay, nesterov):
    """PyTorch SGD (dampening 0) for one element: returns (param, velocity)."""
    g = g + weight_decay * p
    if momentum != 0:
        vel = momentum * vel + g
        g = g + momentum * vel if nesterov else vel
    return p - lr * g, vel


def adam_step(p, g, m, v, step_size, beta2, c1, c2, eps, weight_decay, bc2_sqrt):
    """PyTorch Adam (L2 weight decay) for one element: returns (param, m, v).

    c1 = 1 - beta1, c2 = 1 - beta2, step_size = lr / (1 - beta1**step),
    bc2_sqrt = sqrt(1 - beta2**step).
    """
    g = g + weight_decay * p
    m = m + c1 * (g - m)
    v = beta2 * v + c2 * g * g
    return p - step_size * m / (math.sqrt(v) / bc2_sqrt + eps), m, v
