"""Particle scaling: a Bayesian logistic regression (N=5,000, D=20) step with 1, 8,
64 and 512 vectorized particles, in jsvi, hand-written JAX (``vmap`` over particles)
and NumPyro (``Trace_ELBO(num_particles, vectorize_particles=True)``, when
installed), side by side in one run.

Targets at every particle count: jsvi <= 1.05x hand-written and <= NumPyro.
Results go to ``results/particles-<device>.json``.

Usage: ``python benchmarks/particles.py [--smoke] [--out DIR]``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from _handwritten import logreg_params, logreg_particle_loss, make_step
from _harness import context, interleaved, time_first_call, write
from core_step import logreg_guide, logreg_model

import jsvi


def hand(opt, D, P):
    def loss(u, key, X, y):
        keys = jax.random.split(key, P)
        per_particle = jax.vmap(logreg_particle_loss, in_axes=(None, 0, None, None, None))
        return jnp.mean(per_particle(u, keys, X, y, D))

    u0 = logreg_params(D)
    return make_step(loss, opt), (u0, opt.init(u0), jax.random.key(0))


def numpyro_svi(opt, P):
    """NumPyro's SVI for the mean-field logistic regression, ``P`` particles (None
    without NumPyro)."""
    try:
        import numpyro
        import numpyro.distributions as nd
        from numpyro.infer import SVI, Trace_ELBO
    except ImportError:
        return None

    def model(X, y):
        D = X.shape[1]
        w = numpyro.sample("w", nd.Normal(jnp.zeros(D), 1.0).to_event(1))
        b = numpyro.sample("b", nd.Normal(0.0, 1.0))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("y", nd.Bernoulli(logits=X @ w + b), obs=y)

    def guide(X, y):
        D = X.shape[1]
        w_loc = numpyro.param("w_loc", jnp.zeros(D))
        w_scale = numpyro.param("w_scale", 0.1 * jnp.ones(D), constraint=nd.constraints.positive)
        b_loc = numpyro.param("b_loc", 0.0)
        b_scale = numpyro.param("b_scale", 0.1, constraint=nd.constraints.positive)
        numpyro.sample("w", nd.Normal(w_loc, w_scale).to_event(1))
        numpyro.sample("b", nd.Normal(b_loc, b_scale))

    return SVI(model, guide, opt, Trace_ELBO(num_particles=P, vectorize_particles=True))


def numpyro_runner(opt, X, y, P):
    svi = numpyro_svi(opt, P)
    if svi is None:
        return None
    box = {"s": svi.init(jax.random.PRNGKey(0), X, y)}
    update = jax.jit(svi.update)

    def run():
        box["s"], loss = update(box["s"], X, y)
        return loss

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    opts = parser.parse_args()
    N, D = (500, 5) if opts.smoke else (5_000, 20)
    counts = (1, 8) if opts.smoke else (1, 8, 64, 512)
    key_x, key_w = jax.random.split(jax.random.key(42))
    X = jax.random.normal(key_x, (N, D))
    y = (X @ jax.random.normal(key_w, (D,)) > 0).astype(jnp.float32)
    opt = optax.adam(1e-3)
    rows = []
    print(f"{'particles':>9}{'jsvi us':>11}{'hand us':>11}{'numpyro us':>12}{'jsvi/hand':>11}{'jsvi/numpyro':>14}")
    for P in counts:
        svi = jsvi.SVI(logreg_model, logreg_guide, opt, jsvi.Trace_ELBO(num_particles=P))
        box = {"jsvi": jsvi.svi_init(svi, jax.random.key(0), X, y)}
        step, box["hand"] = hand(opt, D, P)

        def run_jsvi(svi=svi, box=box):
            box["jsvi"], loss = jsvi.svi_update(svi, box["jsvi"], X, y)
            return loss

        def run_hand(step=step, box=box):
            u, o, k, loss = step(*box["hand"], X, y)
            box["hand"] = (u, o, k)
            return loss

        contenders = {"jsvi": run_jsvi, "hand": run_hand}
        np_run = numpyro_runner(opt, X, y, P)
        if np_run is not None:
            contenders["numpyro"] = np_run
        first = {n: time_first_call(f) for n, f in contenders.items()}
        calls = max(3, min(50, 2000 // P)) if not opts.smoke else 5
        stats = interleaved(contenders, blocks=2 if opts.smoke else 6, calls=calls)
        med = {n: s["median_s"] for n, s in stats.items()}
        row = {
            "particles": P,
            "first_call_s": first,
            "steady": stats,
            "ratio_hand": stats["jsvi"]["paired"]["hand"],
            "ratio_numpyro": stats["jsvi"]["paired"]["numpyro"] if "numpyro" in med else None,
        }
        rows.append(row)
        np_us = f"{1e6 * med['numpyro']:>12.1f}" if "numpyro" in med else f"{'-':>12}"
        np_ratio = f"{row['ratio_numpyro']:>14.3f}" if row["ratio_numpyro"] else f"{'-':>14}"
        print(f"{P:>9}{1e6 * med['jsvi']:>11.1f}{1e6 * med['hand']:>11.1f}{np_us}{row['ratio_hand']:>11.3f}{np_ratio}")
    payload = {"context": context(), "smoke": opts.smoke, "sizes": {"N": N, "D": D}, "keys": "jax.random.key(0)", "rows": rows}
    path = write("particles" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
