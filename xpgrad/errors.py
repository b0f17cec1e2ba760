"""The exceptions xpgrad raises. Each message names the op, what was given and what was expected."""


class XpgradError(Exception):
    """Base class of every error xpgrad raises on purpose."""


class BackendError(XpgradError, RuntimeError):
    """The array backend asked for cannot be used."""


class UnknownBackendError(BackendError, ValueError):
    """XPGRAD_BACKEND (or set_backend) names no known backend."""


class CupyNotInstalledError(BackendError, ImportError):
    """The CuPy backend was asked for but CuPy is not installed."""


class NoGPUError(BackendError):
    """The CuPy backend was asked for but no usable CUDA GPU is present."""


class DeviceMismatchError(XpgradError, ValueError):
    """One op was given tensors on different devices or array libraries."""


class ShapeError(XpgradError, ValueError):
    """An op was given operands whose shapes do not fit together."""


class NotATensorError(XpgradError, TypeError):
    """An op was given something other than a Tensor (an array, a list) where it needs one."""


class DTypeError(XpgradError, TypeError):
    """An op was given a dtype it does not accept."""


class LabelError(XpgradError, IndexError):
    """Class labels out of range for a classification loss."""


class NoGraphError(XpgradError, RuntimeError, ValueError):
    """backward() or xg.grad() was asked to differentiate through a tensor that does not require grad."""


class GraphFreedError(XpgradError, RuntimeError):
    """backward() reached a node whose saved buffers were already freed."""


class NonFiniteError(XpgradError, FloatingPointError):
    """XPGRAD_DEBUG found NaN or Inf in a forward value or a gradient."""


class CaptureError(XpgradError, RuntimeError):
    """xg.capture cannot record or replay a step faithfully (a value read back to Python in the
    middle of the step, an array made outside what capture records, a replay that diverged
    from eager in check mode)."""
