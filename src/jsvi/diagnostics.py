"""Diagnostics of gradient estimators at a given SVI state.

May import: ``jsvi.svi`` and everything below it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._args import ArgSpec, merge_args, split_args
from jsvi._typing import PyTree
from jsvi.errors import ArgumentError
from jsvi.infer import unconstrained_param_fn
from jsvi.state import SVIState
from jsvi.step import step_key
from jsvi.svi import SVI

__all__ = ["gradient_variance"]


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
