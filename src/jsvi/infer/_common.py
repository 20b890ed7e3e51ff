"""What every ELBO estimator shares: running guide then model, parameter
transforms, model/guide checks and particle averaging.

May import: ``jsvi.core``, ``jsvi.distributions``, ``jsvi.transforms``,
``jsvi.constraints``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, Params, PRNGKey, PyTree, shape_of
from jsvi.core.handlers import as_key, replay, seed, substitute, trace
from jsvi.core.runtime import Handler, Message
from jsvi.core.trace import Site, Trace, site_log_prob
from jsvi.distributions import ExpandedDistribution
from jsvi.errors import (
    ArgumentError,
    JsviWarning,
    ModelGuideMismatchError,
    ShapeError,
    SiteError,
)
from jsvi.transforms import biject_to

__all__ = [
    "ELBO",
    "ElboTerms",
    "check_model_guide",
    "elbo_terms",
    "feasible_draws",
    "is_reparameterized",
    "score_log_prob",
    "score_term",
    "value_preserving",
    "check_signatures",
    "constrain",
    "constrained_param_fn",
    "get_traces",
    "unconstrain",
    "unconstrained_param_fn",
    "user_stacklevel",
    "validation_flags",
]

ParamFn = Callable[[Message], Any]

# The guide's sites use seed's per-site keys of ``key``; the model's stream is
# fold_in(key, MODEL_KEY_OFFSET), a hash of it, so the two never meet.
MODEL_KEY_OFFSET = 2**31 - 1


# ---------------------------------------------------------------------------
# parameters: constrained <-> unconstrained


def constrain(value_u: PyTree, constraint: Any) -> PyTree:
    """Map an unconstrained param (array or pytree of arrays) into ``constraint``."""
    transform = biject_to(constraint)
    return jax.tree.map(transform, value_u)


def unconstrain(value: PyTree, constraint: Any) -> PyTree:
    """Map a constrained param value to unconstrained space."""
    transform = biject_to(constraint)
    return jax.tree.map(lambda v: transform.inv(jnp.asarray(v, dtype=_float_dtype(v))), value)


def _float_dtype(v: Any) -> Any:
    dtype = jnp.result_type(v)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def unconstrained_param_fn(params_u: Mapping[str, PyTree]) -> ParamFn:
    """A ``substitute_fn`` that reads params from unconstrained values."""

    def fn(msg: Message) -> Any:
        if msg.kind == "param" and msg.name in params_u:
            return constrain(params_u[msg.name], msg.constraint)
        return None

    return fn


def constrained_param_fn(params: Mapping[str, PyTree]) -> ParamFn:
    """A ``substitute_fn`` that reads params from constrained values."""

    def fn(msg: Message) -> Any:
        if msg.kind == "param":
            return params.get(msg.name)
        return None

    return fn


# ---------------------------------------------------------------------------
# running guide and model


class feasible_draws(Handler):
    """Give latent sample sites a fixed point of their support instead of a draw,
    and plates the first ``subsample_size`` indices.

    ``svi_init`` runs model and guide this way: parameters, shapes and value checks
    need no random draws, and the compiled init program then contains no samplers
    (some, such as Gamma's, take a second to compile).
    """

    def process(self, msg: Message) -> None:
        if msg.value is not None:
            return
        if msg.kind == "sample":
            shape = tuple(msg.fn.batch_shape) + tuple(msg.fn.event_shape)
            support = getattr(msg.fn, "support", None)
            base = msg.fn
            while isinstance(base, ExpandedDistribution):  # a plate expanded it
                base = base.base_dist
            point = getattr(base, "v", None)  # a Delta: its own point
            if point is not None:
                msg.value = jnp.broadcast_to(point, shape)
            elif support is not None:
                discrete = getattr(msg.fn, "is_discrete", False)
                dtype = jnp.asarray(0).dtype if discrete else jnp.asarray(0.0).dtype
                msg.value = support.feasible_like(jnp.zeros(shape, dtype))
        elif msg.kind == "plate":
            _, subsample_size = msg.args
            msg.value = jnp.arange(subsample_size)


def get_traces(
    rng_key: PRNGKey,
    model: ModelFn,
    guide: ModelFn,
    param_fn: ParamFn,
    args: tuple,
    kwargs: Mapping[str, Any],
    draw: bool = True,
) -> tuple[Trace, Trace]:
    """Run the guide, then the model replayed against it; return both traces.

    The guide runs under ``seed(rng_key)``; the model under ``seed`` with
    ``fold_in(rng_key, MODEL_KEY_OFFSET)`` (for its own plates and keys, a stream
    distinct from the guide's per-site keys of ``rng_key``), with the guide's
    latent values and plate indices replayed. The model's key is computed only if
    the model draws anything. With ``draw=False`` latent sites take a fixed point
    of their support (see ``feasible_draws``).
    """
    if not draw:
        guide, model = feasible_draws(guide), feasible_draws(model)
    guide_tr = trace(seed(substitute(guide, substitute_fn=param_fn), rng_key)).get_trace(
        *args, **kwargs
    )
    model_key = jax.random.fold_in(rng_key, MODEL_KEY_OFFSET)
    model_tr = trace(
        _replayed_shapes(
            replay(seed(substitute(model, substitute_fn=param_fn), model_key), guide_tr),
            guide_tr,
        )
    ).get_trace(*args, **kwargs)
    check_model_guide(model_tr, guide_tr)
    return model_tr, guide_tr


class _replayed_shapes(Handler):
    """Compare each replayed guide value with the model site's shape as it arrives.

    ``check_model_guide`` compares them too, but only once the model has finished;
    a wrong shape usually breaks a later site first, with a message about that
    site. Checking here names the site where the guide and model disagree.
    Guide-enumerated values carry extra dims and are not compared.
    """

    def __init__(self, fn: ModelFn, guide_tr: Trace):
        super().__init__(fn)
        self.guide_tr = guide_tr

    def process(self, msg: Message) -> None:
        if msg.kind != "sample" or msg.is_observed:
            return
        g_site = self.guide_tr.get(msg.name)
        if g_site is None or g_site.kind != "sample" or g_site.is_observed:
            return
        if g_site.infer.get("enumerate") == "parallel":
            return
        _check_value_shape(msg.name, msg.fn, g_site.value)


def check_model_guide(
    model_tr: Trace, guide_tr: Trace, check_shapes: bool = True
) -> None:
    """Raise when the model and the guide disagree on their latent sites.

    ``check_shapes=False`` skips comparing value shapes (guide-side enumeration
    adds dims to the values the model sees).
    """
    guide_latent = guide_tr.latent_sites()
    for name in guide_tr.observed_sites():
        raise SiteError(
            f"guide site {name!r}: has obs. A guide describes latent variables only. "
            f"Remove obs=... from the guide's {name!r}; observe it in the model."
        )
    for name, site in model_tr.latent_sites().items():
        if name not in guide_latent and site.infer.get("enumerate") != "parallel":
            raise ModelGuideMismatchError(
                f"model site {name!r}: latent in the model but missing from the guide. "
                f"Add jsvi.sample({name!r}, ...) to the guide, observe it in the model "
                "(obs=...), or mark it for enumeration."
            )
    model_samples = model_tr.sample_sites()
    for name, g_site in guide_latent.items():
        m_site = model_samples.get(name)
        if m_site is None:
            raise ModelGuideMismatchError(
                f"guide site {name!r}: sampled in the guide but not in the model. "
                f"Remove it from the guide or add jsvi.sample({name!r}, ...) to the "
                f"model. Model sites: {sorted(model_samples)}."
            )
        if m_site.is_observed:
            raise ModelGuideMismatchError(
                f"guide site {name!r}: the model observes this site, so the guide must "
                "not sample it. Remove it from the guide."
            )
        if check_shapes:
            _check_value_shape(name, m_site.fn, g_site.value)


def _check_value_shape(name: str, fn: Any, value: Any) -> None:
    expected = tuple(fn.batch_shape) + tuple(fn.event_shape)
    got = shape_of(value)
    if got != expected:
        raise ShapeError(
            f"sample site {name!r}: the guide draws values of shape {got}, but "
            f"the model's distribution has batch_shape {tuple(fn.batch_shape)} "
            f"and event_shape {tuple(fn.event_shape)} (value shape {expected}). "
            "Make the two agree: use the same plates in model and guide, and "
            ".expand(...)/.to_event(n) where a site holds several values."
        )


def check_signatures(model: ModelFn, guide: ModelFn, where: str = "SVI") -> None:
    """Raise when model and guide visibly take different arguments."""
    try:
        m_sig, g_sig = inspect.signature(model), inspect.signature(guide)
    except (TypeError, ValueError):
        return
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if any(p.kind in variadic for p in (*m_sig.parameters.values(), *g_sig.parameters.values())):
        return
    m_names = [p.name for p in m_sig.parameters.values()]
    g_names = [p.name for p in g_sig.parameters.values()]
    if m_names != g_names:
        raise ModelGuideMismatchError(
            f"{where}: model takes ({', '.join(m_names)}) but guide takes "
            f"({', '.join(g_names)}). Both are called with the same arguments; give "
            "them the same signature (add unused arguments and `del` them)."
        )


def validation_flags(traces: tuple[Trace, ...]) -> dict[str, Array]:
    """Boolean arrays, all-True iff every validated distribution is valid.

    Keys read ``"<site>: <argument>"``; the observed value's support check is
    ``"<site>: value"``.
    """
    flags: dict[str, Array] = {}
    for tr in traces:
        for name, site in tr.sample_sites().items():
            fn = site.fn
            check = getattr(fn, "validation_flags", None)
            if check is None or not getattr(fn, "_validate_args", False):
                continue
            value = site.value if site.is_observed else None
            for arg, ok in check(value).items():
                flags[f"sample site {name!r}: {arg}"] = jnp.all(ok)
    return flags


def user_stacklevel() -> int:
    """``stacklevel`` of the first frame outside jsvi and jax (for warnings)."""
    import jsvi  # noqa: PLC0415

    skip = tuple(
        os.path.dirname(m.__file__) + os.sep for m in (jsvi, jax) if m.__file__
    )
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


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
            if name not in latent and site.infer.get("enumerate") == "parallel":
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
