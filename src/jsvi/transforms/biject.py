"""``biject_to(constraint)``: a transform from unconstrained reals onto each
supported constraint. Its table is built at import and never mutated.

Imports ``jsvi.transforms._base``, ``jsvi.transforms.matrix``,
``jsvi.constraints``, ``jsvi._typing`` and ``jsvi.errors`` (within jsvi).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from jsvi import constraints
from jsvi.constraints import Constraint
from jsvi.errors import ArgumentError
from jsvi.transforms._base import (
    AffineTransform,
    ComposeTransform,
    ExpTransform,
    IdentityTransform,
    IndependentTransform,
    SigmoidTransform,
    Transform,
)
from jsvi.transforms.matrix import (
    CholeskyOuterTransform,
    CorrCholeskyTransform,
    CorrMatrixCholeskyTransform,
    LowerCholeskyTransform,
    StickBreakingTransform,
)

__all__ = ["biject_to"]


# ------------------------------------------------------------------ biject_to


def _to_greater_than(c: Any) -> Transform:
    return ComposeTransform(
        [
            ExpTransform(),
            AffineTransform(c.lower_bound, 1.0, domain=constraints.positive),
        ]
    )


def _to_less_than(c: Any) -> Transform:
    return ComposeTransform(
        [
            ExpTransform(),
            AffineTransform(c.upper_bound, -1.0, domain=constraints.positive),
        ]
    )


def _to_interval(c: Any) -> Transform:
    scale = c.upper_bound - c.lower_bound
    affine = AffineTransform(c.lower_bound, scale, domain=constraints.unit_interval)
    return ComposeTransform([SigmoidTransform(), affine])


def _to_independent(c: Any) -> Transform:
    return IndependentTransform(
        biject_to(c.base_constraint), c.reinterpreted_batch_ndims
    )


def _to_positive_definite(c: Any) -> Transform:
    del c
    return ComposeTransform([LowerCholeskyTransform(), CholeskyOuterTransform()])


_BIJECTIONS: Mapping[type, Callable[[Any], Transform]] = MappingProxyType(
    {
        constraints.Real: lambda c: IdentityTransform(),
        constraints.Positive: lambda c: ExpTransform(),
        constraints.Nonnegative: lambda c: ExpTransform(),
        constraints.GreaterThan: _to_greater_than,
        constraints.LessThan: _to_less_than,
        constraints.UnitInterval: lambda c: SigmoidTransform(),
        constraints.Interval: _to_interval,
        constraints.Simplex: lambda c: StickBreakingTransform(),
        constraints.LowerCholesky: lambda c: LowerCholeskyTransform(),
        constraints.PositiveDefinite: _to_positive_definite,
        constraints.CorrCholesky: lambda c: CorrCholeskyTransform(),
        constraints.CorrMatrix: lambda c: ComposeTransform(
            [CorrCholeskyTransform(), CorrMatrixCholeskyTransform()]
        ),
        constraints.Independent: _to_independent,
    }
)


def biject_to(constraint: Constraint) -> Transform:
    """A transform from unconstrained reals onto ``constraint``.

    Args:
        constraint: a continuous constraint from ``jsvi.constraints``.

    Returns:
        A :class:`Transform` whose ``codomain`` is ``constraint``.

    Raises:
        ArgumentError: if ``constraint`` is discrete or has no registered
            bijection.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsvi import constraints
        >>> float(biject_to(constraints.positive)(jnp.array(0.0)))
        1.0
    """
    if isinstance(constraint, Constraint) and constraint.is_discrete:
        raise ArgumentError(
            f"biject_to: constraint {constraint!r} is discrete, so no bijection from "
            "the reals onto it exists. Enumerate the site or use a continuous "
            "relaxation."
        )
    for cls in type(constraint).__mro__:
        factory = _BIJECTIONS.get(cls)
        if factory is not None:
            return factory(constraint)
    known = ", ".join(
        sorted(cls.__name__.lstrip("_") for cls in _BIJECTIONS)  # type: ignore[union-attr]
    )
    raise ArgumentError(
        f"biject_to: no bijection is registered for constraint {constraint!r}. Use "
        f"one of the supported constraints ({known}), or build a Transform "
        "yourself."
    )
