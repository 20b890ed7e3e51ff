"""Helpers shared by every distribution: the validation default, shapes, dtypes,
parameter promotion and the compiled validation checks.

May import (within jsvi): ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, ArrayLike, Shape
from jsvi.errors import ArgumentError, ShapeError

__all__ = [
    "as_shape",
    "enable_validation",
    "float_dtype",
    "int_dtype",
    "promote_params",
    "sum_rightmost",
    "validation_enabled",
]

_VALIDATION: list[bool] = [True]


def enable_validation(flag: bool = True) -> None:
    """Set the default of ``validate_args`` for distributions created afterwards.

    Args:
        flag: True (the initial default) checks arguments and observed values of
            every distribution built with ``validate_args=None``; False skips the
            checks (no extra work at all).

    Example:
        >>> enable_validation(False)
        >>> enable_validation(True)
    """
    _VALIDATION[0] = bool(flag)


def validation_enabled() -> bool:
    """The current default of ``validate_args``."""
    return _VALIDATION[0]


# ------------------------------------------------------------------- helpers


def as_shape(shape: int | Sequence[int], where: str = "sample_shape") -> Shape:
    """Normalize a shape given as an int or a sequence of ints to a tuple."""
    if isinstance(shape, int | np.integer):
        return (int(shape),)
    try:
        return tuple(int(s) for s in shape)
    except TypeError:
        raise ArgumentError(
            f"{where}: expected a tuple of ints, got {shape!r}. Pass e.g. (100,)."
        ) from None


def float_dtype(*args: Any) -> Any:
    """The floating dtype parameters built from ``args`` should have."""
    dtype = jnp.result_type(float, *args)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def int_dtype() -> Any:
    """The default integer dtype (int32, or int64 under ``jax_enable_x64``)."""
    return jnp.asarray(0).dtype


def promote_params(where: str, **params: ArrayLike) -> list[Array]:
    """Cast parameters to one float dtype and broadcast them to one shape.

    Raises:
        ShapeError: if the shapes do not broadcast.
    """
    dtype = float_dtype(*params.values())
    arrays = [jnp.asarray(v, dtype=dtype) for v in params.values()]
    shapes = [a.shape for a in arrays]
    try:
        shape = jnp.broadcast_shapes(*shapes)
    except ValueError:
        desc = ", ".join(f"{k} {s}" for k, s in zip(params, shapes, strict=True))
        raise ShapeError(
            f"{where}: parameter shapes do not broadcast ({desc}). Give the "
            "parameters compatible shapes."
        ) from None
    return [jnp.broadcast_to(a, shape) for a in arrays]


def sum_rightmost(x: Array, n: int) -> Array:
    """Sum the ``n`` rightmost dims of ``x``."""
    return jnp.sum(x, axis=tuple(range(-n, 0))) if n > 0 else x


def _format_bad(value: Any, ok: Any, event_dim: int) -> str:
    """The entries of ``value`` where ``ok`` is False, for error messages."""
    try:
        v = np.asarray(value)
        ok_np = np.asarray(ok, dtype=bool)
        event = v.shape[v.ndim - event_dim :] if event_dim else ()
        v = np.broadcast_to(v, ok_np.shape + event)
        bad = v[~ok_np]
    except (ValueError, TypeError, IndexError):
        bad = np.asarray(value)
    return np.array2string(bad, threshold=8, edgeitems=3)


def _arg_flags(d: Any) -> dict[str, Array]:
    return {k: jnp.all(v) for k, v in d.validation_flags().items()}


def _value_flag(d: Any, value: Array) -> Array:
    return jnp.all(d._value_ok(value))


_arg_flags_jit = jax.jit(_arg_flags)
_value_flag_jit = jax.jit(_value_flag)


def _compiled(fn: Any, fallback: Any, *args: Any) -> Any:
    """Run a check as one compiled call (cheaper than op-by-op on new shapes),
    falling back to op-by-op evaluation when ``jit`` cannot hash the static data
    of a user-defined subclass."""
    try:
        return fn(*args)
    except TypeError:
        return fallback(*args)
