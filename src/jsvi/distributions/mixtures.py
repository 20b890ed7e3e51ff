"""Finite mixtures as distributions: ``MixtureSameFamily`` and ``MixtureGeneral``.

Both take a ``Categorical`` over ``K`` components as ``mixing_distribution``; the
mixture dimension is summed out inside ``log_prob`` (a ``logsumexp`` of the
mixing log-weights plus the component log-densities), so a mixture site is one
site with the mixture's batch shape. Values and parameters broadcast as
everywhere else: a value with extra leading dims (enumerated dims of
``TraceEnum_ELBO`` included) is scored against every component, and mixing
weights or component parameters may carry enumerated dims of their own.

Draws pick a component per element; they carry no gradient with respect to the
mixing weights, so ``has_rsample`` is False.

May import (within jsvi): ``jsvi.distributions._base``,
``jsvi.distributions.discrete``, ``jsvi.constraints``, ``jsvi._typing``,
``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ArrayLike, PRNGKey, Shape
from jsvi.constraints import Constraint
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import as_shape
from jsvi.distributions.discrete import Categorical
from jsvi.errors import ArgumentError, ShapeError

__all__ = ["MixtureGeneral", "MixtureSameFamily"]


def _check_mixing(where: str, mixing: Any) -> int:
    if not isinstance(mixing, Categorical):
        raise ArgumentError(
            f"{where}: mixing_distribution must be a jsvi Categorical, got "
            f"{type(mixing).__name__}. Pass e.g. dist.Categorical(probs=weights)."
        )
    if mixing.event_shape != ():
        raise ArgumentError(
            f"{where}: mixing_distribution must be a Categorical (not one-hot), got "
            f"{type(mixing).__name__}. Pass dist.Categorical(probs=weights)."
        )
    return mixing._num_categories


def _select(draws: Array, index: Array, event_ndim: int) -> Array:
    """``draws[..., index, *event]`` where the component axis sits just before the
    event dims."""
    index = index.reshape(index.shape + (1,) * (event_ndim + 1))
    picked = jnp.take_along_axis(draws, index, axis=-event_ndim - 1)
    return jnp.squeeze(picked, axis=-event_ndim - 1)


class _Mixture(Distribution):
    """Shared parts: batch shape, sampling by index, ``log_prob`` by logsumexp."""

    has_rsample = False

    @property
    def batch_shape(self) -> Shape:
        return tuple(
            jnp.broadcast_shapes(
                self.mixing_distribution.batch_shape, self._component_batch()
            )
        )

    def _component_batch(self) -> Shape:
        raise NotImplementedError

    def _component_log_probs(self, value: Array) -> Array:
        """Component log-densities of ``value`` stacked on a last axis of size K."""
        raise NotImplementedError

    def _component_draws(self, key: PRNGKey, shape: Shape) -> Array:
        """Draws of every component, shape ``shape + (K,) + event_shape``."""
        raise NotImplementedError

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        key_mix, key_comp = jax.random.split(key)
        shape = as_shape(sample_shape) + self.batch_shape
        index = self.mixing_distribution.expand(self.batch_shape).sample(
            key_mix, as_shape(sample_shape)
        )
        draws = self._component_draws(key_comp, shape)
        return _select(draws, index, len(self.event_shape))

    def _log_prob(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        comp_lp = self._component_log_probs(value)
        return jax.nn.logsumexp(comp_lp + self.mixing_distribution.logits, axis=-1)

    def _weights(self) -> Array:
        """Mixing probabilities with room for the event dims: ``(..., K, 1...)``."""
        probs = self.mixing_distribution.probs
        return probs.reshape(probs.shape + (1,) * len(self.event_shape))

    def _moments(self, means: Array, variances: Array) -> tuple[Array, Array]:
        w = self._weights()
        axis = -len(self.event_shape) - 1
        mean = jnp.sum(w * means, axis=axis)
        second = jnp.sum(w * (variances + jnp.square(means)), axis=axis)
        full = self.batch_shape + self.event_shape
        return (
            jnp.broadcast_to(mean, full),
            jnp.broadcast_to(second - jnp.square(mean), full),
        )


class MixtureSameFamily(_Mixture):
    """A mixture of the ``K`` components along the rightmost batch dim of one
    distribution.

    Args:
        mixing_distribution: ``Categorical`` with ``K`` categories and a batch shape
            that broadcasts with the mixture's.
        component_distribution: batch shape ``batch_shape + (K,)``; its event
            shape is the mixture's.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsvi.distributions import Categorical, Normal
        >>> d = MixtureSameFamily(Categorical(jnp.array([0.3, 0.7])),
        ...                       Normal(jnp.array([-1.0, 1.0]), 1.0))
        >>> d.batch_shape, round(float(d.mean), 4)
        ((), 0.4)
    """

    _pytree_data_fields = ("mixing_distribution", "component_distribution")

    def __init__(
        self,
        mixing_distribution: Categorical,
        component_distribution: Distribution,
        *,
        validate_args: bool | None = None,
    ):
        k = _check_mixing("MixtureSameFamily", mixing_distribution)
        comp = component_distribution
        if not isinstance(comp, Distribution):
            raise ArgumentError(
                "MixtureSameFamily: component_distribution must be a jsvi "
                f"Distribution, got {type(comp).__name__}. Pass e.g. "
                "dist.Normal(locs, scales) with the components on the last batch dim."
            )
        if len(comp.batch_shape) < 1 or comp.batch_shape[-1] != k:
            raise ShapeError(
                "MixtureSameFamily: component_distribution must have the K = "
                f"{k} components on its rightmost batch dim, got batch_shape "
                f"{comp.batch_shape}. Give it batch_shape batch_shape + ({k},)."
            )
        try:
            batch = tuple(
                jnp.broadcast_shapes(
                    mixing_distribution.batch_shape, comp.batch_shape[:-1]
                )
            )
        except ValueError:
            raise ShapeError(
                "MixtureSameFamily: the batch shape "
                f"{mixing_distribution.batch_shape} of mixing_distribution does not "
                f"broadcast with {comp.batch_shape[:-1]}, the component batch shape "
                "without its last dim. Give them compatible shapes."
            ) from None
        # Both carry the full batch shape, so that vmap keeps their dims aligned.
        if mixing_distribution.batch_shape != batch:
            mixing_distribution = mixing_distribution.expand(batch)
        if comp.batch_shape != batch + (k,):
            comp = comp.expand(batch + (k,))
        self.mixing_distribution = mixing_distribution
        self.component_distribution = comp
        if validate_args is None:
            validate_args = comp._validate_args
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        return self.component_distribution.event_shape

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return self.component_distribution.support

    @property
    def has_enumerate_support(self) -> bool:  # type: ignore[override]
        return self.component_distribution.has_enumerate_support

    def _component_batch(self) -> Shape:
        return self.component_distribution.batch_shape[:-1]

    def _component_log_probs(self, value: Array) -> Array:
        n = len(self.event_shape)
        value = jnp.expand_dims(value, axis=value.ndim - n)
        return self.component_distribution._unchecked_log_prob(value)

    def _component_draws(self, key: PRNGKey, shape: Shape) -> Array:
        comp = self.component_distribution
        k = comp.batch_shape[-1]
        comp = comp.expand(self.batch_shape + (k,))
        return comp.sample(key, shape[: len(shape) - len(self.batch_shape)])

    @property
    def mean(self) -> Array:
        comp = self.component_distribution
        return self._moments(comp.mean, comp.variance)[0]

    @property
    def variance(self) -> Array:
        comp = self.component_distribution
        return self._moments(comp.mean, comp.variance)[1]

    def cdf(self, value: ArrayLike) -> Array:
        value = jnp.expand_dims(jnp.asarray(value), -1)
        return jnp.sum(
            self.mixing_distribution.probs * self.component_distribution.cdf(value), -1
        )

    def enumerate_support(self, expand: bool = True) -> Array:
        values = self.component_distribution.enumerate_support(expand=False)
        event = self.event_shape
        size = values.shape[0]
        values = values.reshape((size,) + (1,) * len(self.batch_shape) + event)
        if expand:
            values = jnp.broadcast_to(values, (size,) + self.batch_shape + event)
        return values

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        flags = {
            **self.mixing_distribution.validation_flags(),
            **self.component_distribution.validation_flags(),
        }
        if value is not None:
            flags["value"] = self._value_ok(jnp.asarray(value))
        return flags

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, "MixtureSameFamily.expand")
        self._check_expand(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        k = self.component_distribution.batch_shape[-1]
        return MixtureSameFamily(
            self.mixing_distribution.expand(batch_shape),
            self.component_distribution.expand(batch_shape + (k,)),
            validate_args=self._validate_args,
        )


class MixtureGeneral(_Mixture):
    """A mixture of ``K`` distributions of any families with one batch and event
    shape (and one support).

    Args:
        mixing_distribution: ``Categorical`` with ``K`` categories.
        component_distributions: a sequence of ``K`` distributions with equal
            ``event_shape`` and batch shapes that broadcast together.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsvi.distributions import Categorical, Normal, StudentT
        >>> d = MixtureGeneral(Categorical(jnp.array([0.5, 0.5])),
        ...                    [Normal(0.0, 1.0), StudentT(3.0, 2.0, 1.0)])
        >>> round(float(d.mean), 4)
        1.0
    """

    _pytree_data_fields = ("mixing_distribution", "component_distributions")

    def __init__(
        self,
        mixing_distribution: Categorical,
        component_distributions: Sequence[Distribution],
        *,
        validate_args: bool | None = None,
    ):
        k = _check_mixing("MixtureGeneral", mixing_distribution)
        comps = tuple(component_distributions)
        if len(comps) != k or not all(isinstance(c, Distribution) for c in comps):
            raise ArgumentError(
                f"MixtureGeneral: component_distributions must be {k} jsvi "
                f"Distributions (one per category of mixing_distribution), got "
                f"{[type(c).__name__ for c in comps]}. Pass a list of {k}."
            )
        events = {tuple(c.event_shape) for c in comps}
        if len(events) != 1:
            raise ShapeError(
                "MixtureGeneral: component_distributions have different event "
                f"shapes {sorted(events)}. Give every component the same event shape."
            )
        try:
            batch = tuple(
                jnp.broadcast_shapes(
                    mixing_distribution.batch_shape, *(c.batch_shape for c in comps)
                )
            )
        except ValueError:
            raise ShapeError(
                "MixtureGeneral: the batch shapes of mixing_distribution "
                f"{mixing_distribution.batch_shape} and of the components "
                f"{[c.batch_shape for c in comps]} do not broadcast. Give them "
                "compatible shapes."
            ) from None
        # Every part carries the full batch shape (vmap keeps the dims aligned).
        if mixing_distribution.batch_shape != batch:
            mixing_distribution = mixing_distribution.expand(batch)
        comps = tuple(c if c.batch_shape == batch else c.expand(batch) for c in comps)
        self.mixing_distribution = mixing_distribution
        self.component_distributions = comps
        if validate_args is None:
            validate_args = comps[0]._validate_args
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        return self.component_distributions[0].event_shape

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return self.component_distributions[0].support

    def _component_batch(self) -> Shape:
        return tuple(
            jnp.broadcast_shapes(*(c.batch_shape for c in self.component_distributions))
        )

    def _component_log_probs(self, value: Array) -> Array:
        lps = [c._unchecked_log_prob(value) for c in self.component_distributions]
        return jnp.stack(jnp.broadcast_arrays(*lps), axis=-1)

    def _component_draws(self, key: PRNGKey, shape: Shape) -> Array:
        keys = jax.random.split(key, len(self.component_distributions))
        sample_shape = shape[: len(shape) - len(self.batch_shape)]
        full = shape + self.event_shape
        draws = [
            jnp.broadcast_to(c.expand(self.batch_shape).sample(k, sample_shape), full)
            for c, k in zip(self.component_distributions, keys)
        ]
        return jnp.stack(draws, axis=len(shape))

    def _stacked(self, attr: str) -> Array:
        full = self.batch_shape + self.event_shape
        return jnp.stack(
            [
                jnp.broadcast_to(getattr(c, attr), full)
                for c in self.component_distributions
            ],
            axis=len(self.batch_shape),
        )

    @property
    def mean(self) -> Array:
        return self._moments(self._stacked("mean"), self._stacked("variance"))[0]

    @property
    def variance(self) -> Array:
        return self._moments(self._stacked("mean"), self._stacked("variance"))[1]

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        flags = dict(self.mixing_distribution.validation_flags())
        for i, c in enumerate(self.component_distributions):
            flags.update(
                {f"component_{i}.{k}": v for k, v in c.validation_flags().items()}
            )
        if value is not None:
            flags["value"] = self._value_ok(jnp.asarray(value))
        return flags

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, "MixtureGeneral.expand")
        self._check_expand(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        return MixtureGeneral(
            self.mixing_distribution.expand(batch_shape),
            [c.expand(batch_shape) for c in self.component_distributions],
            validate_args=self._validate_args,
        )
