"""Diagnostics at a given SVI state: the gradient estimator's mean and variance,
and the Pareto-smoothed importance-sampling k-hat of the fitted guide.

May import: ``jsvi.svi`` and everything below it (+ numpy).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._args import ArgSpec, merge_args, split_args
from jsvi._typing import PyTree
from jsvi.errors import ArgumentError
from jsvi.infer import unconstrained_param_fn
from jsvi.infer.elbo import elbo_terms
from jsvi.state import SVIState
from jsvi.step import step_key
from jsvi.svi import SVI

__all__ = ["gradient_variance", "pareto_khat", "psis_diagnostic"]


def _draws(
    svi: SVI, spec: ArgSpec, state: SVIState, dynamic: list, *, num_samples: int
) -> PyTree:
    args, kwargs = merge_args(spec, dynamic)

    def grad_one(key):
        def objective(params_u):
            surrogate, _ = svi.loss.loss_and_aux(
                key,
                unconstrained_param_fn(params_u),
                svi.model,
                svi.guide,
                state.elbo_state,
                args,
                kwargs,
            )
            return surrogate

        return jax.grad(objective)(state.params)

    keys = jax.random.split(step_key(state), num_samples)
    grads = jax.lax.map(grad_one, keys, batch_size=min(num_samples, 256))
    mean = jax.tree.map(lambda g: jnp.mean(g, 0), grads)
    variance = jax.tree.map(lambda g: jnp.var(g, 0, ddof=1), grads)
    return {"mean": mean, "variance": variance}


def gradient_variance(
    svi: SVI, state: SVIState, *args: Any, num_samples: int = 1000, **kwargs: Any
) -> dict[str, PyTree]:
    """Mean and variance of the gradient estimator at ``state``.

    Draws ``num_samples`` independent gradients of the loss (``-ELBO`` surrogate,
    averaged over the estimator's ``num_particles``) with respect to the
    unconstrained parameters, exactly as ``svi_update`` would compute them (same
    estimator, baselines and ``elbo_state``), and summarises them per parameter.
    Use it to see what a baseline, Rao-Blackwellization or more particles buy.

    Args:
        svi: the configuration.
        state: where to evaluate (its params and estimator state; its key seeds the
            draws). The state is not changed.
        *args, **kwargs: model and guide arguments.
        num_samples: number of gradient draws (>= 2).

    Returns:
        ``{"mean": pytree, "variance": pytree}``, each shaped like
        ``state.params``; ``variance`` uses ``ddof=1``, so the standard error of
        ``mean`` is ``sqrt(variance / num_samples)``.

    Example:
        >>> import jax, optax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     jsvi.sample("x", dist.Normal(jsvi.sample("z", dist.Normal(0., 1.)), 1.), obs=1.)
        >>> def guide():
        ...     jsvi.sample("z", dist.Normal(jsvi.param("m", 0.0), 1.0))
        >>> svi = jsvi.SVI(model, guide, optax.sgd(0.1), jsvi.Trace_ELBO())
        >>> out = jsvi.diagnostics.gradient_variance(svi, jsvi.svi_init(svi, 0), num_samples=100)
        >>> sorted(out), out["mean"]["m"].shape
        (['mean', 'variance'], ())
    """
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, int)
        or num_samples < 2
    ):
        raise ArgumentError(
            f"gradient_variance: num_samples must be an int >= 2, got {num_samples!r}."
        )
    dynamic, spec = split_args(args, kwargs, "gradient_variance")
    # A program of its own per call: a diagnostic keeps nothing compiled (or the
    # model) alive after it returns.
    draws = functools.partial(_draws, svi, spec, num_samples=num_samples)
    return jax.jit(draws)(state, dynamic)


# ---------------------------------------------------------------------------
# PSIS k-hat


def _log_weights(
    svi: SVI, spec: ArgSpec, state: SVIState, dynamic: list, *, num_particles: int
) -> jax.Array:
    args, kwargs = merge_args(spec, dynamic)
    param_fn = unconstrained_param_fn(state.params)

    def one(key):
        terms = elbo_terms(key, svi.model, svi.guide, param_fn, args, kwargs)
        return terms.elbo()

    keys = jax.random.split(step_key(state), num_particles)
    return jax.lax.map(one, keys, batch_size=min(num_particles, 256))



def psis_diagnostic(
    svi: SVI, state: SVIState, *args: Any, num_particles: int = 1000, **kwargs: Any
) -> float:
    """The Pareto-smoothed importance-sampling k-hat of the fitted guide.

    Draws ``num_particles`` joint samples from the guide at ``state``'s params,
    forms the log importance weights ``log p(x, z) - log q(z)`` and fits a
    generalized Pareto distribution to the largest ``M = ceil(min(S / 5,
    3 sqrt(S)))`` weights (``S = num_particles``). Its shape ``k`` says how heavy
    the weights' right tail is: below 0.5 the weights have a finite variance and
    the guide is a good importance sampler for the posterior; between 0.5 and 0.7
    estimates converge slowly; above 0.7 the guide misses a part of the posterior
    (typically too narrow) and its summaries should not be trusted. A guide that
    equals the posterior gives constant weights and ``-inf``.

    Args:
        svi: the configuration (its model and guide; the estimator is unused).
        state: where to evaluate (its params; its key seeds the draws).
        *args, **kwargs: model and guide arguments.
        num_particles: number of guide draws (>= 10); k-hat from a few thousand
            draws still scatters by about 0.1, so compare it with the thresholds
            loosely.

    Returns:
        k-hat as a Python float (``inf`` when the tail holds fewer than 5 distinct
        weights).

    References:
        Vehtari, Simpson, Gelman, Yao, Gabry (2024), Pareto smoothed importance
        sampling, JMLR 25(72).
        Yao, Vehtari, Simpson, Gelman (2018), Yes, but did it work?: evaluating
        variational inference.
        Zhang, Stephens (2009), A new and efficient estimation method for the
        generalized Pareto distribution, Technometrics 51(3).

    Example:
        >>> import jax, optax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     jsvi.sample("x", dist.Normal(jsvi.sample("z", dist.Normal(0., 1.)), 1.), obs=1.)
        >>> def guide():
        ...     jsvi.sample("z", dist.Normal(jsvi.param("m", 0.4), 0.8))
        >>> svi = jsvi.SVI(model, guide, optax.sgd(0.1), jsvi.Trace_ELBO())
        >>> khat = jsvi.diagnostics.psis_diagnostic(svi, jsvi.svi_init(svi, 0))
        >>> khat < 0.5
        True
    """
    n = num_particles
    if isinstance(n, bool) or not isinstance(n, int) or n < 10:
        raise ArgumentError(
            f"psis_diagnostic: num_particles must be an int >= 10, got {n!r}. "
            "k-hat is fitted to the largest weights; use a few thousand draws."
        )
    dynamic, spec = split_args(args, kwargs, "psis_diagnostic")
    weights = functools.partial(_log_weights, svi, spec, num_particles=n)
    log_w = jax.jit(weights)(state, dynamic)
    return pareto_khat(np.asarray(log_w))


def pareto_khat(log_weights: Any) -> float:
    """k-hat of the right tail of importance weights given on the log scale.

    The tail is the ``M = ceil(min(S / 5, 3 sqrt(S)))`` largest of ``S`` weights;
    their excesses over the next-largest weight are fitted with a generalized
    Pareto distribution (see ``_gpd_shape``). Computed in float64 with numpy.

    Args:
        log_weights: shape ``(S,)``, unnormalized log importance weights.

    Returns:
        The estimated shape ``k`` (``-inf`` for constant weights, ``inf`` when
        fewer than 5 weights lie above the threshold).

    Example:
        >>> import numpy as np
        >>> lw = np.random.default_rng(0).standard_normal(2000)  # lognormal weights
        >>> 0.0 < pareto_khat(lw) < 0.7
        True
    """
    log_w = np.asarray(log_weights, dtype=np.float64).ravel()
    if not np.all(np.isfinite(log_w)):
        raise ArgumentError(
            "psis_diagnostic: some log-weights are not finite (a guide draw outside "
            "the model's support, or a NaN). Check the model and guide with "
            "jsvi.validate(...) first."
        )
    size = log_w.size
    tail_len = math.ceil(min(size / 5.0, 3.0 * math.sqrt(size)))
    shifted = np.sort(log_w - log_w.max())
    if shifted[0] == 0.0:
        return -math.inf
    threshold = max(shifted[size - tail_len - 1], math.log(np.finfo(np.float64).tiny))
    tail = shifted[shifted > threshold]
    if tail.size <= 4:
        return math.inf
    return _gpd_shape(np.exp(tail) - math.exp(threshold))


def _gpd_shape(excess: np.ndarray) -> float:
    """The generalized Pareto shape of sorted positive ``excess`` values.

    Zhang and Stephens' empirical-Bayes estimate: the profile likelihood of
    ``b = -k / sigma`` over a grid of ``30 + floor(sqrt(n))`` points (spread by the
    sample's first quartile and maximum) gives posterior weights; at the weighted
    mean of ``b``, ``k = mean(log(1 - b x))``. As in PSIS, ``k`` is then shrunk
    towards 0.5 by a weak prior worth 10 observations.
    """
    n = excess.size
    grid_size = 30 + int(math.sqrt(n))
    j = np.arange(1, grid_size + 1, dtype=np.float64)
    quartile = excess[int(n / 4 + 0.5) - 1]
    b = 1.0 / excess[-1] + (1.0 - np.sqrt(grid_size / (j - 0.5))) / (3.0 * quartile)
    k = np.mean(np.log1p(-b[:, None] * excess[None, :]), axis=1)
    profile = n * (np.log(-b / k) - k - 1.0)
    post = np.exp(profile - profile.max())
    post /= post.sum()
    b_hat = float(np.sum(post * b))
    k_hat = float(np.mean(np.log1p(-b_hat * excess)))
    prior_strength = 10.0
    return (n * k_hat + prior_strength * 0.5) / (n + prior_strength)
