"""The estimator base class ``ELBO`` and the pieces every estimator shares:
per-site ELBO terms, score-function surrogates, particle averaging.

May import: ``jsvi.core``, ``jsvi.infer.params``, ``jsvi.infer.traces``,
``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, Params, PRNGKey, PyTree
from jsvi.core.handlers import as_key, replay, seed, substitute, trace
from jsvi.core.runtime import Message
from jsvi.core.trace import Site, Trace, site_log_prob
from jsvi.errors import ArgumentError, JsviWarning, SiteError
from jsvi.infer.params import ParamFn, constrained_param_fn
from jsvi.infer.traces import get_traces, user_stacklevel

__all__ = [
    "ELBO",
    "ElboTerms",
    "elbo_terms",
    "is_reparameterized",
    "score_log_prob",
    "score_term",
    "value_preserving",
]

# ---------------------------------------------------------------------------
# the estimator base


@dataclasses.dataclass(frozen=True)
class ELBO:
    """Configuration shared by every ELBO estimator.

    Args:
        num_particles: number of independent draws averaged per estimate.
        vectorize_particles: draw all particles in one ``vmap`` (fast) or one
            after another with ``lax.map`` (low memory). Both give the same
            estimate for the same key.
    """

    num_particles: int = 1
    vectorize_particles: bool = True

    def __post_init__(self) -> None:
        name = type(self).__name__
        n = self.num_particles
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ArgumentError(f"{name}: num_particles must be an int >= 1, got {n!r}.")
        if not isinstance(self.vectorize_particles, bool):
            raise ArgumentError(
                f"{name}: vectorize_particles must be True or False, got "
                f"{self.vectorize_particles!r}."
            )

    # -- hooks for subclasses ----------------------------------------------------
    def init_state(
        self,
        rng_key: PRNGKey,
        param_fn: ParamFn,
        model: ModelFn,
        guide: ModelFn,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> PyTree:
        """The estimator's own state (baselines, ...); ``()`` when it has none."""
        del rng_key, param_fn, model, guide, args, kwargs
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
        """One particle: ``(surrogate, elbo, state_stats)``.

        ``surrogate`` has the ELBO's value and the gradient estimator's gradient.
        """
        raise NotImplementedError

    def check_traces(self, model_tr: Trace, guide_tr: Trace) -> None:
        """Estimator-specific structural checks of one (unenumerated) run.

        Called by ``svi_init`` and ``jsvi.validate`` before compiling. The default
        rejects model sites marked for enumeration that the guide does not sample
        (only ``TraceEnum_ELBO`` sums them out; any other estimator would draw them
        from the prior and count their log-density as if observed) and warns about
        baseline options, which only ``TraceGraph_ELBO`` uses.
        """
        self._check_not_enumerated(model_tr, guide_tr)
        self._warn_unused_baselines(guide_tr)

    def _check_not_enumerated(self, model_tr: Trace, guide_tr: Trace) -> None:
        name_of = type(self).__name__
        latent = guide_tr.latent_sites()
        for name, site in model_tr.latent_sites().items():
            if name not in latent and site.infer.get("enumerate") in (
                "parallel",
                "sequential",
            ):
                raise SiteError(
                    f"model site {name!r}: marked for enumeration and absent from the "
                    f"guide, but {name_of} does not enumerate: it would draw the site "
                    "from the prior and score it as if observed. Use "
                    "TraceEnum_ELBO to sum it out, or sample it in the guide."
                )

    def _warn_unused_baselines(self, guide_tr: Trace) -> None:
        name_of = type(self).__name__
        for name, site in guide_tr.latent_sites().items():
            if site.infer.get("baseline"):
                warnings.warn(
                    f"guide site {name!r}: has baseline options, which {name_of} "
                    "ignores (only TraceGraph_ELBO uses baselines). Use "
                    "TraceGraph_ELBO, or drop infer['baseline'].",
                    JsviWarning,
                    stacklevel=user_stacklevel(),
                )

    def update_state(self, elbo_state: PyTree, stats: PyTree) -> PyTree:
        """Fold the particles' ``state_stats`` (leading particle axis) into state."""
        del stats
        return elbo_state

    # -- shared driver -------------------------------------------------------------
    def _particles(self, rng_key: PRNGKey, fn: Callable[[PRNGKey], Any]) -> Any:
        if self.num_particles == 1:
            return jax.tree.map(lambda x: x[None], fn(rng_key))
        keys = jax.random.split(rng_key, self.num_particles)
        if self.vectorize_particles:
            return jax.vmap(fn)(keys)
        return jax.lax.map(fn, keys)

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
        """``(surrogate_loss, (loss, new_elbo_state))`` averaged over particles.

        Differentiate ``surrogate_loss``; report ``loss`` (= -ELBO estimate).
        """

        def one(key: PRNGKey) -> tuple[Array, Array, PyTree]:
            return self.particle(key, param_fn, model, guide, elbo_state, args, kwargs)

        surrogates, elbos, stats = self._particles(rng_key, one)
        new_state = self.update_state(elbo_state, stats)
        return -jnp.mean(surrogates), (-jnp.mean(elbos), new_state)

    def loss(
        self,
        rng_key: PRNGKey,
        params: Params,
        model: ModelFn,
        guide: ModelFn,
        *args: Any,
        **kwargs: Any,
    ) -> Array:
        """-ELBO estimate at constrained ``params`` (a dict name -> value).

        Differentiable: its gradient is the estimator's gradient.
        """
        key = as_key(rng_key, f"{type(self).__name__}.loss")
        param_fn = constrained_param_fn(params)
        state = self.init_state(key, param_fn, model, guide, args, kwargs)
        surrogate, (loss, _) = self.loss_and_aux(
            key, param_fn, model, guide, state, args, kwargs
        )
        return jax.lax.stop_gradient(loss) + (surrogate - jax.lax.stop_gradient(surrogate))


# ---------------------------------------------------------------------------
# pieces of the ELBO shared by the estimators


def score_term(log_q: Array, cost: Array) -> Array:
    """A zero-valued term whose gradient is ``cost * grad(log_q)``.

    ``cost`` is treated as a constant (``stop_gradient``).
    """
    weighted = log_q * jax.lax.stop_gradient(cost)
    return weighted - jax.lax.stop_gradient(weighted)


def value_preserving(surrogate: Array, value: Array) -> Array:
    """``value`` in value, ``surrogate``'s gradient."""
    return jax.lax.stop_gradient(value) + (surrogate - jax.lax.stop_gradient(surrogate))


def is_reparameterized(site: Site) -> bool:
    """Whether a guide site's value carries a pathwise gradient."""
    return bool(getattr(site.fn, "has_rsample", False))


def score_log_prob(site: Site) -> Array:
    """``log q`` of a draw as the score function sees it: masked, not scaled.

    Plate subsampling and ``scale`` weight the objective; the value was still drawn
    from the unscaled density, whose gradient is the score.
    """
    log_prob = site.fn.log_prob(site.value)
    if site.mask is not None:
        log_prob = jnp.where(site.mask, log_prob, 0.0)
    return log_prob


class ElboTerms(NamedTuple):
    """Per-site log-densities of one particle.

    Attributes:
        model_tr, guide_tr: the traces.
        log_p: model sample site -> scaled, masked log p (shape batch_shape).
        log_q: guide latent site -> scaled, masked log q.
        log_q_path: like ``log_q``, but with guide params held fixed for
            reparameterized sites when sticking the landing.
        score: non-reparameterized guide site -> unscaled, masked log q.
        non_reparam: names of non-reparameterized guide sites, in order.
    """

    model_tr: Trace
    guide_tr: Trace
    log_p: dict[str, Array]
    log_q: dict[str, Array]
    log_q_path: dict[str, Array]
    score: dict[str, Array]
    non_reparam: tuple[str, ...]

    def elbo(self) -> Array:
        return _total(self.log_p) - _total(self.log_q)

    def pathwise(self) -> Array:
        """The ELBO with the terms that carry pathwise gradients."""
        return _total(self.log_p) - _total(self.log_q_path)

    def pathwise_unscored(self) -> Array:
        """``pathwise()``, but ``log q`` of non-reparameterized sites is constant.

        At a fixed draw, ``grad_phi log q(z)`` of such a site has mean zero, so an
        unweighted average of it only adds noise (its score-function term carries
        the gradient); Pyro leaves it out too. Not for weighted averages
        (``RenyiELBO``), where the weights make its mean non-zero.
        """
        fixed = {
            n: jax.lax.stop_gradient(v) if n in self.score else v
            for n, v in self.log_q_path.items()
        }
        return _total(self.log_p) - _total(fixed)


def _total(log_probs: Mapping[str, Array]) -> Array:
    return sum((jnp.sum(v) for v in log_probs.values()), jnp.zeros(()))


def elbo_terms(
    rng_key: PRNGKey,
    model: ModelFn,
    guide: ModelFn,
    param_fn: ParamFn,
    args: tuple,
    kwargs: Mapping[str, Any],
    stick_the_landing: bool = False,
    draw: bool = True,
) -> ElboTerms:
    """Run guide and model once and collect the per-site terms of the ELBO.

    With ``stick_the_landing``, reparameterized guide sites are also scored with the
    guide's parameters held fixed (``log_q_path``): that drops the zero-mean term
    ``grad_phi log q(z; phi)`` while keeping the dependence through ``z``, so the
    gradient's variance vanishes when q is the exact posterior.
    """
    model_tr, guide_tr = get_traces(rng_key, model, guide, param_fn, args, kwargs, draw)
    latent = guide_tr.latent_sites()
    log_p = model_tr.log_probs()
    # each guide density once: the score is log q before its scale (masked alike)
    masked = {n: score_log_prob(s) for n, s in latent.items()}
    log_q = {
        n: masked[n] if s.scale is None else masked[n] * s.scale for n, s in latent.items()
    }
    non_reparam = tuple(n for n, s in latent.items() if not is_reparameterized(s))
    score = {n: masked[n] for n in non_reparam}
    log_q_path = dict(log_q)
    if stick_the_landing:
        for name, site in latent.items():
            if site.infer.get("log_q_from_draw"):
                raise SiteError(
                    f"guide site {name!r}: its log-density is computed with its draw "
                    "(a flow guide), so stick_the_landing cannot hold the guide's "
                    "params fixed inside it. Use stick_the_landing=False with this "
                    "guide, or RenyiELBO's DReG gradient for a reparameterized guide."
                )

        def frozen(msg: Message) -> Any:
            value = param_fn(msg)
            return None if value is None else jax.lax.stop_gradient(value)

        frozen_tr = trace(
            replay(seed(substitute(guide, substitute_fn=frozen), rng_key), guide_tr)
        ).get_trace(*args, **kwargs)
        for name, site in latent.items():
            if is_reparameterized(site):
                log_q_path[name] = site_log_prob(frozen_tr[name])
    return ElboTerms(model_tr, guide_tr, log_p, log_q, log_q_path, score, non_reparam)
