"""``Trace_ELBO``: the plain Monte Carlo ELBO with pathwise and score-function parts.

May import: ``jsvi.infer.elbo``, ``jsvi.infer.costs`` (and through them ``core``,
``distributions``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, PRNGKey, PyTree
from jsvi.core.runtime import Message
from jsvi.infer.costs import plate_costs
from jsvi.infer.elbo import ELBO, ElboTerms, elbo_terms, score_term, value_preserving

__all__ = ["Trace_ELBO"]


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
        \sum_{\rm elements} \log q_\phi(z_i)\,\overline{c_i}
        - \overline{\log q_\phi(z_i)\,c_i}

    where the bar is ``stop_gradient``: the term is zero in value and its gradient is
    :math:`c_i\,\nabla_\phi \log q_\phi(z_i)`. Here :math:`\log q_\phi(z_i)` is the
    density the value was drawn from: masked, but not multiplied by plate/``scale``
    factors (those weight the objective, not the sampling). The surrogate's value
    therefore equals the ELBO estimate. The direct gradient of
    :math:`-\log q_\phi(z_i)` at the fixed draw has mean zero and is left out
    (``stop_gradient``; ``ElboTerms.pathwise_unscored``), as in Pyro.

    The cost :math:`c_i` is the particle's :math:`\log p - \log q`, plate-aware
    (``costs.plate_costs``): inside a vectorized plate, each element of
    :math:`z_i` is weighted by the terms of its own element of that plate plus
    every term outside the plate, never by other elements' terms. A plate
    declares its elements conditionally independent, so another element's terms
    have zero expected product with this element's score, and dropping them keeps
    the gradient unbiased while its variance no longer grows with the plate's
    size. A plate is summed over instead when a guide site outside it runs after
    :math:`z_i` (it could carry one element's draw into the others' terms). Each
    particle's cost is its own. There is no further Rao-Blackwellization (see
    ``TraceGraph_ELBO``). Model-side ``param`` sites get gradients too, so an empty
    guide gives maximum likelihood.
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
        terms = elbo_terms(
            rng_key, model, guide, param_fn, args, kwargs, self.stick_the_landing
        )
        elbo = terms.elbo()
        surrogate = self._pathwise(terms)
        costs = self._score_costs(terms)
        for name in terms.non_reparam:
            surrogate = surrogate + jnp.sum(score_term(terms.score[name], costs[name]))
        return value_preserving(surrogate, elbo), elbo, ()

    def _pathwise(self, terms: ElboTerms) -> Array:
        """The differentiated part besides the score-function terms."""
        return terms.pathwise_unscored()

    def _score_costs(self, terms: ElboTerms) -> dict[str, Array]:
        """Each non-reparameterized guide site's cost (``costs.plate_costs``)."""
        return plate_costs(terms, terms.non_reparam)
