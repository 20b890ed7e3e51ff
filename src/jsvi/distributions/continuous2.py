"""More univariate continuous families.

Chi2, InverseGamma, Gumbel, Logistic, Weibull, Pareto, Kumaraswamy,
AsymmetricLaplace, SoftLaplace and VonMises, with NumPyro's argument names. All
but VonMises sample with reparameterized (pathwise) gradients: by a location-scale
map or an inverse cdf of a uniform or exponential draw, or through
``jax.random.gamma``'s implicit gradients. VonMises draws by rejection (Best and
Fisher, 1979), which gives no pathwise gradient, so ``has_rsample`` is False.

May import (within jsvi): ``jsvi.distributions._base``,
``jsvi.distributions.continuous``, ``jsvi.constraints``, ``jsvi._typing``,
``jsvi.errors``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy import special

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey
from jsvi.constraints import Constraint
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import float_dtype, promote_params
from jsvi.distributions.continuous import _tiny, log_beta

__all__ = [
    "AsymmetricLaplace",
    "Chi2",
    "Gumbel",
    "InverseGamma",
    "Kumaraswamy",
    "Logistic",
    "Pareto",
    "SoftLaplace",
    "VonMises",
    "Weibull",
]

_EULER_GAMMA = 0.5772156649015329
_LOG_2_OVER_PI = math.log(2.0 / math.pi)
_LOG_2PI = math.log(2.0 * math.pi)


def _as_float(value: ArrayLike, param: Array) -> Array:
    return jnp.asarray(value, dtype=float_dtype(value, param))


def _uniform_open(key: PRNGKey, shape: tuple, dtype) -> Array:
    """Uniform draws in the open interval (0, 1)."""
    return jax.random.uniform(
        key, shape, dtype=dtype, minval=_tiny(jnp.zeros((), dtype))
    )


class Chi2(Distribution):
    """Chi-squared distribution with ``df`` degrees of freedom (``Gamma(df/2, 1/2)``)."""

    arg_constraints = {"df": constraints.positive}
    support = constraints.positive
    has_rsample = True
    _pytree_data_fields = ("df",)

    def __init__(self, df: ArrayLike, *, validate_args: bool | None = None):
        (self.df,) = promote_params("Chi2", df=df)
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        half = 0.5 * self.df
        x = jax.random.gamma(key, half, self.shape(sample_shape), dtype=half.dtype)
        return jnp.maximum(2.0 * x, _tiny(half))

    def _log_prob(self, value: ArrayLike) -> Array:
        half = 0.5 * self.df
        x = _as_float(value, half)
        return (
            special.xlogy(half - 1, x)
            - 0.5 * x
            - half * math.log(2.0)
            - special.gammaln(half)
        )

    @property
    def mean(self) -> Array:
        return self.df

    @property
    def variance(self) -> Array:
        return 2.0 * self.df


class InverseGamma(Distribution):
    """``1 / x`` for ``x ~ Gamma(concentration, rate)``; ``rate`` is the scale of
    the inverse gamma.

    Samples are clipped into the finite positive floats.
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
            "InverseGamma", concentration=concentration, rate=rate
        )
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        a = self.concentration
        g = jax.random.gamma(key, a, self.shape(sample_shape), dtype=a.dtype)
        x = self.rate / jnp.maximum(g, _tiny(a))
        return jnp.clip(x, _tiny(a), jnp.finfo(a.dtype).max)

    def _log_prob(self, value: ArrayLike) -> Array:
        a, rate = self.concentration, self.rate
        x = _as_float(value, a)
        return a * jnp.log(rate) - special.gammaln(a) - (a + 1) * jnp.log(x) - rate / x

    @property
    def mean(self) -> Array:
        a = self.concentration
        return jnp.where(a > 1, self.rate / jnp.where(a > 1, a - 1, 1.0), jnp.inf)

    @property
    def variance(self) -> Array:
        a = self.concentration
        am1 = jnp.where(a > 2, a - 1, 2.0)
        return jnp.where(a > 2, jnp.square(self.rate / am1) / (am1 - 1), jnp.inf)


class _LocScale(Distribution):
    """Shared constructor of the location-scale families below."""

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
        self.loc, self.scale = promote_params(type(self).__name__, loc=loc, scale=scale)
        super().__init__(validate_args=validate_args)

    def _z(self, value: ArrayLike) -> Array:
        return (jnp.asarray(value) - self.loc) / self.scale


class Gumbel(_LocScale):
    """Gumbel (type-I extreme value, maxima) distribution."""

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        eps = jax.random.gumbel(key, self.shape(sample_shape), dtype=self.loc.dtype)
        return self.loc + self.scale * eps

    def _log_prob(self, value: ArrayLike) -> Array:
        z = self._z(value)
        return -(z + jnp.exp(-z)) - jnp.log(self.scale)

    @property
    def mean(self) -> Array:
        return self.loc + self.scale * _EULER_GAMMA

    @property
    def variance(self) -> Array:
        return jnp.square(self.scale) * (math.pi**2 / 6)

    def cdf(self, value: ArrayLike) -> Array:
        return jnp.exp(-jnp.exp(-self._z(value)))

    def icdf(self, q: ArrayLike) -> Array:
        return self.loc - self.scale * jnp.log(-jnp.log(jnp.asarray(q)))


class Logistic(_LocScale):
    """Logistic distribution."""

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        eps = jax.random.logistic(key, self.shape(sample_shape), dtype=self.loc.dtype)
        return self.loc + self.scale * eps

    def _log_prob(self, value: ArrayLike) -> Array:
        z = self._z(value)
        # log sigmoid(z) + log sigmoid(-z) = -|z| - 2 log1p(exp(-|z|))
        a = jnp.abs(z)
        return -a - 2.0 * jnp.log1p(jnp.exp(-a)) - jnp.log(self.scale)

    @property
    def mean(self) -> Array:
        return self.loc

    @property
    def variance(self) -> Array:
        return jnp.square(self.scale) * (math.pi**2 / 3)

    def cdf(self, value: ArrayLike) -> Array:
        return jax.nn.sigmoid(self._z(value))

    def icdf(self, q: ArrayLike) -> Array:
        return self.loc + self.scale * special.logit(jnp.asarray(q))


class SoftLaplace(_LocScale):
    """Smooth Laplace-like distribution with density ``1 / (pi scale cosh(z))``,
    ``z = (x - loc) / scale`` (a scaled hyperbolic secant distribution)."""

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        u = _uniform_open(key, self.shape(sample_shape), self.loc.dtype)
        return self.icdf(u)

    def _log_prob(self, value: ArrayLike) -> Array:
        z = self._z(value)
        a = jnp.abs(z)
        # log(2 / (e^z + e^-z)) = log 2 - |z| - log1p(exp(-2|z|))
        return _LOG_2_OVER_PI - a - jnp.log1p(jnp.exp(-2.0 * a)) - jnp.log(self.scale)

    @property
    def mean(self) -> Array:
        return self.loc

    @property
    def variance(self) -> Array:
        return jnp.square(self.scale * (math.pi / 2))

    def cdf(self, value: ArrayLike) -> Array:
        return (2 / math.pi) * jnp.arctan(jnp.exp(self._z(value)))

    def icdf(self, q: ArrayLike) -> Array:
        return self.loc + self.scale * jnp.log(jnp.tan(jnp.asarray(q) * (math.pi / 2)))


class AsymmetricLaplace(Distribution):
    """Asymmetric Laplace: density ``exp(-|x - loc| k^s / scale) / (scale (k + 1/k))``
    with ``k = asymmetry`` and ``s = sign(x - loc)``; ``asymmetry=1`` is Laplace."""

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "asymmetry": constraints.positive,
    }
    support = constraints.real
    has_rsample = True
    _pytree_data_fields = ("loc", "scale", "asymmetry")

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        asymmetry: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        self.loc, self.scale, self.asymmetry = promote_params(
            "AsymmetricLaplace", loc=loc, scale=scale, asymmetry=asymmetry
        )
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        # Inverse cdf of one uniform: below loc (mass k^2 / (1 + k^2)) the tail
        # has scale k * scale, above it scale / k.
        u = _uniform_open(key, self.shape(sample_shape), self.loc.dtype)
        k = self.asymmetry
        k2 = jnp.square(k)
        left = u * (1 + k2) < k2
        log_tail = jnp.where(
            left, jnp.log(u * (1 + k2) / k2), jnp.log1p(-u) + jnp.log1p(k2)
        )
        return self.loc + self.scale * jnp.where(left, k, -1 / k) * log_tail

    def _log_prob(self, value: ArrayLike) -> Array:
        z = (jnp.asarray(value) - self.loc) / self.scale
        k = self.asymmetry
        return jnp.where(z >= 0, -k * z, z / k) - jnp.log(self.scale * (k + 1 / k))

    @property
    def mean(self) -> Array:
        k = self.asymmetry
        return self.loc + self.scale * (1 / k - k)

    @property
    def variance(self) -> Array:
        k2 = jnp.square(self.asymmetry)
        return jnp.square(self.scale) * (1 / k2 + k2)


class Weibull(Distribution):
    """Weibull distribution: density ``(k / s) (x / s)^(k-1) exp(-(x / s)^k)`` with
    ``s = scale`` and ``k = concentration``."""

    arg_constraints = {
        "scale": constraints.positive,
        "concentration": constraints.positive,
    }
    support = constraints.positive
    has_rsample = True
    _pytree_data_fields = ("scale", "concentration")

    def __init__(
        self,
        scale: ArrayLike,
        concentration: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        self.scale, self.concentration = promote_params(
            "Weibull", scale=scale, concentration=concentration
        )
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        e = jax.random.exponential(
            key, self.shape(sample_shape), dtype=self.scale.dtype
        )
        x = self.scale * jnp.exp(jnp.log(jnp.maximum(e, _tiny(e))) / self.concentration)
        return jnp.clip(x, _tiny(x), jnp.finfo(x.dtype).max)

    def _log_prob(self, value: ArrayLike) -> Array:
        k, s = self.concentration, self.scale
        log_z = jnp.log(_as_float(value, k)) - jnp.log(s)
        return jnp.log(k) - jnp.log(s) + (k - 1) * log_z - jnp.exp(k * log_z)

    @property
    def mean(self) -> Array:
        return self.scale * jnp.exp(special.gammaln(1 + 1 / self.concentration))

    @property
    def variance(self) -> Array:
        k = self.concentration
        g1 = jnp.exp(special.gammaln(1 + 1 / k))
        g2 = jnp.exp(special.gammaln(1 + 2 / k))
        return jnp.square(self.scale) * (g2 - jnp.square(g1))

    def cdf(self, value: ArrayLike) -> Array:
        return -jnp.expm1(
            -jnp.power(jnp.asarray(value) / self.scale, self.concentration)
        )

    def icdf(self, q: ArrayLike) -> Array:
        return self.scale * jnp.power(
            -jnp.log1p(-jnp.asarray(q)), 1 / self.concentration
        )


class Pareto(Distribution):
    """Pareto (type I) distribution on ``x > scale`` with tail index ``alpha``."""

    arg_constraints = {"scale": constraints.positive, "alpha": constraints.positive}
    has_rsample = True
    _pytree_data_fields = ("scale", "alpha")

    def __init__(
        self,
        scale: ArrayLike,
        alpha: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        self.scale, self.alpha = promote_params("Pareto", scale=scale, alpha=alpha)
        super().__init__(validate_args=validate_args)

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return constraints.greater_than(self.scale)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        e = jax.random.exponential(
            key, self.shape(sample_shape), dtype=self.scale.dtype
        )
        x = self.scale * jnp.exp(e / self.alpha)
        # Draws equal to ``scale`` (e rounding to 0) moved just inside the support.
        x = jnp.maximum(x, self.scale * (1 + jnp.finfo(x.dtype).eps))
        return jnp.minimum(x, jnp.finfo(x.dtype).max)

    def _log_prob(self, value: ArrayLike) -> Array:
        a, s = self.alpha, self.scale
        x = _as_float(value, a)
        return jnp.log(a) + a * jnp.log(s) - (a + 1) * jnp.log(x)

    @property
    def mean(self) -> Array:
        a = self.alpha
        return jnp.where(a > 1, self.scale * a / jnp.where(a > 1, a - 1, 1.0), jnp.inf)

    @property
    def variance(self) -> Array:
        a = self.alpha
        am1 = jnp.where(a > 2, a - 1, 2.0)
        return jnp.where(a > 2, jnp.square(self.scale / am1) * a / (am1 - 1), jnp.inf)

    def cdf(self, value: ArrayLike) -> Array:
        return -jnp.expm1(self.alpha * (jnp.log(self.scale) - jnp.log(value)))

    def icdf(self, q: ArrayLike) -> Array:
        return self.scale * jnp.exp(-jnp.log1p(-jnp.asarray(q)) / self.alpha)


class Kumaraswamy(Distribution):
    """Kumaraswamy distribution on ``[0, 1]``: density ``a b x^(a-1) (1 - x^a)^(b-1)``
    with ``a = concentration1`` and ``b = concentration0``.

    Samples (by the inverse cdf) are clipped into ``[tiny, 1 - eps]``.
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
            "Kumaraswamy", concentration1=concentration1, concentration0=concentration0
        )
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        a, b = self.concentration1, self.concentration0
        u = _uniform_open(key, self.shape(sample_shape), a.dtype)
        # x = (1 - u^(1/b))^(1/a), in logs
        log_x = jnp.log1p(-jnp.exp(jnp.log(u) / b)) / a
        return jnp.clip(jnp.exp(log_x), _tiny(a), 1.0 - jnp.finfo(a.dtype).eps)

    def _log_prob(self, value: ArrayLike) -> Array:
        a, b = self.concentration1, self.concentration0
        x = _as_float(value, a)
        log_x = jnp.log(x)
        return (
            jnp.log(a)
            + jnp.log(b)
            + (a - 1) * log_x
            + (b - 1) * jnp.log1p(-jnp.exp(a * log_x))
        )

    def _moment(self, n: int) -> Array:
        """``E[x^n] = b B(1 + n/a, b)``."""
        a, b = self.concentration1, self.concentration0
        return b * jnp.exp(log_beta(1 + n / a, b))

    @property
    def mean(self) -> Array:
        return self._moment(1)

    @property
    def variance(self) -> Array:
        return self._moment(2) - jnp.square(self._moment(1))


def _von_mises_centered(key: PRNGKey, kappa: Array, shape: tuple) -> Array:
    """Draws of VonMises(0, kappa) on [-pi, pi] by Best and Fisher's (1979)
    rejection sampler, every element looping until accepted."""
    dtype = kappa.dtype
    kappa = jnp.broadcast_to(kappa, shape)
    # s = (1 + rho^2) / (2 rho) with rho = (tau - sqrt(2 tau)) / (2 kappa) and
    # tau = 1 + sqrt(1 + 4 kappa^2); below kappa = 1e-2 its float32 value loses
    # digits to cancellation, and its series 1/kappa + kappa/4 is exact enough.
    small = kappa < (1e-2 if dtype == jnp.float32 else 1e-5)
    k = jnp.where(small, 1.0, kappa)
    tau = 1 + jnp.sqrt(1 + 4 * jnp.square(k))
    rho = (tau - jnp.sqrt(2 * tau)) / (2 * k)
    s = jnp.where(small, 1 / kappa + kappa / 4, (1 + jnp.square(rho)) / (2 * rho))

    def cond(state):
        return ~jnp.all(state[2])

    def body(state):
        key, w, done = state
        key, k1, k2 = jax.random.split(key, 3)
        u = jax.random.uniform(k1, (2,) + shape, dtype=dtype)
        z = jnp.cos(math.pi * u[0])
        w_new = (1 + s * z) / (s + z)
        y = kappa * (s - w_new)
        accept = (y * (2 - y) - u[1] > 0) | (jnp.log(y / u[1]) + 1 - y >= 0)
        w = jnp.where(done, w, w_new)
        return key, w, done | accept

    key, sign_key = jax.random.split(key)
    init = (key, jnp.zeros(shape, dtype), jnp.zeros(shape, bool))
    _, w, _ = jax.lax.while_loop(cond, body, init)
    sign = jnp.where(jax.random.bernoulli(sign_key, 0.5, shape), 1.0, -1.0)
    return sign.astype(dtype) * jnp.arccos(jnp.clip(w, -1.0, 1.0))


class VonMises(Distribution):
    """Von Mises (circular normal) distribution on ``[-pi, pi]``.

    ``mean`` is ``loc`` (the circular mean) and ``variance`` the circular variance
    ``1 - I1(k) / I0(k)``. Draws come from a rejection sampler, so
    ``has_rsample`` is False.
    """

    arg_constraints = {"loc": constraints.real, "concentration": constraints.positive}
    support = constraints.interval(-math.pi, math.pi)
    _pytree_data_fields = ("loc", "concentration")

    def __init__(
        self,
        loc: ArrayLike,
        concentration: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        self.loc, self.concentration = promote_params(
            "VonMises", loc=loc, concentration=concentration
        )
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        loc = jax.lax.stop_gradient(self.loc)
        kappa = jax.lax.stop_gradient(self.concentration)
        x = _von_mises_centered(key, kappa, self.shape(sample_shape))
        return jnp.remainder(x + loc + math.pi, 2 * math.pi) - math.pi

    def _log_prob(self, value: ArrayLike) -> Array:
        k = self.concentration
        log_i0 = jnp.log(special.i0e(k)) + k
        return k * jnp.cos(jnp.asarray(value) - self.loc) - _LOG_2PI - log_i0

    @property
    def mean(self) -> Array:
        return self.loc

    @property
    def variance(self) -> Array:
        k = self.concentration
        return 1 - special.i1e(k) / special.i0e(k)
