"""``Trace_ELBO``: the plain Monte Carlo ELBO with pathwise and score-function parts.

May import: ``jsvi.infer._common`` (and through it ``core``, ``distributions``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, PRNGKey, PyTree
from jsvi.core.handlers import replay, seed, substitute, trace
from jsvi.core.runtime import Message
from jsvi.core.trace import Site, Trace, site_log_prob
from jsvi.infer._common import ELBO, get_traces

__all__ = ["Trace_ELBO", "guide_log_probs", "score_term"]


def score_term(log_q: Array, cost: Array) -> Array:
    """A zero-valued term whose gradient is ``cost * grad(log_q)``.

    ``cost`` is treated as a constant (``stop_gradient``).
    """
    weighted = log_q * jax.lax.stop_gradient(cost)
    return weighted - jax.lax.stop_gradient(weighted)


def is_reparameterized(site: Site) -> bool:
    return bool(getattr(site.fn, "has_rsample", False))


def guide_log_probs(
    guide_tr: Trace,
    stick_the_landing: bool,
    rng_key: PRNGKey,
    guide: ModelFn,
    param_fn: Callable[[Message], Any],
    args: tuple,
    kwargs: Mapping[str, Any],
) -> dict[str, Array]:
    """Per-site guide log-densities; with sticking-the-landing, reparameterized
    sites are scored with the guide's parameters held fixed.

    Holding the parameters fixed inside ``log q`` drops the score term
    ``grad_phi log q(z; phi)``, whose expectation is zero, while keeping the
    pathwise dependence through ``z``. Its variance vanishes when q is the exact
    posterior.
    """
    log_qs = {n: site_log_prob(s) for n, s in guide_tr.latent_sites().items()}
    if not stick_the_landing:
        return log_qs

    def frozen(msg: Message) -> Any:
        value = param_fn(msg)
        return None if value is None else jax.lax.stop_gradient(value)

    frozen_tr = trace(
        replay(seed(substitute(guide, substitute_fn=frozen), rng_key), guide_tr)
    ).get_trace(*args, **kwargs)
    for name, site in guide_tr.latent_sites().items():
        if is_reparameterized(site):
            log_qs[name] = site_log_prob(frozen_tr[name])
    return log_qs


@dataclasses.dataclass(frozen=True)
class Trace_ELBO(ELBO):
    r"""The ELBO estimated from whole-trace samples of the guide.

    For each particle, draw :math:`z \sim q_\phi` by running the guide, replay the
    model against it, and form

    .. math::
        \widehat{\rm ELBO} = \log p_\theta(x, z) - \log q_\phi(z).

    Reparameterized guide sites carry pathwise gradients through :math:`z`. Each
    non-reparameterized guide site :math:`z_i` adds the score-function term

    .. math::
        \log q_\phi(z_i)\,\overline{\widehat{\rm ELBO}}
        - \overline{\log q_\phi(z_i)\,\widehat{\rm ELBO}}

    where the bar is ``stop_gradient``: the term is zero in value and its gradient is
    :math:`\widehat{\rm ELBO}\,\nabla_\phi \log q_\phi(z_i)`. The surrogate's value
    therefore equals the ELBO estimate and its gradient is unbiased. The cost is the
    whole ELBO (no Rao-Blackwellization; see ``TraceGraph_ELBO``). Model-side
    ``param`` sites get gradients too, so an empty guide gives maximum likelihood.
    The loss is ``-ELBO`` averaged over particles.

    Args:
        num_particles: draws averaged per estimate.
        vectorize_particles: ``vmap`` over particles (True) or ``lax.map`` (False).
        stick_the_landing: hold guide parameters fixed inside ``log q`` of
            reparameterized sites (Roeder et al., 2017), which removes a zero-mean
            term from the gradient.

    References:
        Ranganath, Gerrish, Blei (2014), Black Box Variational Inference.
        Roeder, Wu, Duvenaud (2017), Sticking the Landing.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     jsvi.sample("x", dist.Normal(jsvi.sample("z", dist.Normal(0., 1.)), 1.), obs=1.)
        >>> def guide():
        ...     jsvi.sample("z", dist.Normal(jsvi.param("m", 0.5), 0.7))
        >>> loss = jsvi.Trace_ELBO(num_particles=4).loss(jax.random.key(0), {"m": 0.5}, model, guide)
        >>> loss.shape
        ()
    """

    stick_the_landing: bool = False

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
        del elbo_state
        model_tr, guide_tr = get_traces(rng_key, model, guide, param_fn, args, kwargs)
        log_p = model_tr.log_prob_sum()
        log_qs = guide_log_probs(
            guide_tr, self.stick_the_landing, rng_key, guide, param_fn, args, kwargs
        )
        if self.stick_the_landing:
            log_q = guide_tr.log_prob_sum()
        else:
            log_q = sum((jnp.sum(v) for v in log_qs.values()), jnp.zeros(()))
        elbo = log_p - log_q
        surrogate = log_p - sum((jnp.sum(v) for v in log_qs.values()), jnp.zeros(()))
        for name, site in guide_tr.latent_sites().items():
            if not is_reparameterized(site):
                surrogate = surrogate + score_term(jnp.sum(log_qs[name]), elbo)
        # Same value as the ELBO; the gradient is the estimator's.
        surrogate = jax.lax.stop_gradient(elbo) + (
            surrogate - jax.lax.stop_gradient(surrogate)
        )
        return surrogate, elbo, ()
