"""Discrete constraints (booleans, bounded integers, one-hot and count vectors) and
``Independent``, which reinterprets batch dims of any constraint as event dims.

Imports only ``jsvi._typing``, ``jsvi.errors`` and ``jsvi.constraints``' own modules.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, ArrayLike
from jsvi.constraints._base import Constraint, _as_bound, _event_ok, _full_like
from jsvi.constraints._continuous import Real
from jsvi.errors import ArgumentError

# ------------------------------------------------------------------- discrete


def _is_integer(value: Array) -> Array:
    if jnp.issubdtype(value.dtype, jnp.integer) or value.dtype == jnp.bool_:
        return jnp.ones(value.shape, dtype=bool)
    return value == jnp.floor(value)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Boolean(Constraint):
    """The values 0 and 1 (``False`` and ``True``)."""

    is_discrete = True

    def __repr__(self) -> str:
        return "boolean"

    def check(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        return (value == 0) | (value == 1)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return jnp.zeros_like(jnp.asarray(prototype))


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class IntegerGreaterThan(Constraint):
    """Integers ``>= lower_bound``."""

    lower_bound: Any = 0.0
    is_discrete = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lower_bound", _as_bound(self.lower_bound))

    def __repr__(self) -> str:
        return f"integer_greater_than(lower_bound={self.lower_bound!r})"

    def check(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        return _is_integer(value) & (value >= self.lower_bound) & (value < jnp.inf)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _full_like(prototype, self.lower_bound, discrete=True)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class NonnegativeInteger(IntegerGreaterThan):
    """Integers ``>= 0``."""

    def __repr__(self) -> str:
        return "nonnegative_integer"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class PositiveInteger(IntegerGreaterThan):
    """Integers ``>= 1``."""

    lower_bound: Any = 1.0

    def __repr__(self) -> str:
        return "positive_integer"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class IntegerInterval(Constraint):
    """Integers in the closed interval ``[lower_bound, upper_bound]``."""

    lower_bound: Any = 0.0
    upper_bound: Any = 1.0
    is_discrete = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lower_bound", _as_bound(self.lower_bound))
        object.__setattr__(self, "upper_bound", _as_bound(self.upper_bound))

    def __repr__(self) -> str:
        return (
            f"integer_interval(lower_bound={self.lower_bound!r}, "
            f"upper_bound={self.upper_bound!r})"
        )

    def check(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        return (
            _is_integer(value)
            & (value >= self.lower_bound)
            & (value <= self.upper_bound)
        )

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _full_like(prototype, self.lower_bound, discrete=True)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class OneHot(Constraint):
    """One-hot vectors: a single 1 and 0 elsewhere (``event_dim=1``)."""

    event_dim = 1
    is_discrete = True

    def __repr__(self) -> str:
        return "one_hot"

    def check(self, value: ArrayLike) -> Array:
        value = _event_ok(value, 1, "one_hot")
        binary = jnp.all((value == 0) | (value == 1), axis=-1)
        return binary & (jnp.sum(value, axis=-1) == 1)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        proto = jnp.asarray(prototype)
        first = jnp.arange(proto.shape[-1]) == 0
        return jnp.broadcast_to(first, proto.shape).astype(proto.dtype)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Multinomial(Constraint):
    """Vectors of nonnegative integers summing to ``upper_bound`` (``event_dim=1``;
    the bound broadcasts against the batch dims)."""

    upper_bound: Any = 1.0
    event_dim = 1
    is_discrete = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "upper_bound", _as_bound(self.upper_bound))

    def __repr__(self) -> str:
        return f"multinomial(upper_bound={self.upper_bound!r})"

    def check(self, value: ArrayLike) -> Array:
        value = _event_ok(value, 1, "multinomial")
        counts = jnp.all(_is_integer(value) & (value >= 0), axis=-1)
        return counts & (jnp.sum(value, axis=-1) == self.upper_bound)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        proto = jnp.asarray(prototype)
        first = (jnp.arange(proto.shape[-1]) == 0).astype(proto.dtype)
        bound = jnp.asarray(self.upper_bound).astype(proto.dtype)[..., None]
        return jnp.broadcast_to(first * bound, proto.shape)


# ----------------------------------------------------------------- composite


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Independent(Constraint):
    """``base_constraint`` with ``reinterpreted_batch_ndims`` more event dims."""

    base_constraint: Constraint = dataclasses.field(default_factory=Real)
    reinterpreted_batch_ndims: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.base_constraint, Constraint):
            raise ArgumentError(
                f"independent: base_constraint must be a Constraint, got "
                f"{self.base_constraint!r}. Pass e.g. constraints.real."
            )
        n = self.reinterpreted_batch_ndims
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 0:
            raise ArgumentError(
                f"independent: reinterpreted_batch_ndims must be an int >= 0, got "
                f"{n!r}. Pass the number of batch dims to treat as event dims."
            )
        object.__setattr__(self, "reinterpreted_batch_ndims", int(n))

    def __repr__(self) -> str:
        return (
            f"independent({self.base_constraint!r}, {self.reinterpreted_batch_ndims})"
        )

    @property
    def event_dim(self) -> int:  # type: ignore[override]
        return self.base_constraint.event_dim + self.reinterpreted_batch_ndims

    @property
    def is_discrete(self) -> bool:  # type: ignore[override]
        return self.base_constraint.is_discrete

    def check(self, value: ArrayLike) -> Array:
        value = _event_ok(value, self.event_dim, repr(self))
        ok = self.base_constraint.check(value)
        n = self.reinterpreted_batch_ndims
        return jnp.all(ok, axis=tuple(range(-n, 0))) if n else ok

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return self.base_constraint.feasible_like(prototype)
