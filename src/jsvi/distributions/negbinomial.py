"""Over-dispersed and zero-inflated counts.

``GammaPoisson`` and its three negative-binomial parametrizations
(``NegativeBinomialProbs``, ``NegativeBinomialLogits``, ``NegativeBinomial2``), and
``ZeroInflatedDistribution`` with ``ZeroInflatedPoisson`` and
``ZeroInflatedNegativeBinomial2``. Every negative binomial is a Poisson whose rate
is Gamma distributed, so all share one pmf::

    log p(k) = lgamma(k + n) - lgamma(n) - lgamma(k + 1) + n log(1 - p) + k log p

with ``n`` the Gamma concentration and ``p = 1 / (1 + rate)``; each class computes
``log p`` and ``log(1 - p)`` from its own parameters without a round trip through
the others. Samples are integer arrays without gradients.

May import (within jsvi): ``jsvi.distributions._base``,
``jsvi.distributions.discrete``, ``jsvi.constraints``, ``jsvi._typing``,
``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy import special

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey, Shape
from jsvi.constraints import Constraint
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import as_shape, float_dtype, int_dtype, promote_params
from jsvi.distributions.discrete import Poisson, _logit, _softplus
from jsvi.errors import ArgumentError

__all__ = [
    "GammaPoisson",
    "NegativeBinomial2",
    "NegativeBinomialLogits",
    "NegativeBinomialProbs",
    "ZeroInflatedDistribution",
    "ZeroInflatedNegativeBinomial2",
    "ZeroInflatedPoisson",
]


class _NegativeBinomialBase(Distribution):
    """The shared pmf, sampler and moments; subclasses give ``n`` and ``log p``,
    ``log(1 - p)`` and the Gamma rate ``(1 - p) / p`` from their parameters."""

    support = constraints.nonnegative_integer

    def _n(self) -> Array:
        raise NotImplementedError

    def _log_p(self) -> tuple[Array, Array]:
        """``log p`` and ``log(1 - p)``."""
        raise NotImplementedError

    def _rate(self) -> Array:
        raise NotImplementedError

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        n, rate = jax.lax.stop_gradient((self._n(), self._rate()))
        key_g, key_p = jax.random.split(key)
        shape = self.shape(sample_shape)
        lam = jax.random.gamma(key_g, n, shape, dtype=n.dtype) / rate
        return jax.random.poisson(key_p, lam, shape).astype(int_dtype())

    def _log_prob(self, value: ArrayLike) -> Array:
        n = self._n()
        log_p, log_1mp = self._log_p()
        k = jnp.asarray(value, dtype=float_dtype(value, n))
        return (
            special.gammaln(k + n)
            - special.gammaln(n)
            - special.gammaln(k + 1)
            + n * log_1mp
            + k * log_p
        )

    @property
    def mean(self) -> Array:
        return self._n() / self._rate()

    @property
    def variance(self) -> Array:
        rate = self._rate()
        return self._n() * (1 + rate) / jnp.square(rate)


class GammaPoisson(_NegativeBinomialBase):
    """Poisson counts whose rate is ``Gamma(concentration, rate)`` distributed."""

    arg_constraints = {
        "concentration": constraints.positive,
        "rate": constraints.positive,
    }
    _pytree_data_fields = ("concentration", "rate")

    def __init__(
        self,
        concentration: ArrayLike,
        rate: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        self.concentration, self.rate = promote_params(
            "GammaPoisson", concentration=concentration, rate=rate
        )
        super().__init__(validate_args=validate_args)

    def _n(self) -> Array:
        return self.concentration

    def _rate(self) -> Array:
        return self.rate

    def _log_p(self) -> tuple[Array, Array]:
        log1p_rate = jnp.log1p(self.rate)
        return -log1p_rate, jnp.log(self.rate) - log1p_rate


class NegativeBinomialProbs(_NegativeBinomialBase):
    """Number of successes (each with probability ``probs``) before
    ``total_count`` failures; ``total_count`` may be any positive real."""

    arg_constraints = {
        "total_count": constraints.positive,
        "probs": constraints.unit_interval,
    }
    _pytree_data_fields = ("total_count", "probs")

    def __init__(
        self,
        total_count: ArrayLike,
        probs: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        self.total_count, self.probs = promote_params(
            "NegativeBinomialProbs", total_count=total_count, probs=probs
        )
        super().__init__(validate_args=validate_args)

    @property
    def logits(self) -> Array:
        """``log(probs / (1 - probs))``, shape ``batch_shape``."""
        return _logit(self.probs)

    def _n(self) -> Array:
        return self.total_count

    def _rate(self) -> Array:
        return (1 - self.probs) / self.probs

    def _log_p(self) -> tuple[Array, Array]:
        return jnp.log(self.probs), jnp.log1p(-self.probs)


class NegativeBinomialLogits(_NegativeBinomialBase):
    """``NegativeBinomialProbs(total_count, sigmoid(logits))``, computed from the
    logits."""

    arg_constraints = {
        "total_count": constraints.positive,
        "logits": constraints.real,
    }
    _pytree_data_fields = ("total_count", "logits")

    def __init__(
        self,
        total_count: ArrayLike,
        logits: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        self.total_count, self.logits = promote_params(
            "NegativeBinomialLogits", total_count=total_count, logits=logits
        )
        super().__init__(validate_args=validate_args)

    @property
    def probs(self) -> Array:
        """``sigmoid(logits)``, shape ``batch_shape``."""
        return jax.nn.sigmoid(self.logits)

    def _n(self) -> Array:
        return self.total_count

    def _rate(self) -> Array:
        return jnp.exp(-self.logits)

    def _log_p(self) -> tuple[Array, Array]:
        return -_softplus(-self.logits), -_softplus(self.logits)


class NegativeBinomial2(_NegativeBinomialBase):
    """Negative binomial with the given ``mean`` and ``concentration`` (variance
    ``mean + mean**2 / concentration``)."""

    arg_constraints = {
        "mean": constraints.positive,
        "concentration": constraints.positive,
    }
    _pytree_data_fields = ("_mean", "concentration")

    def __init__(
        self,
        mean: ArrayLike,
        concentration: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        self._mean, self.concentration = promote_params(
            "NegativeBinomial2", mean=mean, concentration=concentration
        )
        super().__init__(validate_args=validate_args)

    @property
    def mean(self) -> Array:  # type: ignore[override]
        return self._mean

    @property
    def variance(self) -> Array:
        return self._mean + jnp.square(self._mean) / self.concentration

    def _n(self) -> Array:
        return self.concentration

    def _rate(self) -> Array:
        return self.concentration / self._mean

    def _log_p(self) -> tuple[Array, Array]:
        log_total = jnp.log(self._mean + self.concentration)
        return jnp.log(self._mean) - log_total, jnp.log(self.concentration) - log_total


# ------------------------------------------------------------ zero inflation


def _gate_param(where: str, gate: Any, gate_logits: Any) -> tuple[str, Array]:
    if (gate is None) == (gate_logits is None):
        raise ArgumentError(
            f"{where}: exactly one of gate and gate_logits must be given, got "
            f"{'both' if gate is not None else 'neither'}. Pass gate=... or "
            "gate_logits=..., not both."
        )
    if gate is not None:
        return "gate", promote_params(where, gate=gate)[0]
    return "gate_logits", promote_params(where, gate_logits=gate_logits)[0]


class ZeroInflatedDistribution(Distribution):
    """``0`` with probability ``gate``, else a draw of ``base_dist``.

    Args:
        base_dist: a distribution over counts (discrete support containing 0).
        gate: probability of an extra zero, broadcasting with the base's batch.
        gate_logits: the log-odds of ``gate`` instead.

    ``log_prob(0) = log(gate + (1 - gate) base(0))`` and ``log_prob(k) = log(1 -
    gate) + log base(k)`` for ``k > 0``, both from the log-odds.

    Example:
        >>> from jsvi.distributions import Poisson
        >>> d = ZeroInflatedDistribution(Poisson(2.0), gate=0.3)
        >>> round(float(d.mean), 4)
        1.4
    """

    arg_constraints = {
        "gate": constraints.unit_interval,
        "gate_logits": constraints.real,
    }
    _pytree_data_fields = ("base_dist", "_gate", "_gate_logits")

    def __init__(
        self,
        base_dist: Distribution,
        gate: ArrayLike | None = None,
        gate_logits: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        where = type(self).__name__
        if not isinstance(base_dist, Distribution) or not base_dist.is_discrete:
            raise ArgumentError(
                f"{where}: base_dist must be a jsvi Distribution over counts, got "
                f"{type(base_dist).__name__}. Pass e.g. dist.Poisson(rate)."
            )
        name, param = _gate_param(where, gate, gate_logits)
        batch = tuple(jnp.broadcast_shapes(param.shape, base_dist.batch_shape))
        if base_dist.batch_shape != batch:
            base_dist = base_dist.expand(batch)
        self.base_dist = base_dist
        setattr(self, "_" + name, jnp.broadcast_to(param, batch))
        if validate_args is None:
            validate_args = base_dist._validate_args
        super().__init__(validate_args=validate_args)

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return self.base_dist.support

    @property
    def event_shape(self) -> Shape:
        return self.base_dist.event_shape

    @property
    def has_enumerate_support(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_enumerate_support

    @property
    def gate(self) -> Array:
        """Probability of an extra zero, shape ``batch_shape``."""
        g = self.__dict__.get("_gate")
        return jax.nn.sigmoid(self._gate_logits) if g is None else g

    @property
    def gate_logits(self) -> Array:
        """Log-odds of an extra zero, shape ``batch_shape``."""
        g = self.__dict__.get("_gate_logits")
        return _logit(self._gate) if g is None else g

    def _log_gates(self) -> tuple[Array, Array]:
        """``log(gate)`` and ``log(1 - gate)``."""
        logits = self.__dict__.get("_gate_logits")
        if logits is None:
            g = self._gate
            return jnp.log(g), jnp.log1p(-g)
        return -_softplus(-logits), -_softplus(logits)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        key_base, key_gate = jax.random.split(key)
        x = self.base_dist.sample(key_base, sample_shape)
        gate = jax.lax.stop_gradient(self.gate)
        shape = as_shape(sample_shape) + self.batch_shape
        zero = jax.random.bernoulli(key_gate, gate, shape)
        return jnp.where(zero, jnp.zeros((), x.dtype), x)

    def _log_prob(self, value: ArrayLike) -> Array:
        base_lp = self.base_dist._unchecked_log_prob(value)
        zero = jnp.asarray(value) == 0
        gate = self.__dict__.get("_gate")
        if gate is not None:
            # log(gate + (1 - gate) p(0)): the sum of two probabilities, no logaddexp
            nonzero = jnp.log1p(-gate) + base_lp
            return jnp.where(zero, jnp.log(gate + jnp.exp(nonzero)), nonzero)
        log_gate, log_1mg = self._log_gates()
        nonzero = log_1mg + base_lp
        return jnp.where(zero, jnp.logaddexp(log_gate, nonzero), nonzero)

    @property
    def mean(self) -> Array:
        return (1 - self.gate) * self.base_dist.mean

    @property
    def variance(self) -> Array:
        g, m = self.gate, self.base_dist.mean
        return (1 - g) * (self.base_dist.variance + g * jnp.square(m))

    def enumerate_support(self, expand: bool = True) -> Array:
        return self.base_dist.enumerate_support(expand)

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        flags = {**self.base_dist.validation_flags(), **super().validation_flags()}
        if value is not None:
            flags["value"] = self._value_ok(jnp.asarray(value))
        return flags

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, f"{type(self).__name__}.expand")
        self._check_expand(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.base_dist = self.base_dist.expand(batch_shape)
        for key in ("_gate", "_gate_logits"):
            if key in self.__dict__:
                new.__dict__[key] = jnp.broadcast_to(self.__dict__[key], batch_shape)
        return new


class ZeroInflatedPoisson(ZeroInflatedDistribution):
    """``0`` with probability ``gate``, else a ``Poisson(rate)`` draw."""

    def __init__(
        self,
        gate: ArrayLike,
        rate: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        base = Poisson(rate, validate_args=validate_args)
        super().__init__(base, gate=gate, validate_args=validate_args)

    @property
    def rate(self) -> Array:
        """The Poisson rate, shape ``batch_shape``."""
        return self.base_dist.rate


class ZeroInflatedNegativeBinomial2(ZeroInflatedDistribution):
    """``0`` with probability ``gate``, else a ``NegativeBinomial2(mean,
    concentration)`` draw."""

    def __init__(
        self,
        mean: ArrayLike,
        concentration: ArrayLike,
        *,
        gate: ArrayLike | None = None,
        gate_logits: ArrayLike | None = None,
        validate_args: bool | None = None,
    ):
        base = NegativeBinomial2(mean, concentration, validate_args=validate_args)
        super().__init__(
            base, gate=gate, gate_logits=gate_logits, validate_args=validate_args
        )

    @property
    def concentration(self) -> Array:
        """The negative binomial's concentration, shape ``batch_shape``."""
        return self.base_dist.concentration
