"""Distributions built from other distributions.

``Independent`` (what ``to_event`` returns), ``ExpandedDistribution``,
``MaskedDistribution``, ``TransformedDistribution`` and ``NonReparameterized``.
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
from jsvi.distributions._base import Distribution, as_shape, sum_rightmost
from jsvi.errors import ArgumentError, ShapeError
from jsvi.transforms import ComposeTransform, Transform

__all__ = [
    "ExpandedDistribution",
    "Independent",
    "MaskedDistribution",
    "NonReparameterized",
    "TransformedDistribution",
]


def _check_base(where: str, base: Any) -> None:
    if not isinstance(base, Distribution):
        raise ArgumentError(
            f"{where}: base distribution must be a jsvi Distribution, got "
            f"{type(base).__name__}. Pass e.g. dist.Normal(0., 1.)."
        )


def _resolve_validate(base: Distribution, validate_args: bool | None) -> bool | None:
    return base._validate_args if validate_args is None else validate_args


class Independent(Distribution):
    """Reinterpret the rightmost ``reinterpreted_batch_ndims`` batch dims as event.

    Args:
        base_dist: the distribution to wrap.
        reinterpreted_batch_ndims: how many batch dims become event dims.
    """

    _pytree_data_fields = ("base_dist",)

    def __init__(
        self,
        base_dist: Distribution,
        reinterpreted_batch_ndims: int,
        *,
        validate_args: bool | None = None,
    ):
        _check_base("Independent", base_dist)
        n = reinterpreted_batch_ndims
        nb = len(base_dist.batch_shape)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= nb:
            raise ShapeError(
                f"Independent: reinterpreted_batch_ndims must be an int in [0, {nb}] "
                f"for a base with batch_shape {base_dist.batch_shape}, got {n!r}. "
                "Pass at most as many dims as the base has batch dims."
            )
        if isinstance(base_dist, Independent):
            n = n + base_dist.reinterpreted_batch_ndims
            base_dist = base_dist.base_dist
        self.base_dist = base_dist
        self.reinterpreted_batch_ndims = n
        super().__init__(validate_args=_resolve_validate(base_dist, validate_args))

    @property
    def batch_shape(self) -> Shape:
        b = self.base_dist.batch_shape
        return b[: len(b) - self.reinterpreted_batch_ndims]

    @property
    def event_shape(self) -> Shape:
        b = self.base_dist.batch_shape
        n = self.reinterpreted_batch_ndims
        return b[len(b) - n :] + self.base_dist.event_shape

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return constraints.independent(
            self.base_dist.support, self.reinterpreted_batch_ndims
        )

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_rsample

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        return self.base_dist.sample(key, sample_shape)

    def _log_prob(self, value: ArrayLike) -> Array:
        lp = self.base_dist._unchecked_log_prob(value)
        return sum_rightmost(lp, self.reinterpreted_batch_ndims)

    @property
    def mean(self) -> Array:
        return self.base_dist.mean

    @property
    def variance(self) -> Array:
        return self.base_dist.variance

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        flags = self.base_dist.validation_flags()
        if value is not None:
            flags["value"] = self._value_ok(jnp.asarray(value))
        return flags

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, "Independent.expand")
        self._check_expand(batch_shape)
        b = self.base_dist.batch_shape
        n = self.reinterpreted_batch_ndims
        base = self.base_dist.expand(batch_shape + b[len(b) - n :])
        return Independent(base, n, validate_args=self._validate_args)


class ExpandedDistribution(Distribution):
    """``base_dist`` broadcast to a larger ``batch_shape`` (independent draws
    along expanded dims), without broadcasting its parameters.

    The base keeps the shapes of its parameters: ``log_prob`` scores the value under
    the base and broadcasts the result to the expanded batch shape, and ``sample``
    draws through the base with the expanded dims as extra sample dims. Work the
    base does per parameter element (``log(scale)`` of a ``Normal``, the
    normalization of a ``Categorical``) is then done once per base element, not
    once per expanded element. Plates expand their sites this way.

    A base with parameters (or a wrapper around one) gets size-1 dims on the left
    up to the expanded rank, a reshape that copies nothing: every leaf then has
    one dim per batch dim, so the dims ``jax.vmap`` adds in front of the leaves
    stay in front of the batch shape and line up with the value.

    Args:
        base_dist: the distribution to expand.
        batch_shape: the new batch shape; the base's batch shape must broadcast
            to it.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsvi.distributions import Normal
        >>> d = ExpandedDistribution(Normal(jnp.zeros(3), 1.0), (4, 3))
        >>> d.batch_shape, d.base_dist.batch_shape, d.log_prob(jnp.zeros(3)).shape
        ((4, 3), (1, 3), (4, 3))
    """

    _pytree_data_fields = ("base_dist",)

    def __init__(
        self,
        base_dist: Distribution,
        batch_shape: Sequence[int],
        *,
        validate_args: bool | None = None,
    ):
        _check_base("ExpandedDistribution", base_dist)
        batch_shape = as_shape(batch_shape, "ExpandedDistribution")
        base_dist._check_expand(batch_shape)
        if isinstance(base_dist, ExpandedDistribution):
            base_dist = base_dist.base_dist  # one level of laziness is enough
        extra = len(batch_shape) - len(base_dist.batch_shape)
        if extra > 0 and (
            base_dist.arg_constraints
            or type(base_dist).expand is not Distribution.expand
        ):
            base_dist = base_dist.expand((1,) * extra + tuple(base_dist.batch_shape))
        self.base_dist = base_dist
        self._expanded_shape = batch_shape
        self._base_ndim = len(base_dist.batch_shape)
        super().__init__(validate_args=_resolve_validate(base_dist, validate_args))

    @property
    def batch_shape(self) -> Shape:
        # Dims that ``vmap`` added in front of the base's batch shape stay in front.
        b = self.base_dist.batch_shape
        return b[: max(len(b) - self._base_ndim, 0)] + self._expanded_shape

    @property
    def event_shape(self) -> Shape:
        return self.base_dist.event_shape

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return self.base_dist.support

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_enumerate_support

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        sample_shape = as_shape(sample_shape)
        target, base = self.batch_shape, self.base_dist.batch_shape
        k = len(target) - len(base)
        idx = [i for i, s in enumerate(base) if s == 1 and target[k + i] != 1]
        extra = tuple(target[k + i] for i in idx)
        draws = self.base_dist.sample(key, sample_shape + target[:k] + extra)
        ns = len(sample_shape) + k
        if idx:
            draws = jnp.squeeze(draws, axis=tuple(ns + len(idx) + i for i in idx))
            draws = jnp.moveaxis(
                draws, tuple(range(ns, ns + len(idx))), tuple(ns + i for i in idx)
            )
        return jnp.broadcast_to(draws, sample_shape + target + self.event_shape)

    def _log_prob(self, value: ArrayLike) -> Array:
        lp = self.base_dist._unchecked_log_prob(value)
        return jnp.broadcast_to(lp, jnp.broadcast_shapes(lp.shape, self.batch_shape))

    def _broadcast_univariate(self, out: Array) -> Array:
        full = self.batch_shape + self.event_shape
        return jnp.broadcast_to(out, jnp.broadcast_shapes(jnp.shape(out), full))

    def cdf(self, value: ArrayLike) -> Array:
        return self._broadcast_univariate(self.base_dist.cdf(value))

    def icdf(self, q: ArrayLike) -> Array:
        return self._broadcast_univariate(self.base_dist.icdf(q))

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(
            self.base_dist.mean, self.batch_shape + self.event_shape
        )

    @property
    def variance(self) -> Array:
        full = self.batch_shape + self.event_shape
        return jnp.broadcast_to(self.base_dist.variance, full)

    def enumerate_support(self, expand: bool = True) -> Array:
        values = self.base_dist.enumerate_support(expand=False)
        size = values.shape[0]
        ones = (1,) * len(self.batch_shape)
        values = values.reshape((size,) + ones + self.event_shape)
        if expand:
            values = jnp.broadcast_to(
                values, (size,) + self.batch_shape + self.event_shape
            )
        return values

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        return self.base_dist.validation_flags(value)

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, "ExpandedDistribution.expand")
        self._check_expand(batch_shape)
        return self.base_dist.expand(batch_shape)


class MaskedDistribution(Distribution):
    """``base_dist`` whose ``log_prob`` is 0 wherever ``mask`` is False.

    Args:
        base_dist: the distribution to mask.
        mask: boolean array broadcastable to ``base_dist.batch_shape`` (or a
            Python bool).
    """

    _pytree_data_fields = ("base_dist",)

    def __init__(
        self,
        base_dist: Distribution,
        mask: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        _check_base("MaskedDistribution", base_dist)
        if not isinstance(mask, bool):
            mask = jnp.asarray(mask)
            if mask.dtype != jnp.bool_:
                raise ArgumentError(
                    f"MaskedDistribution: mask must be boolean, got dtype "
                    f"{mask.dtype}. Pass e.g. `x > 0` or `arr.astype(bool)`."
                )
            batch = base_dist.batch_shape
            try:
                ok = jnp.broadcast_shapes(mask.shape, batch) == batch
            except ValueError:
                ok = False
            if not ok:
                raise ShapeError(
                    f"MaskedDistribution: mask of shape {mask.shape} does not "
                    f"broadcast to batch_shape {batch}. Give the mask the batch shape "
                    "(or a shape that broadcasts to it)."
                )
            mask = jnp.broadcast_to(mask, batch)  # aligned batch dims under vmap
        self.base_dist = base_dist
        self._mask = mask
        super().__init__(validate_args=_resolve_validate(base_dist, validate_args))

    @property
    def batch_shape(self) -> Shape:
        return self.base_dist.batch_shape

    @property
    def event_shape(self) -> Shape:
        return self.base_dist.event_shape

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return self.base_dist.support

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_enumerate_support

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        return self.base_dist.sample(key, sample_shape)

    def _value_ok(self, value: Array) -> Array:
        return self.support.check(value) | ~jnp.asarray(self._mask)

    def _log_prob(self, value: ArrayLike) -> Array:
        if self._mask is False:
            shape = jnp.broadcast_shapes(
                jnp.shape(value)[: jnp.ndim(value) - len(self.event_shape)],
                self.batch_shape,
            )
            return jnp.zeros(shape, dtype=jnp.result_type(float))
        lp = self.base_dist._unchecked_log_prob(value)
        return jnp.where(self._mask, lp, jnp.zeros((), dtype=lp.dtype))

    @property
    def mean(self) -> Array:
        return self.base_dist.mean

    @property
    def variance(self) -> Array:
        return self.base_dist.variance

    def enumerate_support(self, expand: bool = True) -> Array:
        return self.base_dist.enumerate_support(expand)

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        flags = self.base_dist.validation_flags()
        if value is not None:
            flags["value"] = self._value_ok(jnp.asarray(value))
        return flags

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, "MaskedDistribution.expand")
        self._check_expand(batch_shape)
        return MaskedDistribution(
            self.base_dist.expand(batch_shape),
            self._mask,
            validate_args=self._validate_args,
        )


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


class NonReparameterized(Distribution):
    """``base_dist`` with ``has_rsample=False`` and samples behind
    ``stop_gradient``, which forces the score-function gradient estimator.

    Args:
        base_dist: any distribution.
    """

    _pytree_data_fields = ("base_dist",)
    has_rsample = False

    def __init__(self, base_dist: Distribution, *, validate_args: bool | None = None):
        _check_base("NonReparameterized", base_dist)
        self.base_dist = base_dist
        super().__init__(validate_args=_resolve_validate(base_dist, validate_args))

    @property
    def batch_shape(self) -> Shape:
        return self.base_dist.batch_shape

    @property
    def event_shape(self) -> Shape:
        return self.base_dist.event_shape

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return self.base_dist.support

    @property
    def has_enumerate_support(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_enumerate_support

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        # Draw from the base distribution with its parameters cut from autodiff:
        # then not even the pathwise derivative of the sampler is traced (for a
        # Beta or Gamma, that derivative alone doubles the step's compile time).
        base = jax.tree.map(jax.lax.stop_gradient, self.base_dist)
        return jax.lax.stop_gradient(base.sample(key, sample_shape))

    def _log_prob(self, value: ArrayLike) -> Array:
        return self.base_dist._unchecked_log_prob(value)

    @property
    def mean(self) -> Array:
        return self.base_dist.mean

    @property
    def variance(self) -> Array:
        return self.base_dist.variance

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
