"""``TraceGraph_ELBO``: score-function gradients with Rao-Blackwellized downstream
costs and baselines.

May import: ``jsvi.infer.elbo``, ``jsvi.infer.baselines``, ``jsvi.infer.costs``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, PRNGKey, PyTree
from jsvi.core.runtime import Message
from jsvi.core.trace import Trace
from jsvi.errors import JsviWarning, SiteError
from jsvi.infer.baselines import BaselineSpec, DecayingAverage, parse_baseline
from jsvi.infer.costs import (
    downstream_costs,
    graph_costs,
    site_dependencies,
    sum_to_plates,
)
from jsvi.infer.elbo import (
    ELBO,
    ElboTerms,
    elbo_terms,
    is_reparameterized,
    score_term,
    value_preserving,
)

__all__ = ["TraceGraph_ELBO", "downstream_costs", "sum_to_plates"]


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
    :math:`(c_i - b_i)\nabla_\phi \log q_\phi(z_i)`; the zero-mean direct
    gradient of :math:`-\log q_\phi(z_i)` at the fixed draw is left out, as in
    ``Trace_ELBO``. The cost :math:`c_i` keeps
    only the terms of :math:`\log p - \log q` that read :math:`z_i` or one of its
    descendants in the guide (``costs.graph_costs``): each guide site whose
    distribution's arguments were computed from :math:`z_i` is a child, and a
    term is kept when its log-density is computed from :math:`z_i` or any
    descendant. The graph is found by data flow: guide and model are traced once
    more with every latent value an abstract input, and the jaxpr says which
    inputs each site's log-density is computed from (``costs.site_dependencies``;
    traced only, so the compiled step does no extra work). By the local Markov
    property, :math:`z_i` is independent of its non-descendants given its parents,
    so every dropped term has zero expected product with the score: the estimator
    stays unbiased and its variance falls. Each element of a vectorized plate
    :math:`z_i` sits in keeps its own cost, unless a descendant lies outside that
    plate (then one element's draw can reach another's terms, and the plate is
    summed). Where the abstract run fails (a Python ``if`` on a draw, say), the
    costs fall back on execution order (``costs.downstream_costs``): guide sites run
    later, model sites run after those, never other iterations of a sequential
    plate. :math:`b_i` is the site's baseline (see ``jsvi.infer.baselines``);
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
        costs = self._costs(terms, averaged, rng_key, model, guide, param_fn, args, kwargs)
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
        surrogate = self._pathwise(terms)
        baseline_loss = jnp.zeros(())
        costs = self._costs(
            terms, terms.non_reparam, rng_key, model, guide, param_fn, args, kwargs
        )
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

    def _costs(
        self,
        terms: ElboTerms,
        sites: Sequence[str],
        rng_key: PRNGKey,
        model: ModelFn,
        guide: ModelFn,
        param_fn: Callable[[Message], Any],
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> dict[str, Array]:
        """Costs over true descendants; execution order where they are unseen."""
        if not sites:
            return {}
        deps = site_dependencies(terms, rng_key, model, guide, param_fn, args, kwargs)
        if deps is None:
            return downstream_costs(terms, sites)
        return graph_costs(terms, sites, deps)

    def _pathwise(self, terms: ElboTerms) -> Array:
        """The differentiated part besides the score-function terms."""
        return terms.pathwise_unscored()

    def update_state(self, elbo_state: PyTree, stats: PyTree) -> PyTree:
        """Move each running average toward the particle-mean cost."""
        new_state = dict(elbo_state)
        for name, stat in stats.items():
            decay = DecayingAverage(stat["beta"][0])
            new_state[name] = decay.update(elbo_state[name], jnp.mean(stat["cost"], 0))
        return new_state
