"""Where the CPU kernels' compiled code is cached: the user's cache folder, never the package's.

Numba's `cache=True` writes beside the source (`kernels/__pycache__`) whenever it can. For an
installed xpgrad that folder is inside site-packages, and what Numba wrote there outlives
`pip uninstall`: the `xpgrad/` folder left behind, now without `__init__.py`, shadows a later
editable install as a namespace package (`cannot import name '__version__' from 'xpgrad'
(unknown location)`). So the kernels look up Numba's locators in another order: NUMBA_CACHE_DIR
when the user sets it, then Numba's user-wide cache folder (`~/.cache/numba`, or under
`$XDG_CACHE_HOME`; one subfolder per source folder, invalidated by the source's own stamp), and
the in-tree folder only where the user-wide one is not writable.
"""

from numba import njit
from numba.core import caching


def _numba_class(*names):
    """The first of `names` that numba.core.caching defines (Numba 0.68 dropped the underscores)."""
    for name in names:
        found = getattr(caching, name, None)
        if found is not None:
            return found
    raise ImportError(f"numba.core.caching defines none of {names}")


class _KernelCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [
        _numba_class("UserProvidedCacheLocator", "_UserProvidedCacheLocator"),
        _numba_class("UserWideCacheLocator", "_UserWideCacheLocator"),
        _numba_class("InTreeCacheLocator", "_InTreeCacheLocator"),
    ]


class _KernelCache(caching.FunctionCache):
    _impl_class = _KernelCacheImpl


def cached_njit(**options):
    """`numba.njit(cache=True, **options)`, caching outside the package folder (see above)."""
    compile_lazily = njit(**options)

    def decorate(fn):
        dispatcher = compile_lazily(fn)
        dispatcher._cache = _KernelCache(dispatcher.py_func)  # what Dispatcher.enable_caching does, other locators
        return dispatcher

    return decorate
