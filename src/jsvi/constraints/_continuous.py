"""Continuous constraints: real lines, half-lines, intervals, the simplex and the
matrix supports (Cholesky factors, positive-definite and correlation matrices).

Imports only ``jsvi._typing``, ``jsvi.errors`` and ``jsvi.constraints._base``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jsvi._typing import Array, ArrayLike
from jsvi.constraints._base import (
    Constraint,
    _as_bound,
    _eps_tol,
    _event_ok,
    _float_dtype,
    _full_like,
)

# ----------------------------------------------------------------- continuous


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Real(Constraint):
    """All finite real numbers."""

    def check(self, value: ArrayLike) -> Array:
        return jnp.isfinite(jnp.asarray(value))

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _full_like(prototype, 0.0)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class GreaterThan(Constraint):
    """Reals strictly greater than ``lower_bound``."""

    lower_bound: Any = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lower_bound", _as_bound(self.lower_bound))

    def __repr__(self) -> str:
        return f"greater_than(lower_bound={self.lower_bound!r})"

    def check(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        return (value > self.lower_bound) & (value < jnp.inf)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _full_like(prototype, jnp.asarray(self.lower_bound) + 1.0)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Positive(GreaterThan):
    """Strictly positive finite reals."""

    def __repr__(self) -> str:
        return "positive"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Nonnegative(Constraint):
    """Finite reals ``>= 0``."""

    def __repr__(self) -> str:
        return "nonnegative"

    def check(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        return (value >= 0) & (value < jnp.inf)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _full_like(prototype, 1.0)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class LessThan(Constraint):
    """Reals strictly less than ``upper_bound``."""

    upper_bound: Any = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "upper_bound", _as_bound(self.upper_bound))

    def __repr__(self) -> str:
        return f"less_than(upper_bound={self.upper_bound!r})"

    def check(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        return (value < self.upper_bound) & (value > -jnp.inf)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _full_like(prototype, jnp.asarray(self.upper_bound) - 1.0)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Interval(Constraint):
    """The closed interval ``[lower_bound, upper_bound]``."""

    lower_bound: Any = 0.0
    upper_bound: Any = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lower_bound", _as_bound(self.lower_bound))
        object.__setattr__(self, "upper_bound", _as_bound(self.upper_bound))

    def __repr__(self) -> str:
        return (
            f"interval(lower_bound={self.lower_bound!r}, "
            f"upper_bound={self.upper_bound!r})"
        )

    def check(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        return (value >= self.lower_bound) & (value <= self.upper_bound)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        mid = (jnp.asarray(self.lower_bound) + jnp.asarray(self.upper_bound)) / 2
        return _full_like(prototype, mid)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class UnitInterval(Interval):
    """The closed interval ``[0, 1]``."""

    def __repr__(self) -> str:
        return "unit_interval"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Simplex(Constraint):
    """Vectors of nonnegative entries summing to one (``event_dim=1``)."""

    event_dim = 1

    def __repr__(self) -> str:
        return "simplex"

    def check(self, value: ArrayLike) -> Array:
        value = _event_ok(value, 1, "simplex")
        k = value.shape[-1]
        total = jnp.sum(value, axis=-1)
        return jnp.all(value >= 0, axis=-1) & (jnp.abs(total - 1) <= _eps_tol(value, k))

    def feasible_like(self, prototype: ArrayLike) -> Array:
        proto = jnp.asarray(prototype)
        return _full_like(proto, 1.0 / proto.shape[-1])


def _is_square(value: Array) -> bool:
    return value.ndim >= 2 and value.shape[-1] == value.shape[-2]


def _lower_cholesky_check(value: Array) -> Array:
    upper = jnp.triu(value, k=1)
    diag = jnp.diagonal(value, axis1=-2, axis2=-1)
    return (
        jnp.all(upper == 0, axis=(-2, -1))
        & jnp.all(diag > 0, axis=-1)
        & jnp.all(jnp.isfinite(value), axis=(-2, -1))
    )


def _eye_like(prototype: ArrayLike) -> Array:
    proto = jnp.asarray(prototype)
    eye = jnp.eye(proto.shape[-1], dtype=_float_dtype(proto))
    return jnp.broadcast_to(eye, proto.shape)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class LowerCholesky(Constraint):
    """Lower-triangular square matrices with a positive diagonal (``event_dim=2``)."""

    event_dim = 2

    def __repr__(self) -> str:
        return "lower_cholesky"

    def check(self, value: ArrayLike) -> Array:
        value = _event_ok(value, 2, "lower_cholesky")
        if not _is_square(value):
            return jnp.zeros(value.shape[:-2], dtype=bool)
        return _lower_cholesky_check(value)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _eye_like(prototype)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class PositiveDefinite(Constraint):
    """Symmetric positive-definite matrices (``event_dim=2``)."""

    event_dim = 2

    def __repr__(self) -> str:
        return "positive_definite"

    def check(self, value: ArrayLike) -> Array:
        value = _event_ok(value, 2, "positive_definite")
        if not _is_square(value):
            return jnp.zeros(value.shape[:-2], dtype=bool)
        value = value.astype(_float_dtype(value))
        n = value.shape[-1]
        scale = jnp.max(jnp.abs(value), axis=(-2, -1), keepdims=True)
        asym = jnp.abs(value - jnp.swapaxes(value, -1, -2))
        symmetric = jnp.all(asym <= _eps_tol(value, n) * scale, axis=(-2, -1))
        finite = jnp.all(jnp.isfinite(value), axis=(-2, -1))
        safe = jnp.where(finite[..., None, None], value, 0.0)
        eig = jnp.linalg.eigvalsh(safe)
        return symmetric & finite & jnp.all(eig > 0, axis=-1)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _eye_like(prototype)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CorrCholesky(Constraint):
    """Cholesky factors of correlation matrices: lower triangular, positive
    diagonal, rows of unit Euclidean norm (``event_dim=2``)."""

    event_dim = 2

    def __repr__(self) -> str:
        return "corr_cholesky"

    def check(self, value: ArrayLike) -> Array:
        value = _event_ok(value, 2, "corr_cholesky")
        if not _is_square(value):
            return jnp.zeros(value.shape[:-2], dtype=bool)
        n = value.shape[-1]
        norms = jnp.sum(jnp.square(value), axis=-1)
        unit = jnp.all(jnp.abs(norms - 1) <= _eps_tol(value, n), axis=-1)
        return _lower_cholesky_check(value) & unit

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _eye_like(prototype)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CorrMatrix(Constraint):
    """Correlation matrices: symmetric positive definite with a unit diagonal
    (``event_dim=2``)."""

    event_dim = 2

    def __repr__(self) -> str:
        return "corr_matrix"

    def check(self, value: ArrayLike) -> Array:
        value = _event_ok(value, 2, "corr_matrix")
        if not _is_square(value):
            return jnp.zeros(value.shape[:-2], dtype=bool)
        value = value.astype(_float_dtype(value))
        n = value.shape[-1]
        diag = jnp.diagonal(value, axis1=-2, axis2=-1)
        unit = jnp.all(jnp.abs(diag - 1) <= _eps_tol(value, n), axis=-1)
        return unit & PositiveDefinite().check(value)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _eye_like(prototype)
