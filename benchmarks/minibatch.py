"""Cost of plate subsampling: a minibatch step of Bayesian logistic regression
(N=50,000, D=20, B=1,000) with ``plate(..., subsample_size=B)`` against the same
step hand-written in JAX (the same draw of distinct indices, and, for scale, indices
drawn with replacement by ``jax.random.randint``) and against NumPyro's plate
subsampling when it is installed, side by side in one run.

Target: jsvi / hand-written <= 1.2. Results go to ``results/minibatch-<device>.json``.

Usage: ``python benchmarks/minibatch.py [--smoke] [--out DIR]``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from _handwritten import (
    distinct_indices,
    logreg_params,
    logreg_particle_loss,
    make_step,
)
from _harness import context, interleaved, time_first_call, write

import jsvi
import jsvi.distributions as dist
from jsvi import constraints


def model(X, y, B):
    N, D = X.shape
    w = jsvi.sample("w", dist.Normal(jnp.zeros(D), 1.0).to_event(1))
    b = jsvi.sample("b", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", N, subsample_size=B) as idx:
        jsvi.sample("y", dist.Bernoulli(logits=X[idx] @ w + b), obs=y[idx])


def guide(X, y, B):
    del y, B
    D = X.shape[1]
    w_loc = jsvi.param("w_loc", jnp.zeros(D))
    w_scale = jsvi.param("w_scale", 0.1 * jnp.ones(D), constraint=constraints.positive)
    b_loc = jsvi.param("b_loc", 0.0)
    b_scale = jsvi.param("b_scale", 0.1, constraint=constraints.positive)
    jsvi.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
    jsvi.sample("b", dist.Normal(b_loc, b_scale))


def hand(opt, N, D, B, distinct=True):
    """The hand-written step: ``B`` distinct indices drawn as jsvi draws them, or
    (``distinct=False``) ``B`` indices drawn with replacement, the cheapest
    unbiased minibatch."""

    def loss(u, key, X, y):
        k_idx, k_draw = jax.random.split(key)
        if distinct:
            idx = distinct_indices(k_idx, N, B)
        else:
            idx = jax.random.randint(k_idx, (B,), 0, N)
        return logreg_particle_loss(u, k_draw, X, y, D, idx=idx, scale=N / B)

    u0 = logreg_params(D)
    return make_step(loss, opt), (u0, opt.init(u0), jax.random.key(0))


def numpyro_svi(B):
    """NumPyro's SVI for the subsampled regression, ``B`` rows a step (None without
    NumPyro)."""
    try:
        import numpyro
        import numpyro.distributions as ndist
        from numpyro.infer import SVI, Trace_ELBO
    except ImportError:
        return None

    def np_model(X, y):
        N, D = X.shape
        w = numpyro.sample("w", ndist.Normal(jnp.zeros(D), 1.0).to_event(1))
        b = numpyro.sample("b", ndist.Normal(0.0, 1.0))
        with numpyro.plate("data", N, subsample_size=B) as idx:
            numpyro.sample("y", ndist.Bernoulli(logits=X[idx] @ w + b), obs=y[idx])

    def np_guide(X, y):
        D = X.shape[1]
        w_loc = numpyro.param("w_loc", jnp.zeros(D))
        w_scale = numpyro.param(
            "w_scale", 0.1 * jnp.ones(D), constraint=ndist.constraints.positive
        )
        b_loc = numpyro.param("b_loc", 0.0)
        b_scale = numpyro.param("b_scale", 0.1, constraint=ndist.constraints.positive)
        numpyro.sample("w", ndist.Normal(w_loc, w_scale).to_event(1))
        numpyro.sample("b", ndist.Normal(b_loc, b_scale))

    return SVI(np_model, np_guide, optax.adam(1e-3), Trace_ELBO())


def numpyro_contender(X, y, B):
    svi = numpyro_svi(B)
    if svi is None:
        return None
    state = svi.init(jax.random.PRNGKey(0), X, y)
    update = jax.jit(svi.update)
    box = {"s": state}

    def run():
        box["s"], loss = update(box["s"], X, y)
        return loss

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    opts = parser.parse_args()
    N, D, B = (2_000, 5, 100) if opts.smoke else (50_000, 20, 1_000)
    blocks, calls = (2, 10) if opts.smoke else (10, 100)
    key_x, key_w = jax.random.split(jax.random.key(42))
    X = jax.random.normal(key_x, (N, D))
    y = (X @ jax.random.normal(key_w, (D,)) > 0).astype(jnp.float32)
    opt = optax.adam(1e-3)
    svi = jsvi.SVI(model, guide, opt, jsvi.Trace_ELBO())
    box = {"jsvi": jsvi.svi_init(svi, jax.random.key(0), X, y, B)}
    steps = {}
    steps["hand"], box["hand"] = hand(opt, N, D, B)
    steps["hand_iid"], box["hand_iid"] = hand(opt, N, D, B, distinct=False)

    def run_jsvi():
        box["jsvi"], loss = jsvi.svi_update(svi, box["jsvi"], X, y, B)
        return loss

    def hand_runner(name):
        def run():
            u, o, k, loss = steps[name](*box[name], X, y)
            box[name] = (u, o, k)
            return loss

        return run

    # hand: the same distinct-index draw; hand_iid: indices with replacement
    contenders = {"jsvi": run_jsvi, "hand": hand_runner("hand"), "hand_iid": hand_runner("hand_iid")}
    np_run = numpyro_contender(X, y, B)
    if np_run is not None:
        contenders["numpyro"] = np_run
    first = {name: time_first_call(fn) for name, fn in contenders.items()}
    stats = interleaved(contenders, blocks=blocks, calls=calls)
    print(f"{'contender':<12}{'us/step':>10}{'vs hand':>10}{'first call s':>14}")
    for name, s in stats.items():
        print(f"{name:<12}{1e6 * s['median_s']:>10.1f}{s['paired'].get('hand', 1.0):>10.2f}{first[name]:>14.3f}")
    payload = {
        "context": context(),
        "smoke": opts.smoke,
        "sizes": {"N": N, "D": D, "B": B},
        "keys": "jax.random.key(0)",
        "first_call_s": first,
        "steady": stats,
        "rows": [{"contender": k, **v} for k, v in stats.items()],
        "ratio_jsvi_hand": stats["jsvi"]["paired"]["hand"],
        "ratio_numpyro_hand": stats["numpyro"]["paired"]["hand"] if "numpyro" in stats else None,
    }
    path = write("minibatch" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
