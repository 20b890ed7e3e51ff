"""Closed-form KL divergences, ``kl_divergence(p, q) = KL(p || q)``.

The table maps ``(type(p), type(q))`` to a function; it is built once at import
and never changed afterwards. Lookup walks both classes' MROs, so a rule for a
base class serves its subclasses (``Delta`` against any ``Distribution``).
Wrappers are peeled before the lookup: ``MaskedDistribution`` (KL is 0 where
masked), ``ExpandedDistribution`` (the base's KL, broadcast), ``Independent`` on
both sides with the same number of reinterpreted dims (the base's KL, summed over
them) and ``NonReparameterized`` (same density). Pairs without a closed form
raise ``NoClosedFormError``, so callers can fall back to Monte Carlo.

May import (within jsvi): ``jsvi.distributions.*``, ``jsvi._typing``,
``jsvi.errors``.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import jax.numpy as jnp
from jax.scipy import special
from jax.scipy.linalg import solve_triangular

from jsvi._typing import Array, is_concrete
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import sum_rightmost
from jsvi.distributions.continuous import (
    Beta,
    Exponential,
    Gamma,
    Laplace,
    Normal,
    log_beta,
)
from jsvi.distributions.continuous2 import Gumbel, InverseGamma
from jsvi.distributions.delta import Delta
from jsvi.distributions.discrete import Bernoulli, Categorical, OneHotCategorical
from jsvi.distributions.multivariate import (
    Dirichlet,
    LowRankMultivariateNormal,
    MultivariateNormal,
)
from jsvi.distributions.truncated import TruncatedNormal
from jsvi.distributions.wrappers import (
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
    NonReparameterized,
)
from jsvi.errors import ArgumentError, ShapeError

__all__ = ["NoClosedFormError", "kl_divergence"]


_EULER_GAMMA = 0.5772156649015329


class NoClosedFormError(ArgumentError):
    """``kl_divergence`` has no closed form for this pair of distributions."""


# ---------------------------------------------------------------------------
# the closed forms


def _kl_normal(p: Normal, q: Normal) -> Array:
    ratio = p.scale / q.scale
    return (
        -jnp.log(ratio)
        + 0.5 * (jnp.square(ratio) + jnp.square((p.loc - q.loc) / q.scale))
        - 0.5
    )


def _kl_exponential(p: Exponential, q: Exponential) -> Array:
    ratio = q.rate / p.rate
    return ratio - jnp.log(ratio) - 1.0


def _kl_gamma(p: Gamma | InverseGamma, q: Gamma | InverseGamma) -> Array:
    # KL is invariant under the bijection x -> 1 / x, so InverseGamma's is Gamma's.
    a1, r1, a2, r2 = p.concentration, p.rate, q.concentration, q.rate
    return (
        (a1 - a2) * special.digamma(a1)
        - special.gammaln(a1)
        + special.gammaln(a2)
        + a2 * (jnp.log(r1) - jnp.log(r2))
        + a1 * (r2 - r1) / r1
    )


def _kl_laplace(p: Laplace, q: Laplace) -> Array:
    """``log(b_q / b_p) + |m_p - m_q| / b_q + (b_p / b_q) exp(-|m_p - m_q| / b_p) - 1``."""
    ratio = p.scale / q.scale
    dist = jnp.abs(p.loc - q.loc)
    return -jnp.log(ratio) + dist / q.scale + ratio * jnp.exp(-dist / p.scale) - 1.0


def _kl_gumbel(p: Gumbel, q: Gumbel) -> Array:
    """With ``z = (x - m_q) / b_q`` under p: ``E[z] = (m_p + gamma b_p - m_q) / b_q`` and
    ``E[exp(-z)] = exp((m_q - m_p) / b_q) Gamma(1 + b_p / b_q)`` (the Gumbel's moment
    generating function); ``E_p[log p] = -log b_p - gamma - 1``."""
    ratio = p.scale / q.scale
    mean_z = (p.loc - q.loc) / q.scale + _EULER_GAMMA * ratio
    mgf = jnp.exp((q.loc - p.loc) / q.scale + special.gammaln(1.0 + ratio))
    return -jnp.log(ratio) - _EULER_GAMMA - 1.0 + mean_z + mgf


def _same_bound(a: Array | None, b: Array | None) -> bool:
    if (a is None) != (b is None):
        return False
    if a is None or not (is_concrete(a) and is_concrete(b)):
        return True  # traced bounds are taken to agree
    return bool(jnp.all(a == b))


def _kl_truncated_normal(p: TruncatedNormal, q: TruncatedNormal) -> Array:
    """Both restricted to the same ``[low, high]``: with ``log Z`` the log-normalizers
    and ``m``, ``v`` p's mean and variance, ``log(s_q Z_q) - log(s_p Z_p) + (v + (m -
    loc_q)^2) / (2 s_q^2) - (v + (m - loc_p)^2) / (2 s_p^2)``."""
    if not (_same_bound(p.low, q.low) and _same_bound(p.high, q.high)):
        raise NoClosedFormError(
            "kl_divergence: TruncatedNormal against TruncatedNormal has a closed form "
            "only for the same low and high bounds. Estimate it by Monte Carlo, or "
            "give both the same bounds."
        )
    m, v = p.mean, p.variance
    log_zp, log_zq = p._frame()[3], q._frame()[3]
    return (
        jnp.log(q.scale)
        + log_zq
        - jnp.log(p.scale)
        - log_zp
        + (v + jnp.square(m - q.loc)) / (2 * jnp.square(q.scale))
        - (v + jnp.square(m - p.loc)) / (2 * jnp.square(p.scale))
    )


def _kl_beta(p: Beta, q: Beta) -> Array:
    a1, b1, a2, b2 = (
        p.concentration1,
        p.concentration0,
        q.concentration1,
        q.concentration0,
    )
    return (
        log_beta(a2, b2)
        - log_beta(a1, b1)
        + (a1 - a2) * special.digamma(a1)
        + (b1 - b2) * special.digamma(b1)
        + (a2 - a1 + b2 - b1) * special.digamma(a1 + b1)
    )


def _kl_dirichlet(p: Dirichlet, q: Dirichlet) -> Array:
    a, b = p.concentration, q.concentration
    a0 = jnp.sum(a, -1)
    return (
        special.gammaln(a0)
        - jnp.sum(special.gammaln(a), -1)
        - special.gammaln(jnp.sum(b, -1))
        + jnp.sum(special.gammaln(b), -1)
        + jnp.sum((a - b) * (special.digamma(a) - special.digamma(a0)[..., None]), -1)
    )


def _plogp_ratio(prob: Array, log_p: Array, log_q: Array) -> Array:
    """``prob * (log_p - log_q)``, 0 where ``prob`` is 0."""
    return jnp.where(prob > 0, prob * (log_p - log_q), 0.0)


def _kl_bernoulli(p: Bernoulli, q: Bernoulli) -> Array:
    lp, lq = p.logits, q.logits
    prob = p.probs
    # log sigmoid(l) = -softplus(-l); log(1 - sigmoid(l)) = -softplus(l)
    ones = _plogp_ratio(prob, -jnp.logaddexp(0.0, -lp), -jnp.logaddexp(0.0, -lq))
    zeros = _plogp_ratio(1 - prob, -jnp.logaddexp(0.0, lp), -jnp.logaddexp(0.0, lq))
    return ones + zeros


def _kl_categorical(p: Categorical, q: Categorical) -> Array:
    if p.probs.shape[-1] != q.probs.shape[-1]:
        raise ShapeError(
            f"kl_divergence: {type(p).__name__} with {p.probs.shape[-1]} categories "
            f"against one with {q.probs.shape[-1]}. Give both the same categories."
        )
    return jnp.sum(_plogp_ratio(p.probs, p.logits, q.logits), -1)


def _gaussian(d: Distribution) -> tuple[Array, Array]:
    """Mean and lower Cholesky factor of the covariance."""
    return d.loc, d.scale_tril


def _kl_gaussian(p: Distribution, q: Distribution) -> Array:
    """KL between multivariate normals (full or low-rank covariance)."""
    mu_p, l_p = _gaussian(p)
    mu_q, l_q = _gaussian(q)
    k = mu_p.shape[-1]
    if mu_q.shape[-1] != k:
        raise ShapeError(
            f"kl_divergence: event sizes differ ({k} and {mu_q.shape[-1]}). Give both "
            "distributions the same event size."
        )
    batch = jnp.broadcast_shapes(
        mu_p.shape[:-1], mu_q.shape[:-1], l_p.shape[:-2], l_q.shape[:-2]
    )
    l_p = jnp.broadcast_to(l_p, batch + (k, k))
    l_q = jnp.broadcast_to(l_q, batch + (k, k))
    diff = jnp.broadcast_to(mu_p - mu_q, batch + (k,))
    m = solve_triangular(l_q, l_p, lower=True)
    z = solve_triangular(l_q, diff[..., None], lower=True)[..., 0]
    log_det_q = jnp.sum(jnp.log(jnp.diagonal(l_q, axis1=-2, axis2=-1)), -1)
    log_det_p = jnp.sum(jnp.log(jnp.diagonal(l_p, axis1=-2, axis2=-1)), -1)
    trace = jnp.sum(jnp.square(m), (-2, -1))
    return 0.5 * (trace + jnp.sum(jnp.square(z), -1) - k) + log_det_q - log_det_p


def _kl_delta(p: Delta, q: Distribution) -> Array:
    if tuple(p.event_shape) != tuple(q.event_shape):
        raise ShapeError(
            f"kl_divergence: Delta with event_shape {tuple(p.event_shape)} against "
            f"{type(q).__name__} with event_shape {tuple(q.event_shape)}. Give the Delta "
            "the same event_dim."
        )
    return p.log_density - q.log_prob(p.v)


_Rule = Callable[[Distribution, Distribution], Array]
_GAUSSIANS = (MultivariateNormal, LowRankMultivariateNormal)

_KL_TABLE: types.MappingProxyType[tuple[type, type], _Rule] = types.MappingProxyType(
    {
        (Normal, Normal): _kl_normal,
        (Exponential, Exponential): _kl_exponential,
        (Gamma, Gamma): _kl_gamma,
        (InverseGamma, InverseGamma): _kl_gamma,
        (Laplace, Laplace): _kl_laplace,
        (Gumbel, Gumbel): _kl_gumbel,
        (TruncatedNormal, TruncatedNormal): _kl_truncated_normal,
        (Beta, Beta): _kl_beta,
        (Dirichlet, Dirichlet): _kl_dirichlet,
        (Bernoulli, Bernoulli): _kl_bernoulli,
        (Categorical, Categorical): _kl_categorical,
        (OneHotCategorical, OneHotCategorical): _kl_categorical,
        **{(a, b): _kl_gaussian for a in _GAUSSIANS for b in _GAUSSIANS},
        (Delta, Distribution): _kl_delta,
    }
)


def _lookup(p: Distribution, q: Distribution) -> _Rule | None:
    best, best_rank = None, None
    for i, tp in enumerate(type(p).__mro__):
        for j, tq in enumerate(type(q).__mro__):
            rule = _KL_TABLE.get((tp, tq))
            if rule is not None and (best_rank is None or (i + j, i) < best_rank):
                best, best_rank = rule, (i + j, i)
    return best


# ---------------------------------------------------------------------------
# wrappers, then the table


def _mask_of(d: Distribution) -> Array | bool:
    return d._mask


def kl_divergence(p: Distribution, q: Distribution) -> Array:
    r"""``KL(p || q) = E_p[log p(x) - log q(x)]`` in closed form.

    Args:
        p: the distribution the expectation is taken under.
        q: the other distribution, with the same event shape; batch shapes
            broadcast.

    Returns:
        Array of shape ``broadcast(p.batch_shape, q.batch_shape)``.

    Raises:
        NoClosedFormError: no closed form is known for this pair (estimate it by
            Monte Carlo instead).
        ShapeError: the event shapes differ.

    Example:
        >>> from jsvi.distributions import Normal
        >>> round(float(kl_divergence(Normal(0.0, 1.0), Normal(1.0, 2.0))), 4)
        0.4431
    """
    if isinstance(p, MaskedDistribution) or isinstance(q, MaskedDistribution):
        base_p = p.base_dist if isinstance(p, MaskedDistribution) else p
        base_q = q.base_dist if isinstance(q, MaskedDistribution) else q
        kl = kl_divergence(base_p, base_q)
        for d in (p, q):
            if isinstance(d, MaskedDistribution):
                kl = jnp.where(_mask_of(d), kl, 0.0)
        return kl
    if isinstance(p, ExpandedDistribution) or isinstance(q, ExpandedDistribution):
        base_p = p.base_dist if isinstance(p, ExpandedDistribution) else p
        base_q = q.base_dist if isinstance(q, ExpandedDistribution) else q
        kl = kl_divergence(base_p, base_q)
        shape = jnp.broadcast_shapes(tuple(p.batch_shape), tuple(q.batch_shape))
        return jnp.broadcast_to(kl, jnp.broadcast_shapes(jnp.shape(kl), shape))
    if isinstance(p, NonReparameterized) or isinstance(q, NonReparameterized):
        base_p = p.base_dist if isinstance(p, NonReparameterized) else p
        base_q = q.base_dist if isinstance(q, NonReparameterized) else q
        return kl_divergence(base_p, base_q)
    if tuple(p.event_shape) != tuple(q.event_shape):
        raise ShapeError(
            f"kl_divergence: {type(p).__name__} has event_shape {tuple(p.event_shape)} "
            f"but {type(q).__name__} has {tuple(q.event_shape)}. KL compares "
            "distributions over the same space; make the event shapes agree."
        )
    if isinstance(p, Independent) and isinstance(q, Independent):
        n = p.reinterpreted_batch_ndims
        if q.reinterpreted_batch_ndims == n:
            return sum_rightmost(kl_divergence(p.base_dist, q.base_dist), n)
    rule = _lookup(p, q)
    if rule is None:
        raise NoClosedFormError(
            f"kl_divergence: no closed form for KL({type(p).__name__} || "
            f"{type(q).__name__}). Estimate it by Monte Carlo (mean of "
            "p.log_prob(x) - q.log_prob(x) over draws x ~ p)."
        )
    return rule(p, q)
