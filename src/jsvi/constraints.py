"""Constraints: the supports of distributions and the domains of parameters.

A constraint is an immutable, hashable (when its bounds are Python numbers) and
equality-comparable object. Each one is registered with
``jax.tree_util.register_static``, so it can sit inside a pytree as static data.

Every constraint has:

- ``event_dim``: how many rightmost dimensions of a value form one element;
- ``is_discrete``: whether the support is countable;
- ``check(value)``: a boolean array of shape ``value.shape[:value.ndim - event_dim]``,
  True where the value lies in the support;
- ``feasible_like(prototype)``: a value shaped like ``prototype`` inside the support
  (an interior point for continuous constraints).

Bounds given as Python or NumPy scalars are stored as ``float`` so that the
constraint stays hashable; array bounds are kept as arrays (the constraint is then
unhashable) and broadcast against the checked value.

Imports only ``jsvi._typing`` and ``jsvi.errors`` (within jsvi).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, ArrayLike
from jsvi.errors import ArgumentError, ShapeError

__all__ = [
    "Constraint",
    "boolean",
    "corr_cholesky",
    "corr_matrix",
    "greater_than",
    "independent",
    "integer_greater_than",
    "integer_interval",
    "interval",
    "less_than",
    "lower_cholesky",
    "multinomial",
    "nonnegative",
    "nonnegative_integer",
    "one_hot",
    "positive",
    "positive_definite",
    "positive_integer",
    "real",
    "real_vector",
    "simplex",
    "unit_interval",
]


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
    if isinstance(a, jax.core.Tracer) or isinstance(b, jax.core.Tracer):
        return False
    try:
        a_np, b_np = np.asarray(a), np.asarray(b)
    except (TypeError, ValueError):
        return False
    return a_np.shape == b_np.shape and bool(np.array_equal(a_np, b_np))


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


# ----------------------------------------------------------------- continuous


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _Real(Constraint):
    """All finite real numbers."""

    def check(self, value: ArrayLike) -> Array:
        return jnp.isfinite(jnp.asarray(value))

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _full_like(prototype, 0.0)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _GreaterThan(Constraint):
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
class _Positive(_GreaterThan):
    """Strictly positive finite reals."""

    def __repr__(self) -> str:
        return "positive"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _Nonnegative(Constraint):
    """Finite reals ``>= 0``."""

    def __repr__(self) -> str:
        return "nonnegative"

    def check(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        return (value >= 0) & (value < jnp.inf)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _full_like(prototype, 1.0)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _LessThan(Constraint):
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
class _Interval(Constraint):
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
class _UnitInterval(_Interval):
    """The closed interval ``[0, 1]``."""

    def __repr__(self) -> str:
        return "unit_interval"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _Simplex(Constraint):
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
class _LowerCholesky(Constraint):
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
class _PositiveDefinite(Constraint):
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
class _CorrCholesky(Constraint):
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
class _CorrMatrix(Constraint):
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
        return unit & _PositiveDefinite().check(value)

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return _eye_like(prototype)


# ------------------------------------------------------------------- discrete


def _is_integer(value: Array) -> Array:
    if jnp.issubdtype(value.dtype, jnp.integer) or value.dtype == jnp.bool_:
        return jnp.ones(value.shape, dtype=bool)
    return value == jnp.floor(value)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _Boolean(Constraint):
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
class _IntegerGreaterThan(Constraint):
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
class _NonnegativeInteger(_IntegerGreaterThan):
    """Integers ``>= 0``."""

    def __repr__(self) -> str:
        return "nonnegative_integer"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _PositiveInteger(_IntegerGreaterThan):
    """Integers ``>= 1``."""

    lower_bound: Any = 1.0

    def __repr__(self) -> str:
        return "positive_integer"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _IntegerInterval(Constraint):
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
class _OneHot(Constraint):
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
class _Multinomial(Constraint):
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
class _Independent(Constraint):
    """``base_constraint`` with ``reinterpreted_batch_ndims`` more event dims."""

    base_constraint: Constraint = dataclasses.field(default_factory=lambda: real)
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


# ------------------------------------------------------------ public handles

real = _Real()
real_vector = _Independent(real, 1)
positive = _Positive()
nonnegative = _Nonnegative()
unit_interval = _UnitInterval()
simplex = _Simplex()
lower_cholesky = _LowerCholesky()
positive_definite = _PositiveDefinite()
corr_cholesky = _CorrCholesky()
corr_matrix = _CorrMatrix()
boolean = _Boolean()
nonnegative_integer = _NonnegativeInteger()
positive_integer = _PositiveInteger()
one_hot = _OneHot()


def interval(lower_bound: ArrayLike, upper_bound: ArrayLike) -> Constraint:
    """The closed interval ``[lower_bound, upper_bound]`` (bounds broadcast).

    Example:
        >>> import jax.numpy as jnp
        >>> interval(0, 2).check(jnp.array([0.5, 2.5])).tolist()
        [True, False]
    """
    return _Interval(lower_bound, upper_bound)


def greater_than(lower_bound: ArrayLike) -> Constraint:
    """Reals strictly greater than ``lower_bound``."""
    return _GreaterThan(lower_bound)


def less_than(upper_bound: ArrayLike) -> Constraint:
    """Reals strictly less than ``upper_bound``."""
    return _LessThan(upper_bound)


def integer_greater_than(lower_bound: ArrayLike) -> Constraint:
    """Integers ``>= lower_bound``."""
    return _IntegerGreaterThan(lower_bound)


def integer_interval(lower_bound: ArrayLike, upper_bound: ArrayLike) -> Constraint:
    """Integers in ``[lower_bound, upper_bound]`` (bounds broadcast)."""
    return _IntegerInterval(lower_bound, upper_bound)


def multinomial(upper_bound: ArrayLike) -> Constraint:
    """Nonnegative integer vectors summing to ``upper_bound`` (a Multinomial's
    counts).

    Example:
        >>> import jax.numpy as jnp
        >>> multinomial(3).check(jnp.array([[1, 2], [2, 2]])).tolist()
        [True, False]
    """
    return _Multinomial(upper_bound)


def independent(
    base_constraint: Constraint, reinterpreted_batch_ndims: int
) -> Constraint:
    """Treat the ``reinterpreted_batch_ndims`` rightmost batch dims as event dims.

    Example:
        >>> independent(real, 1) == real_vector
        True
    """
    if reinterpreted_batch_ndims == 0:
        return base_constraint
    return _Independent(base_constraint, reinterpreted_batch_ndims)
