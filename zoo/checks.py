"""Input checks shared by zoo's public entry points, and the opt-in checked mode.

Shape errors are static: shapes are known before tracing, so every public
entry point checks them in Python and raises ``ValueError`` naming the
argument, its shape and what was expected, under ``jit`` or not.

Value errors (a sequence length out of range, a token id outside the
vocabulary) can only be seen where values are concrete. zoo raises them
eagerly when it is handed concrete arrays. Inside ``jax.jit`` the values are
abstract, so zoo instead emits a ``checkify.debug_check``, which costs nothing
and does nothing unless the computation is run under ``checkify``. To turn the
checks on inside ``jit``, wrap the function with :func:`checked`::

    apply = zoo.checked(jax.jit(model.apply))
    y = apply(params, x, seq_lengths=lengths)   # raises on a bad length

or use ``jax.experimental.checkify.checkify`` yourself and call
``err.throw()``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = ["checked", "is_concrete", "check_range", "shape_str", "renamed_arguments"]


def shape_str(shape) -> str:
    """A shape as Python writes a tuple: (7,) (2, 3) ()."""
    return str(tuple(int(d) for d in shape))


def is_concrete(x: Any) -> bool:
    """True when ``x`` has values Python can read (not a tracer under jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_range(name: str, x: Any, low: int, high: int, what: str) -> None:
    """Check ``low <= x <= high`` elementwise for an integer array argument.

    Raises ``ValueError`` when ``x`` is concrete; emits a ``checkify``
    debug check when it is traced (active only under :func:`checked`).
    """
    if is_concrete(x):
        values = np.asarray(x)
        bad = (values < low) | (values > high)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{name} must be {what} (between {low} and {high}); "
                f"got {values[first]} at index {first}"
            )
        return
    x = jnp.asarray(x)
    checkify.debug_check(
        jnp.all((x >= low) & (x <= high)),
        f"{name} must be {what} (between {low} and {high}); got values from {{lo}} to {{hi}}",
        lo=jnp.min(x),
        hi=jnp.max(x),
    )


def checked(fn: Callable) -> Callable:
    """Run ``fn`` with zoo's value checks active, also inside ``jit``.

    Returns a function with the same arguments and result that raises
    ``jax.experimental.checkify.JaxRuntimeError`` (message naming the
    argument and the values) when a check fails. ``fn`` may itself be
    jitted (``checked(jax.jit(f))``); the wrapper itself runs eagerly, since
    it reads the error to raise it.

    Examples:
      >>> attend = zoo.checked(jax.jit(
      ...     lambda q, n: zoo.dot_product_attention(q, q, q, key_value_seq_lengths=n)))
      >>> q = jnp.ones((1, 4, 2, 8))
      >>> attend(q, jnp.array([3])).shape
      (1, 4, 2, 8)
      >>> try:
      ...     attend(q, jnp.array([9]))  # a length past S = 4, caught inside jit
      ... except Exception as error:
      ...     print(type(error).__name__)
      JaxRuntimeError
    """
    checkified = checkify.checkify(fn, errors=checkify.user_checks)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        err, out = checkified(*args, **kwargs)
        err.throw()
        return out

    return wrapper


def renamed_arguments(**old_to_new: str) -> Callable:
    """Keep old keyword names working for one release, with a ``DeprecationWarning``.

        @renamed_arguments(kv_seq_lengths="key_value_seq_lengths")
        def __call__(self, inputs_q, *, key_value_seq_lengths=None): ...

    Passing both the old and the new name is a ``TypeError``.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__qualname__}: got {old}= and {new}=; {old} is the old name of {new}")
                    warnings.warn(f"{fn.__qualname__}: {old}= is now called {new}= (the old name goes in the next "
                                  "release)", DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
