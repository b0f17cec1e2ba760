"""Shared test helpers: making tensors on a chosen backend with values away from kinks."""

import numpy as np

import xpgrad as xg

BACKENDS = ["numpy", "array_api_strict"]


def make(values, dtype="float64", requires_grad=True):
    """A tensor on the current backend from host `values`."""
    return xg.tensor(np.asarray(values), dtype=dtype, requires_grad=requires_grad)


def away_from_zero(rng, shape, low=0.2, high=2.0):
    """Random values with |v| in [low, high] (keeps abs/relu/max away from their kinks)."""
    mag = rng.uniform(low, high, size=shape)
    return mag * rng.choice([-1.0, 1.0], size=shape)


def distinct(rng, shape, offset=0.0):
    """Random values on a grid of step 0.37 shifted by `offset` (no ties for max/min; two calls
    with offsets 0 and 0.185 never come closer than 0.18 to each other)."""
    n = int(np.prod(shape)) if shape else 1
    return (rng.permutation(n).astype(np.float64) * 0.37 - 1.0 + offset).reshape(shape)
