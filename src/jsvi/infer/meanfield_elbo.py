"""``TraceMeanField_ELBO``: the ELBO with analytic KL terms for mean-field guides.

Also holds the check that warns when a guide is not mean field (a guide site's
distribution depends on the value of another of its latent sites), done once at
trace time by data-flow analysis of the guide's jaxpr.

May import: ``jsvi.infer.elbo``, ``jsvi.distributions`` (``kl`` included),
``jsvi.core``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from jsvi._typing import Array, ModelFn, PRNGKey, PyTree
from jsvi.core.handlers import seed, substitute, trace
from jsvi.core.runtime import Message
from jsvi.core.trace import Site, site_log_prob
from jsvi.distributions.kl import NoClosedFormError, kl_divergence
from jsvi.errors import JsviWarning, SiteError
from jsvi.infer.elbo import (
    ELBO,
    is_reparameterized,
    score_log_prob,
    score_term,
    value_preserving,
)
from jsvi.infer.traces import feasible_draws, get_traces, user_stacklevel

__all__ = ["GuideDependencyWarning", "TraceMeanField_ELBO", "guide_dependencies"]

ParamFn = Callable[[Message], Any]


class GuideDependencyWarning(JsviWarning):
    """The guide is not mean field, which ``TraceMeanField_ELBO`` assumes."""


# ---------------------------------------------------------------------------
# is the guide mean field?


def _sub_jaxpr(eqn: Any) -> Any:
    for value in eqn.params.values():
        if isinstance(value, jcore.ClosedJaxpr):
            value = value.jaxpr
        if isinstance(value, jcore.Jaxpr) and len(value.invars) == len(eqn.invars):
            if len(value.outvars) == len(eqn.outvars):
                return value
    return None


def _flow(jaxpr: Any, inputs: Sequence[frozenset]) -> list[frozenset]:
    """Which inputs each output of ``jaxpr`` depends on (sub-jaxprs followed)."""
    env: dict[Any, frozenset] = dict(zip(jaxpr.invars, inputs))

    def read(v: Any) -> frozenset:
        return frozenset() if isinstance(v, jcore.Literal) else env.get(v, frozenset())

    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        sub = _sub_jaxpr(eqn)
        if sub is not None:
            outs = _flow(sub, ins)
        else:
            joint = frozenset().union(*ins)
            outs = [joint] * len(eqn.outvars)
        for v, d in zip(eqn.outvars, outs):
            env[v] = d
    return [read(v) for v in jaxpr.outvars]


def guide_dependencies(
    rng_key: PRNGKey,
    guide: ModelFn,
    param_fn: ParamFn,
    args: tuple,
    kwargs: Mapping[str, Any],
) -> list[tuple[str, str]]:
    """Pairs ``(site, upstream)``: the guide's distribution at ``site`` depends on
    the value of its latent site ``upstream``.

    The guide runs once with every latent value substituted (at a point of its
    support); the value-to-distribution data flow is read off the jaxpr, so only
    tracing is paid for.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> def guide():
        ...     a = jsvi.sample("a", dist.Normal(0.0, 1.0))
        ...     jsvi.sample("b", dist.Normal(a, 1.0))
        >>> guide_dependencies(jax.random.key(0), guide, lambda m: None, (), {})
        [('b', 'a')]
    """
    base = trace(
        seed(substitute(feasible_draws(guide), substitute_fn=param_fn), rng_key)
    ).get_trace(*args, **kwargs)
    names = list(base.latent_sites())
    if len(names) < 2:
        return []

    leaves_per_site: list[int] = []

    def run(values: list[Array]) -> list[list[Array]]:
        fixed = substitute(
            substitute(guide, substitute_fn=param_fn), data=dict(zip(names, values))
        )
        tr = trace(seed(fixed, rng_key)).get_trace(*args, **kwargs)
        leaves = [jax.tree.leaves(tr[n].fn) for n in names]
        leaves_per_site[:] = [len(x) for x in leaves]
        return leaves

    values = [jnp.asarray(base[n].value) for n in names]
    closed = jax.make_jaxpr(run)(values)
    inputs = [frozenset([i]) for i in range(len(names))]
    out_deps = _flow(closed.jaxpr, inputs)
    pairs, start = [], 0
    for i, count in enumerate(leaves_per_site):
        deps = frozenset().union(*out_deps[start : start + count])
        start += count
        pairs.extend((names[i], names[j]) for j in sorted(deps) if j != i)
    return pairs


# ---------------------------------------------------------------------------
# the estimator


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return False


def _analytic_kl(g_site: Site, m_site: Site) -> Array | None:
    """``sum(scale * mask * KL(q || p))`` for one site, or None without a closed
    form (or when guide and model weight the site differently)."""
    if not (_same(g_site.scale, m_site.scale) and _same(g_site.mask, m_site.mask)):
        return None
    try:
        kl = kl_divergence(g_site.fn, m_site.fn)
    except NoClosedFormError:
        return None
    if jnp.shape(kl) != tuple(m_site.fn.batch_shape):
        return None
    if g_site.mask is not None:
        kl = jnp.where(g_site.mask, kl, 0.0)
    if g_site.scale is not None:
        kl = kl * g_site.scale
    return jnp.sum(kl)


@dataclasses.dataclass(frozen=True)
class TraceMeanField_ELBO(ELBO):
    r"""The ELBO with closed-form KL divergences, for mean-field guides.

    For a guide that factorizes over its latent sites, :math:`q_\phi(z) =
    \prod_i q_\phi(z_i)`, the ELBO splits into

    .. math::
        {\rm ELBO} = \mathbb{E}_{q}\Big[\log p_\theta(x \mid z)\Big]
        - \sum_i \mathbb{E}_{q}\Big[{\rm KL}\big(q_\phi(z_i)\,\|\,
        p_\theta(z_i \mid {\rm pa}_i)\big)\Big].

    Each particle draws :math:`z \sim q_\phi` and, per latent site, uses
    ``kl_divergence(q_i, p_i)`` (with the site's plate/``scale`` factor and mask)
    where a closed form exists, and :math:`\log p - \log q` at the draw
    otherwise. Closed forms remove the sampling noise of those terms, so the
    gradient has the same expectation as ``Trace_ELBO``'s and usually a smaller
    variance. Reparameterized sites carry pathwise gradients; each
    non-reparameterized guide site adds ``Trace_ELBO``'s score-function term
    :math:`\log q_\phi(z_i)\,\overline{\widehat{\rm ELBO}} -
    \overline{\log q_\phi(z_i)\,\widehat{\rm ELBO}}` (bars are
    ``stop_gradient``). Model-side ``param`` sites get gradients as well.

    When a guide site's distribution depends on the value of another guide
    latent, the guide is not mean field and a ``GuideDependencyWarning`` is
    issued (once, when the state is initialised): the estimate may then be
    biased.

    Args:
        num_particles: draws averaged per estimate.
        vectorize_particles: ``vmap`` over particles (True) or ``lax.map`` (False).

    References:
        Kingma, Welling (2014), Auto-Encoding Variational Bayes (closed-form KL
        term). Pyro's ``TraceMeanField_ELBO``.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        ...     jsvi.sample("x", dist.Normal(z, 1.0), obs=1.0)
        >>> def guide():
        ...     jsvi.sample("z", dist.Normal(jsvi.param("m", 0.5), 0.7))
        >>> TraceMeanField_ELBO(num_particles=4).loss(
        ...     jax.random.key(0), {"m": 0.5}, model, guide).shape
        ()
    """

    def init_state(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        guide: ModelFn,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> PyTree:
        """No state; warns once if the guide is not mean field."""
        del model
        pairs = guide_dependencies(rng_key, guide, param_fn, args, kwargs)
        if pairs:
            listed = ", ".join(f"{a!r} on {b!r}" for a, b in pairs)
            warnings.warn(
                f"TraceMeanField_ELBO: the guide is not mean field: the distribution "
                f"of {listed}. The estimator assumes independent guide sites and may "
                "be biased; use Trace_ELBO or TraceGraph_ELBO for this guide.",
                GuideDependencyWarning,
                stacklevel=user_stacklevel(),
            )
        return ()

    def particle(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        guide: ModelFn,
        elbo_state: PyTree,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> tuple[Array, Array, PyTree]:
        del elbo_state
        model_tr, guide_tr = get_traces(rng_key, model, guide, param_fn, args, kwargs)
        latent = guide_tr.latent_sites()
        for name in model_tr.latent_sites():
            if name not in latent:
                raise SiteError(
                    f"model site {name!r}: marked for enumeration, which "
                    "TraceMeanField_ELBO does not do. Use TraceEnum_ELBO to sum it "
                    "out, or add it to the guide."
                )
        elbo = jnp.zeros(())
        for name, m_site in model_tr.sample_sites().items():
            if name in latent:
                continue
            elbo = elbo + jnp.sum(site_log_prob(m_site))
        for name, g_site in latent.items():
            m_site = model_tr[name]
            kl = _analytic_kl(g_site, m_site)
            if kl is None:
                elbo = (
                    elbo
                    + jnp.sum(site_log_prob(m_site))
                    - jnp.sum(site_log_prob(g_site))
                )
            else:
                elbo = elbo - kl
        surrogate = elbo
        for g_site in latent.values():
            if not is_reparameterized(g_site):
                surrogate = surrogate + score_term(
                    jnp.sum(score_log_prob(g_site)), elbo
                )
        return value_preserving(surrogate, elbo), elbo, ()
