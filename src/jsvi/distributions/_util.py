"""Helpers shared by every distribution: the validation default, shapes, dtypes,
parameter promotion, the compiled validation checks and the Python-side argument,
value and ``expand`` checks that ``Distribution`` runs.

May import (within jsvi): ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, ArrayLike, Shape, is_concrete
from jsvi.errors import ArgumentError, ShapeError, SupportError

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


def check_args(d: Any) -> None:
    """Raise ``ArgumentError`` for a concrete argument outside its constraint."""
    if not d.arg_constraints or not d._all_concrete():
        return
    for arg, ok in _compiled(_arg_flags_jit, _arg_flags, d).items():
        if not is_concrete(ok) or bool(ok):  # staged out: nothing to check
            continue
        c, value = d.arg_constraints[arg], d._param(arg)
        raise ArgumentError(
            f"{type(d).__name__}: argument {arg!r} must satisfy {c!r}, got "
            f"{_format_bad(value, c.check(value), c.event_dim)}. Pass values "
            "inside the support, or validate_args=False to skip this check."
        )


def check_value(d: Any, value: ArrayLike) -> None:
    """Shape and support checks of a ``log_prob`` argument (Python-side)."""
    name = type(d).__name__
    value_shape = jnp.shape(value)
    full = d.batch_shape + d.event_shape
    try:
        jnp.broadcast_shapes(value_shape, full)
    except ValueError:
        raise ShapeError(
            f"{name}.log_prob: value of shape {value_shape} does not broadcast "
            f"with batch_shape + event_shape {full}. Pass a value whose "
            f"rightmost dims are {d.event_shape} and broadcast with the batch."
        ) from None
    if len(value_shape) < len(d.event_shape):
        raise ShapeError(
            f"{name}.log_prob: value of shape {value_shape} has fewer dims than "
            f"event_shape {d.event_shape}. Pass one full event per draw."
        )
    if not (is_concrete(value) and d._all_concrete()):
        return
    value = jnp.asarray(value)
    ok_all = _compiled(_value_flag_jit, _value_flag, d, value)
    if is_concrete(ok_all) and not bool(ok_all):
        ok = d._value_ok(value)
        support = d.support
        raise SupportError(
            f"{name}.log_prob: value {_format_bad(value, ok, support.event_dim)} "
            f"is outside the support {support!r}. Pass values inside the "
            "support, or validate_args=False to skip this check."
        )


def check_expand(d: Any, batch_shape: Shape) -> None:
    """Raise ``ShapeError`` unless ``d.batch_shape`` broadcasts to ``batch_shape``."""
    try:
        ok = jnp.broadcast_shapes(d.batch_shape, batch_shape) == batch_shape
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(
            f"{type(d).__name__}.expand: cannot expand batch_shape "
            f"{d.batch_shape} to {batch_shape}. Each dim of the new shape must "
            "equal the old one or replace a dim of size 1, and new dims go on the "
            "left."
        )
