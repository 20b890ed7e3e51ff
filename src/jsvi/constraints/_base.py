"""The ``Constraint`` base class and the helpers the concrete constraints share.

Imports only ``jsvi._typing`` and ``jsvi.errors`` (within jsvi).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, ArrayLike, same_array_value
from jsvi.errors import ShapeError


def _as_bound(x: Any) -> Any:
    """Store scalar bounds as Python floats (hashable) and others as arrays."""
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, int | float | np.integer | np.floating):
        return float(x)
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return float(x)
    if isinstance(x, list | tuple):
        return jnp.asarray(x)
    return x


def _same(a: Any, b: Any) -> bool:
    """Equality of two constraint fields that may hold arrays."""
    if a is b:
        return True
    if isinstance(a, float | int | str | bool) and isinstance(
        b, float | int | str | bool
    ):
        return a == b
    if isinstance(a, Constraint) and isinstance(b, Constraint):
        return a == b
    return same_array_value(a, b)


def _float_dtype(x: Any) -> Any:
    """A floating dtype for values built like ``x``."""
    return jnp.result_type(float, x)


def _event_ok(value: ArrayLike, event_dim: int, where: str) -> Array:
    value = jnp.asarray(value)
    if value.ndim < event_dim:
        raise ShapeError(
            f"{where}.check: value of shape {value.shape} has fewer than {event_dim} "
            f"event dims. Pass a value whose rightmost {event_dim} dims form one "
            "element."
        )
    return value


def _eps_tol(value: Array, n: int) -> Array:
    """Tolerance for sums of ``n`` rounded terms in ``value``'s dtype."""
    dtype = _float_dtype(value)
    return jnp.maximum(jnp.asarray(1e-6, dtype), 8.0 * n * jnp.finfo(dtype).eps)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Constraint:
    """Base class of every constraint.

    Subclasses are frozen dataclasses; their fields are the constraint's
    parameters. Equality compares the type and the fields; hashing works when every
    field is hashable (Python-number bounds).
    """

    event_dim = 0
    is_discrete = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_static(cls)

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other) or not isinstance(other, Constraint):
            return NotImplemented
        return all(
            _same(a, b) for a, b in zip(self._fields(), other._fields(), strict=True)
        )

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:
        return type(self).__name__.lstrip("_").lower()

    def check(self, value: ArrayLike) -> Array:
        """Whether ``value`` lies in the support.

        Args:
            value: an array of shape ``batch_shape + event_shape``.

        Returns:
            A boolean array of shape ``batch_shape`` (the event dims reduced).
        """
        raise NotImplementedError

    def __call__(self, value: ArrayLike) -> Array:
        """Alias of :meth:`check`."""
        return self.check(value)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        """A value of ``prototype``'s shape inside the support.

        Args:
            prototype: any array; only its shape (and dtype, for discrete
                constraints) is used.

        Returns:
            An array of the same shape lying in the support.
        """
        raise NotImplementedError


jax.tree_util.register_static(Constraint)


def _full_like(prototype: ArrayLike, fill: Any, discrete: bool = False) -> Array:
    proto = jnp.asarray(prototype)
    dtype = proto.dtype if discrete else _float_dtype(proto)
    fill = jnp.asarray(fill, dtype=dtype)
    return jnp.broadcast_to(fill, jnp.broadcast_shapes(proto.shape, fill.shape))
