"""Functions written once in numba's subset of Python, run interpreted or compiled.

Why not plain ``numba.njit``: importing numba and loading even a cached compiled function costs
about half a second per process, more than a whole six-month backtest takes. The paper console,
the live broker and small backtests should not pay that, while a backtest of millions of bars
must run compiled. So a rule is written once, as an ordinary Python function marked ``@kernel``,
and callers choose:

* calling the function itself runs it in the interpreter (numba is never imported);
* ``compiled(fn)`` returns the numba-compiled version, compiling (or loading from numba's
  on-disk cache) ``fn`` and every kernel of its module on first use.

Both are the same source, so there is one implementation of each rule. Compilation uses no
fastmath: the compiled code does the same IEEE operations in the same order as the interpreter
(no reassociation, no fused multiply-add), so both give bit-identical numbers; the tests compare
them on the shared data (``tests/core/test_jit_parity.py``).

When compiling pays is the caller's decision (``tradeconsole.backtest.runner.use_compiled``:
by the number of bars, or ``TRADECONSOLE_JIT``); the live broker always runs interpreted.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable
from typing import Any

__all__ = ["compiled", "is_compiled_available", "kernel"]

_KERNELS: dict[str, dict[str, Callable[..., Any]]] = {}  # module name -> kernel name -> function
_COMPILED: dict[str, dict[str, Any]] = {}  # module name -> kernel name -> numba dispatcher
_LOCK = threading.Lock()


def kernel[F: Callable[..., Any]](fn: F) -> F:
    """Mark ``fn`` as a kernel of its module: it stays an ordinary Python function (call it to run
    it interpreted); ``compiled(fn)`` gives its numba version. A kernel may call other kernels of
    its own module by name; the compiled versions then call each other compiled."""
    _KERNELS.setdefault(fn.__module__, {})[fn.__name__] = fn
    return fn


def compiled[F: Callable[..., Any]](fn: F) -> F:
    """The numba-compiled version of kernel ``fn`` (the first call in a process imports numba and
    builds the dispatchers of all kernels of ``fn``'s module; machine code comes from numba's cache
    when the source is unchanged)."""
    mod = fn.__module__
    got = _COMPILED.get(mod)
    if got is None:
        with _LOCK:
            got = _COMPILED.get(mod)
            if got is None:
                got = _COMPILED[mod] = _compile_module(mod)
    return got[fn.__name__]  # type: ignore[no-any-return]


def _compile_module(mod: str) -> dict[str, Any]:
    from numba import njit

    kernels = _KERNELS.get(mod)
    if not kernels:
        raise ValueError(f"{mod} declares no kernels")
    # The compiled functions resolve each other through a namespace of their own, a copy of the
    # module's globals in which every kernel name is its dispatcher: the module itself keeps the
    # plain functions, so interpreted callers never meet a dispatcher.
    namespace = dict(vars(sys.modules[mod]))
    dispatchers: dict[str, Any] = {}
    for name, fn in kernels.items():
        clone = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
        clone.__qualname__, clone.__module__, clone.__doc__ = fn.__qualname__, fn.__module__, fn.__doc__
        dispatchers[name] = njit(cache=True, nogil=True)(clone)
    namespace.update(dispatchers)
    return dispatchers


def is_compiled_available() -> bool:
    """Whether numba can be imported here (it is a declared dependency; this guards odd installs)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True
