"""``RenyiELBO``: the Rényi-α bound, the importance-weighted bound (IWAE) at
``alpha=0``, with an optional doubly reparameterized (DReG) gradient.

May import: ``jsvi.infer.elbo``, ``jsvi.infer.traces`` (and through them ``core``,
``distributions``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, PRNGKey, PyTree
from jsvi.core.handlers import replay, seed, substitute, trace
from jsvi.core.runtime import Message
from jsvi.core.trace import Trace
from jsvi.errors import ArgumentError, SiteError
from jsvi.infer.elbo import (
    ELBO,
    ElboTerms,
    elbo_terms,
    is_reparameterized,
    score_term,
    value_preserving,
)
from jsvi.infer.traces import MODEL_KEY_OFFSET

__all__ = ["RenyiELBO"]

ParamFn = Callable[[Message], Any]


@dataclasses.dataclass(frozen=True)
class RenyiELBO(ELBO):
    r"""The Rényi-α variational bound, estimated from ``num_particles`` joint draws.

    With :math:`K` draws :math:`z_k \sim q_\phi` and log-weights
    :math:`\ell_k = \log p_\theta(x, z_k) - \log q_\phi(z_k)`,

    .. math::
        \hat{\mathcal L}_\alpha = \frac{1}{1-\alpha}
        \log \frac1K \sum_{k=1}^K e^{(1-\alpha)\ell_k}.

    At ``alpha=0`` this is the importance-weighted bound (IWAE):
    :math:`E[\hat{\mathcal L}_0] \le \log p(x)`, increasing in :math:`K` and
    tending to :math:`\log p(x)`. For :math:`0 < \alpha < 1` it lies between
    the IWAE bound and the ELBO (reached as :math:`\alpha \to 1`; use
    ``Trace_ELBO`` there). The loss is :math:`-\hat{\mathcal L}_\alpha`; note that the
    particles are combined inside the log, so ``num_particles`` changes the
    objective, not only its variance.

    **Gradient.** Reparameterized guide sites carry pathwise gradients:
    :math:`\nabla\hat{\mathcal L}_\alpha = \sum_k \tilde w_k \nabla \ell_k` with
    :math:`\tilde w = \mathrm{softmax}((1-\alpha)\ell)`. Each non-reparameterized
    guide site adds :math:`\sum_k \log q(z_k)\,\overline{\hat{\mathcal L}_\alpha}`
    minus its own value (bar = ``stop_gradient``), the score-function term of the
    whole bound, so the surrogate keeps the bound's value and its gradient is
    unbiased.

    **DReG** (``doubly_reparameterized=True``, every guide site reparameterized).
    The guide's direct score :math:`\sum_k \tilde w_k \partial_\phi \log q(z_k)`
    has the same expectation as the pathwise term
    :math:`\sum_k \partial \tilde w_k/\partial\ell_k \cdot \partial_z \ell_k
    \, \partial_\phi z_k` (the reparameterization identity applied to
    :math:`E_q[f(z)\partial_\phi\log q(z)]`). Substituting it, with
    :math:`\partial\tilde w_k/\partial\ell_k = (1-\alpha)\tilde w_k(1-\tilde w_k)`,
    gives the guide gradient

    .. math::
        \sum_k \overline{\tilde w_k\,(\alpha + (1-\alpha)\tilde w_k)}\;
        \partial_z \ell_k\big|_{\bar\phi}\,\partial_\phi z_k,

    which is :math:`\tilde w_k^2` at ``alpha=0`` (Tucker et al., 2018). Here
    :math:`\log q` is evaluated with the guide's parameters held fixed (as in
    sticking the landing). Model parameters keep the plain gradient
    :math:`\sum_k \tilde w_k \nabla_\theta \log p(x, \bar z_k)`; when the model
    has parameters this costs one more model run with the draws held fixed.

    Args:
        alpha: the Rényi order, ``alpha != 1``; ``0`` gives IWAE.
        num_particles: ``K``, the draws inside the log (>= 1).
        vectorize_particles: ``vmap`` over particles (True) or ``lax.map`` (False).
        doubly_reparameterized: use the DReG gradient. Every guide site must be
            reparameterized; ``SiteError`` names the one that is not.

    Raises:
        ArgumentError: ``alpha == 1`` or not a finite number.
        SiteError: DReG with a non-reparameterized guide site.

    References:
        Burda, Grosse, Salakhutdinov (2016), Importance Weighted Autoencoders.
        Li, Turner (2016), Rényi Divergence Variational Inference.
        Tucker, Lawson, Gu, Maddison (2019), Doubly Reparameterized Gradient
        Estimators for Monte Carlo Objectives.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     jsvi.sample("x", dist.Normal(jsvi.sample("z", dist.Normal(0., 1.)), 1.), obs=1.)
        >>> def guide():
        ...     jsvi.sample("z", dist.Normal(jsvi.param("m", 0.5), 0.7))
        >>> iwae = jsvi.RenyiELBO(num_particles=8, doubly_reparameterized=True)
        >>> iwae.loss(jax.random.key(0), {"m": 0.5}, model, guide).shape
        ()
    """

    alpha: float = 0.0
    num_particles: int = 2
    vectorize_particles: bool = True
    doubly_reparameterized: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
            raise ArgumentError(f"RenyiELBO: alpha must be a finite number, got {a!r}.")
        if a == 1:
            raise ArgumentError(
                "RenyiELBO: alpha=1 is the plain ELBO, where the Rényi form divides by "
                "zero. Use jsvi.Trace_ELBO(num_particles=...) instead, or an alpha "
                "below 1 (0 is the importance-weighted bound)."
            )
        if not isinstance(self.doubly_reparameterized, bool):
            raise ArgumentError(
                "RenyiELBO: doubly_reparameterized must be True or False, got "
                f"{self.doubly_reparameterized!r}."
            )

    def check_traces(self, model_tr: Trace, guide_tr: Trace) -> None:
        """As ``ELBO.check_traces``; with DReG, every guide site is reparameterized."""
        super().check_traces(model_tr, guide_tr)
        self._check_dreg(guide_tr)

    def _check_dreg(self, guide_tr: Trace) -> None:
        if not self.doubly_reparameterized:
            return
        for name, site in guide_tr.latent_sites().items():
            if site.infer.get("log_q_from_draw"):
                raise SiteError(
                    f"guide site {name!r}: its log-density is computed from the draw "
                    "(a flow autoguide), not from the value, so DReG cannot hold the "
                    "guide's parameters fixed in it. Use "
                    "RenyiELBO(doubly_reparameterized=False) with this guide."
                )
            if not is_reparameterized(site):
                raise SiteError(
                    f"guide site {name!r}: RenyiELBO(doubly_reparameterized=True) "
                    f"needs a reparameterized guide, but {type(site.fn).__name__} at "
                    f"{name!r} has no pathwise sample (has_rsample=False). Use "
                    "doubly_reparameterized=False (score-function gradient) or a "
                    f"reparameterized distribution for {name!r}."
                )

    def _particle(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        guide: ModelFn,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> tuple[Array, Array, Array]:
        """``(log_w, score, theta)`` of one draw.

        ``log_w`` carries the pathwise gradient (with DReG: the guide's
        parameters fixed inside ``log q``); ``score`` is the summed
        ``log q`` of non-reparameterized sites; ``theta`` is ``log p`` with the
        draws held fixed (DReG with model parameters only; else zero).
        """
        dreg = self.doubly_reparameterized
        terms = elbo_terms(rng_key, model, guide, param_fn, args, kwargs, dreg)
        if dreg:
            self._check_dreg(terms.guide_tr)
        score = sum(
            (jnp.sum(terms.score[n]) for n in terms.non_reparam), jnp.zeros(())
        )
        theta = jnp.zeros(())
        if dreg and terms.model_tr.param_sites():
            theta = _log_p_at_fixed_draws(rng_key, model, param_fn, terms, args, kwargs)
        return terms.pathwise(), score, theta

    def loss_and_aux(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        guide: ModelFn,
        elbo_state: PyTree,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> tuple[Array, tuple[Array, PyTree]]:
        """``(surrogate_loss, (loss, elbo_state))``: ``loss`` is ``-L_alpha``."""

        def one(key: PRNGKey) -> tuple[Array, Array, Array]:
            return self._particle(key, param_fn, model, guide, args, kwargs)

        log_w, score, theta = self._particles(rng_key, one)
        one_minus = 1.0 - self.alpha
        bound = (jax.nn.logsumexp(one_minus * log_w) - math.log(self.num_particles))
        bound = bound / one_minus
        if self.doubly_reparameterized:
            weights = jax.lax.stop_gradient(jax.nn.softmax(one_minus * log_w))
            coef = weights * (self.alpha + one_minus * weights)
            surrogate = jnp.sum(coef * log_w) + jnp.sum((weights - coef) * theta)
            surrogate = value_preserving(surrogate, bound)
        else:
            surrogate = bound + score_term(jnp.sum(score), bound)
        return -surrogate, (-jax.lax.stop_gradient(bound), elbo_state)


def _log_p_at_fixed_draws(
    rng_key: PRNGKey,
    model: ModelFn,
    param_fn: ParamFn,
    terms: ElboTerms,
    args: tuple,
    kwargs: Mapping[str, Any],
) -> Array:
    """``log p(x, z)`` again, with the draws ``z`` (and plate indices) held fixed:
    only the model's parameters carry gradients."""
    fixed = {
        n: {"type": s.kind, "value": jax.lax.stop_gradient(s.value)}
        for n, s in terms.model_tr.items()
        if s.kind in ("sample", "plate") and not s.is_observed
    }
    model_key = jax.random.fold_in(rng_key, MODEL_KEY_OFFSET)
    tr = trace(
        replay(seed(substitute(model, substitute_fn=param_fn), model_key), trace=fixed)
    ).get_trace(*args, **kwargs)
    return tr.log_prob_sum()
