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

from jsvi._typing import Array
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import sum_rightmost
from jsvi.distributions.continuous import (
    Beta,
    Delta,
    Exponential,
    Gamma,
    Normal,
    log_beta,
)
from jsvi.distributions.discrete import Bernoulli, Categorical, OneHotCategorical
from jsvi.distributions.multivariate import (
    Dirichlet,
    LowRankMultivariateNormal,
    MultivariateNormal,
)
from jsvi.distributions.wrappers import (
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
    NonReparameterized,
)
from jsvi.errors import ArgumentError, ShapeError

__all__ = ["NoClosedFormError", "kl_divergence"]


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


def _kl_gamma(p: Gamma, q: Gamma) -> Array:
    a1, r1, a2, r2 = p.concentration, p.rate, q.concentration, q.rate
    return (
        (a1 - a2) * special.digamma(a1)
        - special.gammaln(a1)
        + special.gammaln(a2)
        + a2 * (jnp.log(r1) - jnp.log(r2))
        + a1 * (r2 - r1) / r1
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
