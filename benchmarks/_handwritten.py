"""Pieces shared by the hand-written JAX baselines the benchmarks compare against
(not a benchmark itself): a Normal log-density, the mean-field logistic-regression
parameters, a minibatch index draw, and a jitted optax step around a loss
``(u, key, *data) -> loss``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


def norm_lp(x, loc, scale):
    """log N(x | loc, scale), elementwise."""
    return -0.5 * ((x - loc) / scale) ** 2 - jnp.log(scale) - 0.5 * jnp.log(2 * jnp.pi)


def logreg_params(D: int) -> dict:
    """Unconstrained mean-field guide parameters, as jsvi stores them."""
    return {
        "w_loc": jnp.zeros(D),
        "w_scale": jnp.log(0.1 * jnp.ones(D)),
        "b_loc": jnp.zeros(()),
        "b_scale": jnp.log(jnp.array(0.1)),
    }


def logreg_particle_loss(u, key, X, y, D, idx=None, scale=1.0):
    """-ELBO of one reparameterized draw (optionally on rows ``idx``, scaled)."""
    w_scale, b_scale = jnp.exp(u["w_scale"]), jnp.exp(u["b_scale"])
    kw, kb = jax.random.split(key)
    w = u["w_loc"] + w_scale * jax.random.normal(kw, (D,))
    b = u["b_loc"] + b_scale * jax.random.normal(kb, ())
    if idx is not None:
        X, y = X[idx], y[idx]
    logits = X @ w + b
    log_lik = scale * jnp.sum(y * logits - jax.nn.softplus(logits))
    log_p = jnp.sum(norm_lp(w, 0.0, 1.0)) + norm_lp(b, 0.0, 1.0) + log_lik
    log_q = jnp.sum(norm_lp(w, u["w_loc"], w_scale)) + norm_lp(b, u["b_loc"], b_scale)
    return -(log_p - log_q)


def distinct_indices(key, N: int, B: int) -> jax.Array:
    """``B`` distinct indices in ``[0, N)``, uniform over subsets: the first ``B``
    distinct of ``B + spare`` uniform draws (repeats found with an ``N``-slot
    table), redrawn in the rare case there are too few. The draw jsvi's
    ``plate(..., subsample_size=B)`` makes for these sizes, written out in JAX so
    that the minibatch ratio measures the engine rather than the sampler."""
    total = B + int(4 * B * B / (2 * N)) + 32

    def draw(carry):
        key, _, _ = carry
        key, sub = jax.random.split(key)
        c = jax.random.randint(sub, (total,), 0, N, dtype=jnp.int32)
        pos = jnp.arange(total, dtype=jnp.int32)
        first = jnp.full(N, total, jnp.int32).at[c].min(pos)[c] == pos
        rank = jnp.cumsum(first) - 1
        slot = jnp.where(first & (rank < B), rank, B)
        picked = jnp.zeros(B, jnp.int32).at[slot].set(c, mode="drop")
        return key, picked, rank[-1] + 1 >= B

    init = (key, jnp.zeros(B, jnp.int32), jnp.zeros((), bool))
    return jax.lax.while_loop(lambda carry: ~carry[2], draw, init)[1]


def make_step(loss: Callable, opt: optax.GradientTransformation) -> Callable:
    """``step(u, opt_state, key, *data) -> (u, opt_state, key, loss)``, jitted."""

    @jax.jit
    def step(u, opt_state, key, *data):
        key, sub = jax.random.split(key)
        value, grads = jax.value_and_grad(loss)(u, sub, *data)
        updates, opt_state = opt.update(grads, opt_state, u)
        return optax.apply_updates(u, updates), opt_state, key, value

    return step
