"""Univariate continuous families.

Normal, LogNormal, HalfNormal, HalfCauchy, Cauchy, Laplace, StudentT, Uniform,
Beta, Gamma and Exponential (``Delta`` lives in ``delta``). Every one samples with reparameterized
(pathwise) gradients. Parameters are cast to one float dtype and broadcast to the
batch shape at construction.

May import (within jsvi): ``jsvi.distributions._base``, ``jsvi.constraints``,
``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.scipy import special, stats

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey
from jsvi.constraints import Constraint
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import float_dtype, promote_params

__all__ = [
    "Beta",
    "Cauchy",
    "Exponential",
    "Gamma",
    "HalfCauchy",
    "HalfNormal",
    "Laplace",
    "LogNormal",
    "Normal",
    "StudentT",
    "Uniform",
]

_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _norm_logpdf(x: ArrayLike, loc: ArrayLike, scale: ArrayLike) -> Array:
    """Normal log-density, with the normalizer a separate term of the parameters.

    Under a lazy expansion (``ExpandedDistribution``, a plate) the parameters keep
    their shapes: ``log(scale)`` is then computed once per parameter element, and
    its gradient is the plain sum of the cotangent over the expanded dims, which
    the compiler can share with other parameter-only terms (such as an enumerated
    site's log-probabilities). ``log(scale)`` rather than ``log(scale**2)``: no
    underflow for tiny scales.
    """
    z = (jnp.asarray(x) - loc) / scale
    return -0.5 * jnp.square(z) - (jnp.log(scale) + _HALF_LOG_2PI)


def _tiny(x: Array) -> Array:
    return jnp.asarray(jnp.finfo(x.dtype).tiny, dtype=x.dtype)


class Normal(Distribution):
    """Normal distribution with mean ``loc`` and standard deviation ``scale``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> d = Normal(jnp.zeros(3), 1.0)
        >>> d.batch_shape, d.event_shape
        ((3,), ())
        >>> d.sample(jax.random.key(0), (2,)).shape
        (2, 3)
        >>> round(float(d.to_event(1).log_prob(jnp.zeros(3))), 4)
        -2.7568
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True
    _pytree_data_fields = ("loc", "scale")

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        self.loc, self.scale = promote_params("Normal", loc=loc, scale=scale)
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        eps = jax.random.normal(key, self.shape(sample_shape), dtype=self.loc.dtype)
        return self.loc + self.scale * eps

    def _log_prob(self, value: ArrayLike) -> Array:
        return _norm_logpdf(value, self.loc, self.scale)

    @property
    def mean(self) -> Array:
        return self.loc

    @property
    def variance(self) -> Array:
        return jnp.square(self.scale)

    def cdf(self, value: ArrayLike) -> Array:
        return special.ndtr((jnp.asarray(value) - self.loc) / self.scale)

    def icdf(self, q: ArrayLike) -> Array:
        return self.loc + self.scale * special.ndtri(q)


class LogNormal(Distribution):
    """``exp(x)`` for ``x ~ Normal(loc, scale)``."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.positive
    has_rsample = True
    _pytree_data_fields = ("loc", "scale")

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        self.loc, self.scale = promote_params("LogNormal", loc=loc, scale=scale)
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        eps = jax.random.normal(key, self.shape(sample_shape), dtype=self.loc.dtype)
        return jnp.exp(self.loc + self.scale * eps)

    def _log_prob(self, value: ArrayLike) -> Array:
        log_value = jnp.log(value)
        return _norm_logpdf(log_value, self.loc, self.scale) - log_value

    @property
    def mean(self) -> Array:
        return jnp.exp(self.loc + jnp.square(self.scale) / 2)

    @property
    def variance(self) -> Array:
        s2 = jnp.square(self.scale)
        return jnp.expm1(s2) * jnp.exp(2 * self.loc + s2)

    def cdf(self, value: ArrayLike) -> Array:
        return special.ndtr((jnp.log(value) - self.loc) / self.scale)

    def icdf(self, q: ArrayLike) -> Array:
        return jnp.exp(self.loc + self.scale * special.ndtri(q))


class HalfNormal(Distribution):
    """``|x|`` for ``x ~ Normal(0, scale)``."""

    arg_constraints = {"scale": constraints.positive}
    support = constraints.positive
    has_rsample = True
    _pytree_data_fields = ("scale",)

    def __init__(self, scale: ArrayLike = 1.0, *, validate_args: bool | None = None):
        (self.scale,) = promote_params("HalfNormal", scale=scale)
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        eps = jax.random.normal(key, self.shape(sample_shape), dtype=self.scale.dtype)
        return self.scale * jnp.abs(eps)

    def _log_prob(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        lp = _LOG_2 + _norm_logpdf(value, 0.0, self.scale)
        return jnp.where(value >= 0, lp, -jnp.inf)

    @property
    def mean(self) -> Array:
        return self.scale * math.sqrt(2 / math.pi)

    @property
    def variance(self) -> Array:
        return jnp.square(self.scale) * (1 - 2 / math.pi)

    def cdf(self, value: ArrayLike) -> Array:
        return special.erf(jnp.asarray(value) / (self.scale * math.sqrt(2)))

    def icdf(self, q: ArrayLike) -> Array:
        return self.scale * math.sqrt(2) * special.erfinv(q)


class Cauchy(Distribution):
    """Cauchy distribution with location ``loc`` and scale ``scale``."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True
    _pytree_data_fields = ("loc", "scale")

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        self.loc, self.scale = promote_params("Cauchy", loc=loc, scale=scale)
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        eps = jax.random.cauchy(key, self.shape(sample_shape), dtype=self.loc.dtype)
        return self.loc + self.scale * eps

    def _log_prob(self, value: ArrayLike) -> Array:
        return stats.cauchy.logpdf(value, self.loc, self.scale)

    @property
    def mean(self) -> Array:
        return jnp.full(self.batch_shape, jnp.nan, dtype=self.loc.dtype)

    @property
    def variance(self) -> Array:
        return jnp.full(self.batch_shape, jnp.nan, dtype=self.loc.dtype)

    def cdf(self, value: ArrayLike) -> Array:
        return 0.5 + jnp.arctan((jnp.asarray(value) - self.loc) / self.scale) / math.pi

    def icdf(self, q: ArrayLike) -> Array:
        return self.loc + self.scale * jnp.tan(math.pi * (jnp.asarray(q) - 0.5))


class HalfCauchy(Distribution):
    """``|x|`` for ``x ~ Cauchy(0, scale)``."""

    arg_constraints = {"scale": constraints.positive}
    support = constraints.positive
    has_rsample = True
    _pytree_data_fields = ("scale",)

    def __init__(self, scale: ArrayLike = 1.0, *, validate_args: bool | None = None):
        (self.scale,) = promote_params("HalfCauchy", scale=scale)
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        eps = jax.random.cauchy(key, self.shape(sample_shape), dtype=self.scale.dtype)
        return self.scale * jnp.abs(eps)

    def _log_prob(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        lp = _LOG_2 + stats.cauchy.logpdf(value, 0.0, self.scale)
        return jnp.where(value >= 0, lp, -jnp.inf)

    @property
    def mean(self) -> Array:
        return jnp.full(self.batch_shape, jnp.inf, dtype=self.scale.dtype)

    @property
    def variance(self) -> Array:
        return jnp.full(self.batch_shape, jnp.inf, dtype=self.scale.dtype)

    def cdf(self, value: ArrayLike) -> Array:
        return 2 / math.pi * jnp.arctan(jnp.asarray(value) / self.scale)

    def icdf(self, q: ArrayLike) -> Array:
        return self.scale * jnp.tan(math.pi / 2 * jnp.asarray(q))


class Laplace(Distribution):
    """Laplace (double exponential) distribution."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True
    _pytree_data_fields = ("loc", "scale")

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        self.loc, self.scale = promote_params("Laplace", loc=loc, scale=scale)
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        eps = jax.random.laplace(key, self.shape(sample_shape), dtype=self.loc.dtype)
        return self.loc + self.scale * eps

    def _log_prob(self, value: ArrayLike) -> Array:
        return stats.laplace.logpdf(value, self.loc, self.scale)

    @property
    def mean(self) -> Array:
        return self.loc

    @property
    def variance(self) -> Array:
        return 2 * jnp.square(self.scale)

    def cdf(self, value: ArrayLike) -> Array:
        z = (jnp.asarray(value) - self.loc) / self.scale
        return 0.5 - 0.5 * jnp.sign(z) * jnp.expm1(-jnp.abs(z))

    def icdf(self, q: ArrayLike) -> Array:
        d = jnp.asarray(q) - 0.5
        return self.loc - self.scale * jnp.sign(d) * jnp.log1p(-2 * jnp.abs(d))


class StudentT(Distribution):
    """Student's t with ``df`` degrees of freedom, location and scale."""

    arg_constraints = {
        "df": constraints.positive,
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    support = constraints.real
    has_rsample = True
    _pytree_data_fields = ("df", "loc", "scale")

    def __init__(
        self,
        df: ArrayLike,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        self.df, self.loc, self.scale = promote_params(
            "StudentT", df=df, loc=loc, scale=scale
        )
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        shape = self.shape(sample_shape)
        eps = jax.random.t(key, self.df, shape, dtype=self.loc.dtype)
        return self.loc + self.scale * eps

    def _log_prob(self, value: ArrayLike) -> Array:
        return stats.t.logpdf(value, self.df, self.loc, self.scale)

    @property
    def mean(self) -> Array:
        # scipy's convention: +inf when df <= 1 (the mean does not exist).
        return jnp.where(self.df > 1, self.loc, jnp.inf)

    @property
    def variance(self) -> Array:
        df = self.df
        var = jnp.square(self.scale) * df / jnp.where(df > 2, df - 2, 1.0)
        return jnp.where(df > 2, var, jnp.where(df > 1, jnp.inf, jnp.nan))


class Uniform(Distribution):
    """Uniform distribution on ``[low, high]``."""

    has_rsample = True
    _pytree_data_fields = ("low", "high")

    def __init__(
        self,
        low: ArrayLike = 0.0,
        high: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        self.low, self.high = promote_params("Uniform", low=low, high=high)
        super().__init__(validate_args=validate_args)

    @property
    def arg_constraints(self) -> Mapping[str, Constraint]:  # type: ignore[override]
        return {"low": constraints.real, "high": constraints.greater_than(self.low)}

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return constraints.interval(self.low, self.high)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        u = jax.random.uniform(key, self.shape(sample_shape), dtype=self.low.dtype)
        return self.low + (self.high - self.low) * u

    def _log_prob(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        inside = (value >= self.low) & (value <= self.high)
        return jnp.where(inside, -jnp.log(self.high - self.low), -jnp.inf)

    @property
    def mean(self) -> Array:
        return (self.low + self.high) / 2

    @property
    def variance(self) -> Array:
        return jnp.square(self.high - self.low) / 12

    def cdf(self, value: ArrayLike) -> Array:
        z = (jnp.asarray(value) - self.low) / (self.high - self.low)
        return jnp.clip(z, 0.0, 1.0)

    def icdf(self, q: ArrayLike) -> Array:
        return self.low + (self.high - self.low) * jnp.asarray(q)


@jax.custom_jvp
def log_beta(a: ArrayLike, b: ArrayLike) -> Array:
    """``log B(a, b)``: ``jax.scipy.special.betaln``'s value, with the derivative
    ``(digamma(a) - digamma(a + b), digamma(b) - digamma(a + b))`` taken from one
    digamma of ``[a, b, a + b]``.

    Differentiating ``betaln`` itself goes through both of its branches (small and
    large arguments) and costs four digamma evaluations; a score-function step
    on a Beta site (Pyro's Part III coin) compiles markedly faster with this one
    (``benchmarks/results/``).
    """
    return special.betaln(a, b)


@log_beta.defjvp
def _log_beta_jvp(primals, tangents):
    a, b = primals
    da, db = tangents
    a, b = jnp.broadcast_arrays(a, b)
    psi = special.digamma(jnp.stack([a, b, a + b]))
    return log_beta(a, b), (psi[0] - psi[2]) * da + (psi[1] - psi[2]) * db


class Beta(Distribution):
    """Beta distribution; ``concentration1`` is alpha, ``concentration0`` beta.

    Samples are clipped into ``[tiny, 1 - eps]`` so their log-density is finite.
    """

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
    }
    support = constraints.unit_interval
    has_rsample = True
    _pytree_data_fields = ("concentration1", "concentration0")

    def __init__(
        self,
        concentration1: ArrayLike,
        concentration0: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        self.concentration1, self.concentration0 = promote_params(
            "Beta", concentration1=concentration1, concentration0=concentration0
        )
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        a, b = self.concentration1, self.concentration0
        shape = self.shape(sample_shape)
        # Both gammas from one vectorized draw, normalized in log space: one
        # rejection loop instead of jax.random.beta's two, which halves the
        # compile time and cuts the step time of a Beta site by about a third.
        concentration = jnp.stack([jnp.broadcast_to(a, shape), jnp.broadcast_to(b, shape)], -1)
        log_gamma = jax.random.loggamma(key, concentration, dtype=a.dtype)
        x = jax.nn.sigmoid(log_gamma[..., 0] - log_gamma[..., 1])
        eps = jnp.finfo(a.dtype).eps
        return jnp.clip(x, _tiny(a), 1.0 - eps)

    def _log_prob(self, value: ArrayLike) -> Array:
        a, b = self.concentration1, self.concentration0
        x = jnp.asarray(value, dtype=float_dtype(value, a))
        # In-support formula only (support is checked by validation): fewer ops
        # than scipy's logpdf, which also handles the boundary and outside values.
        log_density = special.xlogy(a - 1, x) + special.xlog1py(b - 1, -x)
        return log_density - log_beta(a, b)

    @property
    def mean(self) -> Array:
        a, b = self.concentration1, self.concentration0
        return a / (a + b)

    @property
    def variance(self) -> Array:
        a, b = self.concentration1, self.concentration0
        total = a + b
        return a * b / (jnp.square(total) * (total + 1))


class Gamma(Distribution):
    """Gamma distribution with shape ``concentration`` and inverse scale ``rate``.

    Samples are clipped below at the dtype's smallest normal number.
    """

    arg_constraints = {
        "concentration": constraints.positive,
        "rate": constraints.positive,
    }
    support = constraints.positive
    has_rsample = True
    _pytree_data_fields = ("concentration", "rate")

    def __init__(
        self,
        concentration: ArrayLike,
        rate: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        self.concentration, self.rate = promote_params(
            "Gamma", concentration=concentration, rate=rate
        )
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        a = self.concentration
        x = jax.random.gamma(key, a, self.shape(sample_shape), dtype=a.dtype)
        return jnp.maximum(x / self.rate, _tiny(a))

    def _log_prob(self, value: ArrayLike) -> Array:
        a, rate = self.concentration, self.rate
        value = jnp.asarray(value, dtype=float_dtype(value, a))
        return (
            special.xlogy(a - 1, value)
            - rate * value
            + a * jnp.log(rate)
            - special.gammaln(a)
        )

    @property
    def mean(self) -> Array:
        return self.concentration / self.rate

    @property
    def variance(self) -> Array:
        return self.concentration / jnp.square(self.rate)


class Exponential(Distribution):
    """Exponential distribution with rate ``rate``.

    Samples are clipped below at the dtype's smallest normal number.
    """

    arg_constraints = {"rate": constraints.positive}
    support = constraints.positive
    has_rsample = True
    _pytree_data_fields = ("rate",)

    def __init__(self, rate: ArrayLike = 1.0, *, validate_args: bool | None = None):
        (self.rate,) = promote_params("Exponential", rate=rate)
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        shape = self.shape(sample_shape)
        x = jax.random.exponential(key, shape, dtype=self.rate.dtype)
        return jnp.maximum(x / self.rate, _tiny(self.rate))

    def _log_prob(self, value: ArrayLike) -> Array:
        return jnp.log(self.rate) - self.rate * jnp.asarray(value)

    @property
    def mean(self) -> Array:
        return 1 / self.rate

    @property
    def variance(self) -> Array:
        return 1 / jnp.square(self.rate)

    def cdf(self, value: ArrayLike) -> Array:
        return -jnp.expm1(-self.rate * jnp.asarray(value))

    def icdf(self, q: ArrayLike) -> Array:
        return -jnp.log1p(-jnp.asarray(q)) / self.rate
