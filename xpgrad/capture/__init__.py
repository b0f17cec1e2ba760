"""`xg.capture(fn)`: record a training step once, replay it with no Python per op.

    @xg.capture
    def step(x, y):
        loss = xg.softmax_cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

Call 1 of each signature (shape, dtype and requires_grad of every tensor argument, the values
of the other arguments, grad mode and the kernels switch) runs eagerly, so lazily made state
(optimizer buffers) exists; call 2 runs eagerly while recording every NumPy call and Numba
kernel the step makes (trace.py); later calls replay a generated straight-line function over
buffers fixed at capture (plan.py). The results are eager's, bit for bit: the same calls in the
same order on the same values. What a replay re-reads, and what it bakes in:

- re-read on every call: the tensor arguments (copied into static buffers), the arrays of the
  tensors behind fn's closure (parameters, `.grad`, optimizer buffers), `optimizer.lr` and the
  step counts (an optimizer's and a scheduler's `step()` run again as Python), the random
  generator (dropout, `xg.randn` and `xg.rand` draw afresh from the generator `xg.manual_seed` set);
- guarded (a change captures again): argument signatures, the Python numbers, strings and
  flags in fn's closure, in the globals it names and on the modules it reaches (`training`,
  dropout's `p`), the identity of every parameter array (`W.data = new` captures again);
- baked in: which Python branches ran, Python numbers computed inside fn, constants made
  inside fn;
- refused with CaptureError: a value brought back to Python in the middle of the step
  (`.item()`, `.numpy()`, `float(t)`, `bool(t)`, `if loss > x:`, printing a tensor), naming the
  op and the line, and arrays made by code capture does not see.

Returned tensors are copies (never overwritten by a later call) and carry no graph. A `.grad`
left by a replay lives in a buffer the next replay rewrites (as a parameter's data is updated in
place). `check=True` (or `check=N`: every N-th call) replays, then runs fn eagerly from the same
state and raises CaptureError when the op sequence or any value differs (NumPy steps). CuPy
steps are captured as CUDA graphs, piecewise around cuBLAS and host reads (cuda.py; written, not
yet run on a GPU). Other array libraries (array_api_strict) and XPGRAD_DEBUG run eagerly on
every call, with the same results.
"""

import sys
import types

from ..errors import CaptureError
from .captured import MAX_SIGNATURES, Captured, CaptureWarning, capture

__all__ = ["MAX_SIGNATURES", "CaptureError", "CaptureWarning", "Captured", "capture"]


class _CallablePackage(types.ModuleType):
    """`xg.capture` is this package and, called, `capture` itself: `xg.capture(fn)`, `@xg.capture`."""

    def __call__(self, fn=None, *, check=False, max_signatures: int = MAX_SIGNATURES):
        return capture(fn, check=check, max_signatures=max_signatures)


sys.modules[__name__].__class__ = _CallablePackage
