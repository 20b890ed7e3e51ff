"""Distributions built from other distributions.

``TransformedDistribution`` and ``NonReparameterized``; ``Independent`` (what
``to_event`` returns), ``ExpandedDistribution`` and ``MaskedDistribution`` are
defined beside ``Distribution`` in ``_base`` and re-exported here.
Each holds its base distribution as a pytree child, so wrappers are pytrees too.

May import (within jsvi): ``jsvi.distributions._base``, ``jsvi.constraints``,
``jsvi.transforms``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey, Shape
from jsvi.constraints import Constraint
from jsvi.distributions._base import (
    Distribution,
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
    _check_base,
    _resolve_validate,
    _Wrapper,
)
from jsvi.distributions._util import as_shape, sum_rightmost
from jsvi.errors import ArgumentError, ShapeError
from jsvi.transforms import ComposeTransform, Transform

__all__ = [
    "ExpandedDistribution",
    "Independent",
    "MaskedDistribution",
    "NonReparameterized",
    "TransformedDistribution",
]


class TransformedDistribution(Distribution):
    """The distribution of ``transforms(x)`` for ``x ~ base_distribution``.

    ``log_prob(y) = base.log_prob(x) - sum log|det J|`` with ``x`` obtained by
    inverting the transforms. If the transforms need more event dims than the
    base has, the base's rightmost batch dims are reinterpreted as event dims.

    Args:
        base_distribution: the distribution of the input.
        transforms: a ``Transform`` or a sequence of them, applied in order.

    Example:
        >>> from jsvi.distributions import LogNormal, Normal
        >>> from jsvi.transforms import ExpTransform
        >>> d = TransformedDistribution(Normal(0.0, 1.0), ExpTransform())
        >>> bool(abs(d.log_prob(2.0) - LogNormal(0.0, 1.0).log_prob(2.0)) < 1e-6)
        True

    Note:
        ``jax.vmap`` adds its axis in front of every leaf. A transform parameter
        with fewer batch dims than the distribution (``AffineTransform(loc, 2.0)``
        for a batched ``loc``) then no longer lines up with the base's batch dims,
        so give transform parameters the full batch shape before returning a
        ``TransformedDistribution`` from ``vmap``.
    """

    _pytree_data_fields = ("base_dist", "transforms")

    def __init__(
        self,
        base_distribution: Distribution,
        transforms: Transform | Sequence[Transform],
        *,
        validate_args: bool | None = None,
    ):
        _check_base("TransformedDistribution", base_distribution)
        parts = [transforms] if isinstance(transforms, Transform) else list(transforms)
        for t in parts:
            if not isinstance(t, Transform):
                raise ArgumentError(
                    f"TransformedDistribution: transforms must be Transform objects, "
                    f"got {t!r}. Pass e.g. transforms.ExpTransform()."
                )
        d_in, _ = ComposeTransform(parts)._event_dims()
        extra = d_in - len(base_distribution.event_shape)
        if extra > 0:
            if extra > len(base_distribution.batch_shape):
                raise ShapeError(
                    f"TransformedDistribution: the transforms need {d_in} event dims "
                    f"but the base has batch_shape {base_distribution.batch_shape} "
                    f"and event_shape {base_distribution.event_shape}. Give the base "
                    "enough dims (e.g. .expand(...).to_event(1))."
                )
            base_distribution = Independent(base_distribution, extra)
        self.base_dist = base_distribution
        self.transforms = tuple(parts)
        # Transforms with batched parameters (an affine map with a loc of shape
        # (3,), say) enlarge the batch: draw the base over the whole batch.
        batch_shape = self.batch_shape
        if base_distribution.batch_shape != batch_shape:
            self.base_dist = base_distribution.expand(batch_shape)
        super().__init__(
            validate_args=_resolve_validate(base_distribution, validate_args)
        )

    def _shapes(self) -> tuple[Shape, int]:
        base = self.base_dist
        shape = base.batch_shape + base.event_shape
        event_dim = len(base.event_shape)
        for t in self.transforms:
            shape = tuple(t.forward_shape(shape))
            event_dim = t.codomain.event_dim + max(event_dim - t.domain.event_dim, 0)
        return shape, event_dim

    @property
    def batch_shape(self) -> Shape:
        shape, event_dim = self._shapes()
        return shape[: len(shape) - event_dim]

    @property
    def event_shape(self) -> Shape:
        shape, event_dim = self._shapes()
        return shape[len(shape) - event_dim :]

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        if not self.transforms:
            return self.base_dist.support
        codomain = self.transforms[-1].codomain
        _, event_dim = self._shapes()
        return constraints.independent(codomain, event_dim - codomain.event_dim)

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_rsample

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        x = self.base_dist.sample(key, sample_shape)
        for t in self.transforms:
            x = t(x)
        return x

    def _log_prob(self, value: ArrayLike) -> Array:
        y = jnp.asarray(value)
        _, event_dim = self._shapes()
        total: Any = 0.0
        for t in reversed(self.transforms):
            x = t.inv(y)
            ladj = t.log_abs_det_jacobian(x, y)
            total = total - sum_rightmost(ladj, event_dim - t.codomain.event_dim)
            event_dim += t.domain.event_dim - t.codomain.event_dim
            y = x
        base_lp = self.base_dist._unchecked_log_prob(y)
        extra = event_dim - len(self.base_dist.event_shape)
        return total + sum_rightmost(base_lp, extra)

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        flags = self.base_dist.validation_flags()
        if value is not None:
            flags["value"] = self._value_ok(jnp.asarray(value))
        return flags

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, "TransformedDistribution.expand")
        self._check_expand(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        return TransformedDistribution(
            self.base_dist.expand(batch_shape),
            self.transforms,
            validate_args=self._validate_args,
        )


class NonReparameterized(_Wrapper):
    """``base_dist`` with ``has_rsample=False`` and samples behind
    ``stop_gradient``, which forces the score-function gradient estimator.

    Args:
        base_dist: any distribution.
    """

    has_rsample = False

    def __init__(self, base_dist: Distribution, *, validate_args: bool | None = None):
        _check_base("NonReparameterized", base_dist)
        self.base_dist = base_dist
        super().__init__(validate_args=_resolve_validate(base_dist, validate_args))

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        # Draw from the base distribution with its parameters cut from autodiff:
        # then not even the pathwise derivative of the sampler is traced (for a
        # Beta or Gamma, that derivative alone doubles the step's compile time).
        base = jax.tree.map(jax.lax.stop_gradient, self.base_dist)
        return jax.lax.stop_gradient(base.sample(key, sample_shape))

    def _log_prob(self, value: ArrayLike) -> Array:
        return self.base_dist._unchecked_log_prob(value)

    def enumerate_support(self, expand: bool = True) -> Array:
        return self.base_dist.enumerate_support(expand)

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        return self.base_dist.validation_flags(value)

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, "NonReparameterized.expand")
        self._check_expand(batch_shape)
        return NonReparameterized(
            self.base_dist.expand(batch_shape), validate_args=self._validate_args
        )
