"""Plain NumPy versions of the kernels: the oracle in the kernel tests and the unfused baseline
in the kernel benchmarks. Same formulas as the kernels, written as ordinary array expressions."""

import numpy as np


def sigmoid_backward(y, dy):
    return dy * y * (1 - y)


def bias_act_backward(y, dy, activation):
    dz = dy * y * (1 - y) if activation == "sigmoid" else np.where(y > 0, dy, 0)
    return dz, dz.sum(axis=0)


def bias_act_forward(z, b, activation):
    t = z if b is None else z + b
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-t))
    if activation == "relu":
        return np.maximum(t, 0)
    return t


def softmax_xent_forward(logits, labels):
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(logits.shape[0])
    loss = (np.log(s[:, 0]) + m[:, 0] - logits[rows, labels]).astype(np.float64).mean()
    return loss, e / s


def softmax_xent_backward(probs, labels, scale):
    onehot = np.zeros_like(probs)
    onehot[np.arange(probs.shape[0]), labels] = 1
    return (probs - onehot) * scale


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    g = grad + weight_decay * param
    if momentum != 0:
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    param -= lr * g


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    g = grad + weight_decay * param
    m += (1 - beta1) * (g - m)
    v *= beta2
    v += (1 - beta2) * g * g
    denom = np.sqrt(v) / np.sqrt(1 - beta2**step) + eps
    param -= lr / (1 - beta1**step) * m / denom


def scatter_add(target, indices, values):
    np.add.at(target, indices, values)
