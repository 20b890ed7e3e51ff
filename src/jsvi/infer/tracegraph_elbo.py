"""``TraceGraph_ELBO``: score-function gradients with Rao-Blackwellized downstream
costs and baselines.

May import: ``jsvi.infer.elbo``, ``jsvi.infer.baselines``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, PRNGKey, PyTree
from jsvi.core.runtime import CondIndepStackFrame, Message
from jsvi.core.trace import Site, Trace
from jsvi.errors import JsviWarning, SiteError
from jsvi.infer.baselines import BaselineSpec, DecayingAverage, parse_baseline
from jsvi.infer.elbo import (
    ELBO,
    ElboTerms,
    elbo_terms,
    is_reparameterized,
    score_term,
    value_preserving,
)

__all__ = ["TraceGraph_ELBO", "downstream_costs", "sum_to_plates"]


def _independent(a: Site, b: Site) -> bool:
    """True when ``a`` and ``b`` sit in different iterations of a sequential plate."""
    for fa in a.cond_indep_stack:
        if fa.dim is not None:
            continue
        for fb in b.cond_indep_stack:
            if fb.dim is None and fb.name == fa.name and fb.counter != fa.counter:
                return True
    return False


def _vectorized(site: Site) -> tuple[CondIndepStackFrame, ...]:
    return tuple(f for f in site.cond_indep_stack if f.vectorized)


def sum_to_plates(
    cost: Array,
    cost_frames: Sequence[CondIndepStackFrame],
    target_frames: Sequence[CondIndepStackFrame],
) -> Array:
    """Sum a cost term over every dim except the vectorized plates it shares with
    the target site.

    Args:
        cost: a log-density term, shape = its site's batch shape.
        cost_frames: the term's vectorized plates.
        target_frames: the target site's vectorized plates.

    Returns:
        An array of rank ``max(-dim)`` over ``target_frames`` (0 if none), with the
        shared plates' sizes at their dims and 1 elsewhere; it broadcasts against
        the target's batch shape, so each plate element gets its own cost.
    """
    target_names = {f.name for f in target_frames}
    keep = {f.dim for f in cost_frames if f.name in target_names}
    rank = max((-f.dim for f in target_frames), default=0)
    cost = jnp.asarray(cost)
    sum_axes = tuple(axis for axis in range(cost.ndim) if axis - cost.ndim not in keep)
    cost = jnp.sum(cost, axis=sum_axes, keepdims=True)
    if cost.ndim > rank:
        cost = cost.reshape(cost.shape[cost.ndim - rank :])
    return cost.reshape((1,) * (rank - cost.ndim) + cost.shape)


def downstream_costs(terms: ElboTerms, sites: Sequence[str]) -> dict[str, Array]:
    """The Rao-Blackwellized downstream cost of each guide site in ``sites``.

    For guide site ``z_i`` the cost holds ``log p(z_j) - log q(z_j)`` for every guide
    site ``z_j`` run at or after ``z_i`` (guide order), plus ``log p`` of every
    other model site run after one of those in the model; sites in other
    iterations of a sequential plate are excluded, and vectorized plates keep one
    cost per element (``sum_to_plates``). Costs carry plate/``scale`` factors.
    """
    guide_sites = list(terms.guide_tr.latent_sites().items())
    model_sites = list(terms.model_tr.sample_sites().items())
    model_pos = {name: k for k, (name, _) in enumerate(model_sites)}
    costs = {}
    for name in sites:
        target = terms.guide_tr[name]
        frames = _vectorized(target)
        start = next(k for k, (n, _) in enumerate(guide_sites) if n == name)
        downstream = [
            n
            for n, s in guide_sites[start:]
            if n == name or not _independent(target, s)
        ]
        total = jnp.zeros(())
        for n in downstream:
            g_site, m_site = terms.guide_tr[n], terms.model_tr[n]
            total = total + sum_to_plates(terms.log_p[n], _vectorized(m_site), frames)
            total = total - sum_to_plates(terms.log_q[n], _vectorized(g_site), frames)
        first = min(model_pos[n] for n in downstream)
        chosen = set(downstream)
        for n, m_site in model_sites[first + 1 :]:
            if n in chosen:
                continue
            parents = [
                terms.model_tr[d] for d in downstream if model_pos[d] < model_pos[n]
            ]
            if any(not _independent(p, m_site) for p in parents):
                total = total + sum_to_plates(
                    terms.log_p[n], _vectorized(m_site), frames
                )
        costs[name] = total
    return costs


def _check_baseline_shape(name: str, baseline: Array, cost: Array) -> None:
    try:
        joint = jnp.broadcast_shapes(jnp.shape(baseline), jnp.shape(cost))
    except ValueError:
        joint = None
    if joint != jnp.shape(cost):
        raise SiteError(
            f"guide site {name!r}: the baseline has shape {jnp.shape(baseline)}, but "
            f"the site's downstream cost has shape {jnp.shape(cost)} (one entry per "
            "element of the plates it sits in, 1 elsewhere). Return a baseline of "
            "that shape (or a scalar)."
        )


def _check_baselines(terms: ElboTerms) -> dict[str, BaselineSpec]:
    return _baseline_specs(terms.model_tr, terms.guide_tr, terms.non_reparam)


def _baseline_specs(
    model_tr: Trace, guide_tr: Trace, non_reparam: Sequence[str]
) -> dict[str, BaselineSpec]:
    for name, site in model_tr.sample_sites().items():
        if site.infer.get("baseline"):
            raise SiteError(
                f"model site {name!r}: has infer['baseline']. Baselines belong to "
                "non-reparameterized guide sites; move the option to the guide's "
                f"{name!r}."
            )
    specs = {}
    for name, site in guide_tr.latent_sites().items():
        spec = parse_baseline(name, site.infer.get("baseline"))
        if spec is None:
            continue
        if name not in non_reparam:
            raise SiteError(
                f"guide site {name!r}: has a baseline but is reparameterized, so its "
                "gradient has no score-function term to reduce. Remove the baseline, "
                "or wrap the distribution in dist.NonReparameterized(...) to use the "
                "score-function estimator."
            )
        specs[name] = spec
    return specs


@dataclasses.dataclass(frozen=True)
class TraceGraph_ELBO(ELBO):
    r"""The ELBO with Rao-Blackwellized score-function gradients and baselines.

    Like ``Trace_ELBO``, reparameterized guide sites get pathwise gradients. Each
    non-reparameterized guide site :math:`z_i` gets the surrogate term

    .. math::
        \sum_{\rm elements} \log q_\phi(z_i)\,
        \overline{\big(c_i - b_i\big)}
        \;-\; \overline{\log q_\phi(z_i)\,(c_i - b_i)},

    zero in value (bars are ``stop_gradient``), whose gradient is
    :math:`(c_i - b_i)\nabla_\phi \log q_\phi(z_i)`. The cost :math:`c_i` keeps
    only the terms of :math:`\log p - \log q` downstream of :math:`z_i`
    (``downstream_costs``): guide sites run later, model sites run after those, never
    other iterations of a sequential plate, and one cost per element of each
    vectorized plate :math:`z_i` sits in. Upstream terms have zero expected product
    with the score, so dropping them keeps the estimator unbiased and lowers its
    variance. :math:`b_i` is the site's baseline (see ``jsvi.infer.baselines``);
    learned baselines add :math:`\sum (\overline{c_i} - b_i)^2` to the loss that is
    differentiated, which only their own weights see. The reported loss is the
    plain ``-ELBO``.

    Decaying-average baselines live in ``SVIState.elbo_state`` (a dict site name ->
    running average, one per plate element) and move toward the particle-mean cost
    after each step.

    Args:
        num_particles: draws averaged per estimate.
        vectorize_particles: ``vmap`` over particles (True) or ``lax.map`` (False).
        stick_the_landing: hold guide parameters fixed inside ``log q`` of
            reparameterized sites.

    References:
        Schulman, Heess, Weber, Abbeel (2015), Gradient Estimation Using Stochastic
        Computation Graphs. Pyro's "SVI Part III: ELBO Gradient Estimators".

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     z = jsvi.sample("z", dist.Bernoulli(0.3))
        ...     jsvi.sample("x", dist.Normal(2.0 * z, 1.0), obs=1.5)
        >>> def guide():
        ...     p = jsvi.param("p", 0.5, jsvi.constraints.unit_interval)
        ...     jsvi.sample("z", dist.Bernoulli(p),
        ...                 infer={"baseline": {"use_decaying_avg_baseline": True}})
        >>> jsvi.TraceGraph_ELBO().loss(jax.random.key(0), {"p": 0.5}, model, guide).shape
        ()
    """

    stick_the_landing: bool = False

    def check_traces(self, model_tr: Trace, guide_tr: Trace) -> None:
        """As ``ELBO.check_traces``, and every baseline option is well formed and
        sits on a non-reparameterized guide site."""
        self._check_not_enumerated(model_tr, guide_tr)
        non_reparam = [
            n for n, s in guide_tr.latent_sites().items() if not is_reparameterized(s)
        ]
        _baseline_specs(model_tr, guide_tr, non_reparam)

    def init_state(
        self,
        rng_key: PRNGKey,
        param_fn: Callable[[Message], Any],
        model: ModelFn,
        guide: ModelFn,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> PyTree:
        """Zero running averages, shaped like each averaged site's cost."""
        terms = elbo_terms(rng_key, model, guide, param_fn, args, kwargs, draw=False)
        specs = _check_baselines(terms)
        averaged = [n for n, s in specs.items() if s.decaying is not None]
        if not averaged:
            return {}
        costs = downstream_costs(terms, averaged)
        return {n: specs[n].decaying.init(costs[n]) for n in averaged}

    def particle(
        self,
        rng_key: PRNGKey,
        param_fn: Callable[[Message], Any],
        model: ModelFn,
        guide: ModelFn,
        elbo_state: PyTree,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> tuple[Array, Array, PyTree]:
        terms = elbo_terms(
            rng_key, model, guide, param_fn, args, kwargs, self.stick_the_landing
        )
        specs = _check_baselines(terms)
        elbo = terms.elbo()
        surrogate = terms.pathwise()
        baseline_loss = jnp.zeros(())
        costs = downstream_costs(terms, terms.non_reparam)
        stats = {}
        for name in terms.non_reparam:
            cost, spec = costs[name], specs.get(name)
            baseline = jnp.zeros(())
            if spec is not None:
                if spec.decaying is not None:
                    if name not in elbo_state:
                        raise SiteError(
                            f"guide site {name!r}: uses a decaying-average baseline "
                            "but the state has no average for it. Initialise the "
                            "state with jsvi.svi_init for this model and guide."
                        )
                    baseline = baseline + elbo_state[name]
                    stats[name] = {
                        "cost": cost,
                        "beta": jnp.asarray(spec.decaying.beta, cost.dtype),
                    }
                if spec.trained:
                    learned = spec.learned_part()
                    _check_baseline_shape(name, learned, cost)
                    baseline = baseline + learned
                    baseline_loss = baseline_loss + jnp.sum(
                        (jax.lax.stop_gradient(cost) - baseline) ** 2
                    )
            surrogate = surrogate + jnp.sum(
                score_term(terms.score[name], cost - baseline)
            )
        missing = set(elbo_state) - set(stats)
        if missing:
            warnings.warn(
                f"TraceGraph_ELBO: the state holds decaying-average baselines for "
                f"{sorted(missing)}, which this run did not use.",
                JsviWarning,
                stacklevel=2,
            )
        return value_preserving(surrogate, elbo) - baseline_loss, elbo, stats

    def update_state(self, elbo_state: PyTree, stats: PyTree) -> PyTree:
        """Move each running average toward the particle-mean cost."""
        new_state = dict(elbo_state)
        for name, stat in stats.items():
            decay = DecayingAverage(stat["beta"][0])
            new_state[name] = decay.update(elbo_state[name], jnp.mean(stat["cost"], 0))
        return new_state
