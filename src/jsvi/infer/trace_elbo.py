"""``Trace_ELBO``: the plain Monte Carlo ELBO with pathwise and score-function parts.

May import: ``jsvi.infer.elbo`` (and through it ``core``, ``distributions``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, PRNGKey, PyTree
from jsvi.core.runtime import Message
from jsvi.infer.elbo import ELBO, elbo_terms, score_term, value_preserving

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
        \log q_\phi(z_i)\,\overline{\widehat{\rm ELBO}}
        - \overline{\log q_\phi(z_i)\,\widehat{\rm ELBO}}

    where the bar is ``stop_gradient``: the term is zero in value and its gradient is
    :math:`\widehat{\rm ELBO}\,\nabla_\phi \log q_\phi(z_i)`. Here
    :math:`\log q_\phi(z_i)` is the density the value was drawn from: masked, but
    not multiplied by plate/``scale`` factors (those weight the objective, not the
    sampling). The surrogate's value
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
        terms = elbo_terms(
            rng_key, model, guide, param_fn, args, kwargs, self.stick_the_landing
        )
        elbo = terms.elbo()
        surrogate = terms.pathwise()
        for name in terms.non_reparam:
            surrogate = surrogate + score_term(jnp.sum(terms.score[name]), elbo)
        return value_preserving(surrogate, elbo), elbo, ()
