"""Random numbers drawn on the GPU: Philox4x32-10 (Salmon et al., SC'11; Random123) with its
state in device memory, so a CUDA-graph replay draws fresh values and the host never waits.

The state is a uint64 array (3,) on the device: [key0, key1, counter] (keys < 2**32). Draw
number k of a call (k = 0, 1, ...) is word k % 4 of Philox4x32-10 applied to the 128-bit counter
(lo32(counter + k // 4), hi32(counter + k // 4), 0, 0) under the key; after the call a second
one-thread kernel advances the counter by the blocks used (ceil(n / 4)). The counter is read
and advanced on the device only, so a captured graph keeps advancing it on every replay.
Normal draw k instead takes block k alone (Box-Muller on its words 0 and 1, the cosine branch:
sqrt(-2 ln u1) cos(2 pi u2), u1 = (word0 + 1) * 2**-32 in (0, 1], u2 = word1 * 2**-32), so a
call of n normals advances the counter by n.

`philox4x32_reference` is a pure-NumPy implementation of the same generator, written
independently of the kernel (vectorized over counters); the tests compare them bit for bit,
and against the Random123 known-answer vectors. Kernels are grid-stride, launched on CuPy's
current stream like those of `cuda.py`.
"""

import math

import numpy as np
from numba import cuda, uint64

from . import _frontend as F
from .cuda import _default_grid, _launch

__all__ = [
    "dropout_mask",
    "key_of",
    "normal",
    "philox4x32_reference",
    "reference_dropout_mask",
    "reference_normal",
    "seed_state",
    "uniform",
]

_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
_MASK32 = 0xFFFFFFFF
_INV_2_32 = 1.0 / 4294967296.0  # a uint32 times this: a float64 in [0, 1), exactly
_MASK, _UNIFORM, _NORMAL = 0, 1, 2  # what _fill writes


# ---- the NumPy reference -------------------------------------------------------------------
def philox4x32_reference(counters, key, rounds: int = 10) -> np.ndarray:
    """Philox4x32-`rounds` of uint32 counters (n, 4) under the uint32 key (2,): uint32 (n, 4)."""
    c = [np.asarray(counters, np.uint64)[:, i].copy() for i in range(4)]
    k0, k1 = (np.uint64(int(w)) for w in key)
    mask, m0, m1 = np.uint64(_MASK32), np.uint64(_M0), np.uint64(_M1)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + np.uint64(_W0)) & mask, (k1 + np.uint64(_W1)) & mask
        p0, p1 = m0 * c[0], m1 * c[2]  # < 2**64: exact in uint64
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & mask, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & mask]
    return np.stack(c, axis=1).astype(np.uint32)


def reference_words(key, counter: int, n: int) -> np.ndarray:
    """The n uint32 words a call draws from state (key, counter) (the layout above)."""
    blocks = -(-n // 4)
    ctr = np.arange(counter, counter + blocks, dtype=np.uint64)
    counters = np.stack([ctr & np.uint64(_MASK32), ctr >> np.uint64(32), 0 * ctr, 0 * ctr], axis=1)
    return philox4x32_reference(counters, key).reshape(-1)[:n]


def reference_dropout_mask(key, counter: int, shape, p: float, dtype=np.float64) -> np.ndarray:
    """What `dropout_mask` draws from state (key, counter): 1 / (1 - p) where word * 2**-32 >= p, else 0."""
    n = int(np.prod(shape))
    keep = reference_words(key, counter, n) * _INV_2_32 >= p
    return np.where(keep, dtype(1.0 / (1.0 - p)), dtype(0)).astype(dtype).reshape(shape)


def reference_normal(key, counter: int, shape, dtype=np.float64) -> np.ndarray:
    """What `normal` draws from state (key, counter): one Box-Muller value per Philox block."""
    n = int(np.prod(shape))
    ctr = np.arange(counter, counter + n, dtype=np.uint64)
    counters = np.stack([ctr & np.uint64(_MASK32), ctr >> np.uint64(32), 0 * ctr, 0 * ctr], axis=1)
    words = philox4x32_reference(counters, key).astype(np.float64)
    u1, u2 = (words[:, 0] + 1.0) * _INV_2_32, words[:, 1] * _INV_2_32
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)).astype(dtype).reshape(shape)


# ---- the kernels ---------------------------------------------------------------------------
@cuda.jit(device=True)
def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of one counter (four uint32 held in uint64) under (k0, k1): four uint32 words."""
    mask = uint64(_MASK32)
    for r in range(10):
        if r:
            k0 = (k0 + uint64(_W0)) & mask
            k1 = (k1 + uint64(_W1)) & mask
        p0 = uint64(_M0) * c0
        p1 = uint64(_M1) * c2
        c0, c1, c2, c3 = (p1 >> uint64(32)) ^ c1 ^ k0, p1 & mask, (p0 >> uint64(32)) ^ c3 ^ k1, p0 & mask
    return c0, c1, c2, c3


@cuda.jit(device=True)
def _word(words, lane):
    return words[0] if lane == 0 else words[1] if lane == 1 else words[2] if lane == 2 else words[3]


@cuda.jit
def _fill(state, mode, p, scale, out):
    """out[k] from the draws (u: a float64 in [0, 1)), by mode: _MASK: scale where u >= p, else 0
    (a dropout mask); _UNIFORM: u cast to out's dtype; _NORMAL: Box-Muller of block k. out 1-D."""
    f = out.dtype.type
    keep, drop = f(scale), f(0)
    base, k0, k1 = state[2], state[0], state[1]
    mask = uint64(_MASK32)
    per_block = 1 if mode == _NORMAL else 4
    for b in range(cuda.grid(1), (out.size + per_block - 1) // per_block, cuda.gridsize(1)):
        ctr = base + uint64(b)
        words = _philox(ctr & mask, ctr >> uint64(32), uint64(0), uint64(0), k0, k1)
        if mode == _NORMAL:
            u1 = (float(words[0]) + 1.0) * _INV_2_32
            u2 = float(words[1]) * _INV_2_32
            out[b] = f(math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2))
            continue
        for lane in range(4):
            k = 4 * b + lane
            if k < out.size:
                u = float(_word(words, lane)) * _INV_2_32
                out[k] = f(u) if mode == _UNIFORM else keep if u >= p else drop


@cuda.jit
def _advance(state, blocks):
    """state[2] += blocks (one thread): after the draw kernel, on the same stream."""
    if cuda.grid(1) == 0:
        state[2] += uint64(blocks)


@cuda.jit
def _seed(state, k0, k1):
    """state = [k0, k1, 0] (one thread; no host-to-device copy)."""
    if cuda.grid(1) == 0:
        state[0] = uint64(k0)
        state[1] = uint64(k1)
        state[2] = uint64(0)


# ---- entry points --------------------------------------------------------------------------
def key_of(host_generator) -> tuple:
    """The Philox key (two uint32) for a numpy.random.Generator: derived from its SeedSequence
    (a child stream of it, so the same seed gives the same device draws and the host stream is
    not consumed); a generator without one gives two draws of its own."""
    seq = getattr(host_generator.bit_generator, "seed_seq", None)
    if isinstance(seq, np.random.SeedSequence):
        words = np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, 0x5048)).generate_state(2, np.uint32)
    else:
        words = host_generator.integers(0, 2**32, size=2, dtype=np.uint64)
    return int(words[0]), int(words[1])


def seed_state(state, key) -> None:
    """Set a device state (uint64 (3,)) to `key` with the counter at 0, by a one-thread kernel."""
    _check_state(state)
    _launch(_seed, (1, 1), state, int(key[0]), int(key[1]))


def _check_state(state) -> None:
    if state.shape != (3,) or state.dtype != np.uint64:
        raise ValueError(f"random state must be uint64 of shape (3,), got {state.dtype} {state.shape}")


def _draw(state, out, mode, p, scale, grid):
    _check_state(state)
    if out.dtype.char not in "fd" or not out.flags.c_contiguous:
        raise TypeError(f"random kernels fill C-contiguous float32/float64 arrays, got {out.dtype}")
    flat = out.reshape(-1)
    blocks = flat.size if mode == _NORMAL else -(-flat.size // 4)
    if blocks:
        _launch(_fill, grid or _default_grid(blocks), state, mode, p, scale, flat)
        _launch(_advance, (1, 1), state, blocks)
    return out


def dropout_mask(state, shape, p: float, dtype=np.float64, *, grid=None):
    """A new (shape) array of `dtype` on state's device: 1 / (1 - p) where the draw is >= p, else
    0 (inverted dropout); the state's counter advances on the device. Nothing is read back."""
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout_mask: p must be in [0, 1), got {p!r}")
    out = F._xp(state).empty(shape, dtype)
    return _draw(state, out, _MASK, p, 1.0 / (1.0 - p), grid)


def uniform(state, out, *, grid=None):
    """Fill `out` (C-contiguous float32/float64) with draws in [0, 1) from the device state."""
    return _draw(state, out, _UNIFORM, 0.0, 1.0, grid)


def normal(state, out, *, grid=None):
    """Fill `out` (C-contiguous float32/float64) with standard normal draws from the device state."""
    return _draw(state, out, _NORMAL, 0.0, 1.0, grid)
