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

The concrete classes (``constraints.Real``, ``constraints.Interval``, ...) are public
for ``isinstance`` checks and registries keyed by type; build constraints with the
handles and functions below. The package's modules hold the classes by family;
every class reports ``jsvi.constraints`` as its module, the path that pickles and
checkpoint headers record.

Imports only ``jsvi._typing`` and ``jsvi.errors`` (within jsvi).
"""

from __future__ import annotations

from jsvi._typing import ArrayLike
from jsvi.constraints._base import Constraint
from jsvi.constraints._continuous import (
    CorrCholesky,
    CorrMatrix,
    GreaterThan,
    Interval,
    LessThan,
    LowerCholesky,
    Nonnegative,
    Positive,
    PositiveDefinite,
    Real,
    Simplex,
    UnitInterval,
)
from jsvi.constraints._discrete import (
    Boolean,
    Independent,
    IntegerGreaterThan,
    IntegerInterval,
    Multinomial,
    NonnegativeInteger,
    OneHot,
    PositiveInteger,
)

__all__ = [
    "Constraint",
    "Boolean",
    "CorrCholesky",
    "CorrMatrix",
    "GreaterThan",
    "Independent",
    "IntegerGreaterThan",
    "IntegerInterval",
    "Interval",
    "LessThan",
    "LowerCholesky",
    "Multinomial",
    "Nonnegative",
    "NonnegativeInteger",
    "OneHot",
    "Positive",
    "PositiveDefinite",
    "PositiveInteger",
    "Real",
    "Simplex",
    "UnitInterval",
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

for _cls in (
    Constraint,
    Real,
    GreaterThan,
    Positive,
    Nonnegative,
    LessThan,
    Interval,
    UnitInterval,
    Simplex,
    LowerCholesky,
    PositiveDefinite,
    CorrCholesky,
    CorrMatrix,
    Boolean,
    IntegerGreaterThan,
    NonnegativeInteger,
    PositiveInteger,
    IntegerInterval,
    OneHot,
    Multinomial,
    Independent,
):
    _cls.__module__ = __name__
del _cls

# ------------------------------------------------------------ public handles

real = Real()
real_vector = Independent(real, 1)
positive = Positive()
nonnegative = Nonnegative()
unit_interval = UnitInterval()
simplex = Simplex()
lower_cholesky = LowerCholesky()
positive_definite = PositiveDefinite()
corr_cholesky = CorrCholesky()
corr_matrix = CorrMatrix()
boolean = Boolean()
nonnegative_integer = NonnegativeInteger()
positive_integer = PositiveInteger()
one_hot = OneHot()


def interval(lower_bound: ArrayLike, upper_bound: ArrayLike) -> Constraint:
    """The closed interval ``[lower_bound, upper_bound]`` (bounds broadcast).

    Example:
        >>> import jax.numpy as jnp
        >>> interval(0, 2).check(jnp.array([0.5, 2.5])).tolist()
        [True, False]
    """
    return Interval(lower_bound, upper_bound)


def greater_than(lower_bound: ArrayLike) -> Constraint:
    """Reals strictly greater than ``lower_bound``."""
    return GreaterThan(lower_bound)


def less_than(upper_bound: ArrayLike) -> Constraint:
    """Reals strictly less than ``upper_bound``."""
    return LessThan(upper_bound)


def integer_greater_than(lower_bound: ArrayLike) -> Constraint:
    """Integers ``>= lower_bound``."""
    return IntegerGreaterThan(lower_bound)


def integer_interval(lower_bound: ArrayLike, upper_bound: ArrayLike) -> Constraint:
    """Integers in ``[lower_bound, upper_bound]`` (bounds broadcast)."""
    return IntegerInterval(lower_bound, upper_bound)


def multinomial(upper_bound: ArrayLike) -> Constraint:
    """Nonnegative integer vectors summing to ``upper_bound`` (a Multinomial's
    counts).

    Example:
        >>> import jax.numpy as jnp
        >>> multinomial(3).check(jnp.array([[1, 2], [2, 2]])).tolist()
        [True, False]
    """
    return Multinomial(upper_bound)


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
    return Independent(base_constraint, reinterpreted_batch_ndims)
