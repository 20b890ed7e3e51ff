"""``TruncatedNormal``: a normal distribution restricted to ``[low, high]``.

Its normalizer ``Z = Phi(beta) - Phi(alpha)`` (standardized bounds) is computed in
logs from ``log_ndtr``, on the side of the mode where it does not cancel: for a
window in the upper tail (``alpha > 0``) the mirrored window ``[-beta, -alpha]``
is used. Draws invert the cdf of a uniform draw in the same mirrored frame, so
they have pathwise gradients with respect to ``loc``, ``scale``, ``low`` and
``high``. Where the cdf underflows (windows beyond about 13 standard deviations
in float32) the inverse cdf is solved by Newton steps on ``log_ndtr``.

May import (within jsvi): ``jsvi.distributions._base``, ``jsvi.constraints``,
``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.scipy import special

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey
from jsvi.constraints import Constraint
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import promote_params

__all__ = ["TruncatedNormal"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def log1mexp(d: Array) -> Array:
    """``log(1 - exp(d))`` for ``d <= 0``, accurate near 0 and far below it."""
    d = jnp.minimum(d, 0.0)
    return jnp.where(d > -_LOG_2, jnp.log(-jnp.expm1(d)), jnp.log1p(-jnp.exp(d)))


def _log_phi(z: Array) -> Array:
    """Standard normal log-density, ``-inf`` at infinite ``z``."""
    return -0.5 * jnp.square(z) - _HALF_LOG_2PI


def _ndtri_of_log(log_p: Array) -> Array:
    """``ndtri(exp(log_p))``, also where ``exp(log_p)`` underflows: there (below
    ``log_p = -80``, about 19 sds out) three Newton steps on ``log_ndtr(x) = log_p``
    from ``x = -sqrt(-2 log_p)`` (the leading term of ``log_ndtr``'s asymptote)."""
    deep = log_p < -80.0
    x = special.ndtri(jnp.exp(jnp.where(deep, -1.0, log_p)))

    def newton(x: Array) -> Array:
        t = -jnp.sqrt(-2.0 * jnp.where(deep, log_p, -100.0))
        for _ in range(3):
            log_cdf = special.log_ndtr(t)
            t = t - (log_cdf - log_p) * jnp.exp(log_cdf - _log_phi(t))
        return jnp.where(deep, t, x)

    # Only batches with such a draw pay for the Newton steps.
    return jax.lax.cond(jnp.any(deep), newton, lambda x: x, x)


class TruncatedNormal(Distribution):
    """``Normal(loc, scale)`` conditioned on ``low <= x <= high``.

    Args:
        loc: location of the untruncated normal.
        scale: its standard deviation (positive).
        low: lower bound, or None for no lower bound.
        high: upper bound (greater than ``low``), or None for no upper bound.

    Example:
        >>> d = TruncatedNormal(0.0, 1.0, low=0.0)
        >>> round(float(d.mean), 4)  # the half-normal mean sqrt(2 / pi)
        0.7979
    """

    has_rsample = True
    _pytree_data_fields = ("loc", "scale", "low", "high")

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        low: ArrayLike | None = None,
        high: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        params = {"loc": loc, "scale": scale}
        if low is not None:
            params["low"] = low
        if high is not None:
            params["high"] = high
        arrays = dict(zip(params, promote_params("TruncatedNormal", **params)))
        self.loc, self.scale = arrays["loc"], arrays["scale"]
        self.low, self.high = arrays.get("low"), arrays.get("high")
        super().__init__(validate_args=validate_args)

    @property
    def arg_constraints(self) -> Mapping[str, Constraint]:  # type: ignore[override]
        high = (
            constraints.real if self.low is None else constraints.greater_than(self.low)
        )
        return {
            "loc": constraints.real,
            "scale": constraints.positive,
            "low": constraints.real,
            "high": high,
        }

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        if self.low is None and self.high is None:
            return constraints.real
        if self.high is None:
            return constraints.greater_than(self.low)
        if self.low is None:
            return constraints.less_than(self.high)
        return constraints.interval(self.low, self.high)

    # ------------------------------------------------------------ helpers

    def _bounds(self) -> tuple[Array, Array]:
        """Standardized bounds ``alpha``, ``beta`` (``-inf``/``inf`` when absent)."""
        loc, scale = self.loc, self.scale
        inf = jnp.asarray(jnp.inf, loc.dtype)
        alpha = -inf if self.low is None else (self.low - loc) / scale
        beta = inf if self.high is None else (self.high - loc) / scale
        shape = self.batch_shape
        return jnp.broadcast_to(alpha, shape), jnp.broadcast_to(beta, shape)

    def _frame(self) -> tuple[Array, Array, Array, Array]:
        """``flip``, mirrored bounds ``a <= b`` with ``a <= 0``, and ``log Z``."""
        alpha, beta = self._bounds()
        flip = alpha > 0
        a = jnp.where(flip, -beta, alpha)
        b = jnp.where(flip, -alpha, beta)
        log_phi_a, log_phi_b = special.log_ndtr(a), special.log_ndtr(b)
        log_z = log_phi_b + log1mexp(log_phi_a - log_phi_b)
        return flip, a, log_phi_a, log_z

    def _icdf_std(self, q: Array) -> Array:
        flip, a, log_phi_a, log_z = self._frame()
        # In the mirrored frame the cdf runs the other way: q -> 1 - q.
        q = jnp.where(flip, 1 - q, q)
        log_p = jnp.logaddexp(log_phi_a, jnp.log(q) + log_z)
        x = _ndtri_of_log(log_p)
        alpha, beta = self._bounds()
        return jnp.clip(jnp.where(flip, -x, x), alpha, beta)

    # ---------------------------------------------------------- interface

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        dtype = self.loc.dtype
        shape = self.shape(sample_shape)
        u = jax.random.uniform(
            key, shape, dtype=dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0
        )
        x = self.loc + self.scale * self._icdf_std(u)
        # A one-sided support is open at its bound: keep rounded draws inside.
        eps = jnp.finfo(dtype).eps
        if self.high is None and self.low is not None:
            x = jnp.maximum(x, self.low + (jnp.abs(self.low) + 1) * eps)
        if self.low is None and self.high is not None:
            x = jnp.minimum(x, self.high - (jnp.abs(self.high) + 1) * eps)
        return x

    def _log_prob(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        z = (value - self.loc) / self.scale
        *_, log_z = self._frame()
        lp = -0.5 * jnp.square(z) - (jnp.log(self.scale) + _HALF_LOG_2PI) - log_z
        inside = jnp.ones(jnp.shape(lp), bool)
        if self.low is not None:
            inside = inside & (value >= self.low)
        if self.high is not None:
            inside = inside & (value <= self.high)
        return jnp.where(inside, lp, -jnp.inf)

    def _ratios(self) -> tuple[Array, Array]:
        """``phi(alpha) / Z`` and ``phi(beta) / Z``.

        A window on one side of 0 is mirrored to the upper side, where
        ``phi(lo) / Q(lo) = sqrt(2 / pi) / erfcx(lo / sqrt(2))`` and ``Q(hi) / Q(lo)``
        (``Q`` the upper tail) come from ``erfcx`` to float precision however far out
        the window lies; a window around 0 takes plain differences of ``ndtr``.
        """
        alpha, beta = self._bounds()
        flip = beta <= 0
        lo = jnp.where(flip, -beta, alpha)
        hi = jnp.where(flip, -alpha, beta)
        tail = lo >= 0
        # tail frame (lo >= 0): the safe values keep the unused branch finite
        lo_t, hi_t = jnp.where(tail, lo, 0.0), jnp.where(tail, hi, jnp.inf)
        cx_lo = special.erfcx(lo_t / _SQRT_2)
        e = jnp.exp(0.5 * (jnp.square(lo_t) - jnp.square(hi_t)))  # phi(hi) / phi(lo)
        q = special.erfcx(hi_t / _SQRT_2) / cx_lo * e  # Q(hi) / Q(lo)
        r_lo_t = _SQRT_2_OVER_PI / cx_lo / (1 - q)
        r_hi_t = r_lo_t * e
        # window around 0
        lo_s, hi_s = jnp.where(tail, -1.0, lo), jnp.where(tail, 1.0, hi)
        z = special.ndtr(hi_s) - special.ndtr(lo_s)
        r_lo_s = jnp.exp(_log_phi(lo_s)) / z
        r_hi_s = jnp.exp(_log_phi(hi_s)) / z
        r_lo = jnp.where(tail, r_lo_t, r_lo_s)
        r_hi = jnp.where(tail, r_hi_t, r_hi_s)
        # phi is even: mirrored back, lo's ratio is beta's and hi's is alpha's
        return jnp.where(flip, r_hi, r_lo), jnp.where(flip, r_lo, r_hi)

    @property
    def mean(self) -> Array:
        r_a, r_b = self._ratios()
        return self.loc + self.scale * (r_a - r_b)

    @property
    def variance(self) -> Array:
        """``scale^2 (1 + alpha r_a - beta r_b - (r_a - r_b)^2)``. Far in a tail the
        terms cancel to about ``1 / alpha^2``: the relative error grows like
        ``alpha^2`` float ulps."""
        alpha, beta = self._bounds()
        r_a, r_b = self._ratios()
        ar_a = jnp.where(jnp.isfinite(alpha), alpha * r_a, 0.0)
        br_b = jnp.where(jnp.isfinite(beta), beta * r_b, 0.0)
        return jnp.square(self.scale) * (1 + ar_a - br_b - jnp.square(r_a - r_b))

    def cdf(self, value: ArrayLike) -> Array:
        alpha, beta = self._bounds()
        z = jnp.clip((jnp.asarray(value) - self.loc) / self.scale, alpha, beta)
        flip, a, log_phi_a, log_z = self._frame()
        zz = jnp.where(flip, -z, z)
        inner = jnp.exp(
            special.log_ndtr(zz) + log1mexp(log_phi_a - special.log_ndtr(zz)) - log_z
        )
        inner = jnp.where(zz <= a, 0.0, inner)
        return jnp.where(flip, 1 - inner, inner)

    def icdf(self, q: ArrayLike) -> Array:
        return self.loc + self.scale * self._icdf_std(jnp.asarray(q))
