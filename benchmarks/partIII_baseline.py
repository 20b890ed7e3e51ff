"""Pyro's SVI Part III experiment: steps to converge with and without a
decaying-average baseline.

The coin (Beta(10, 10) prior, 6 heads, 4 tails) with a ``NonReparameterized`` Beta
guide initialised at (15, 15), trained by Adam (lr 5e-4, betas (0.93, 0.999)) with
``TraceGraph_ELBO``. A run has converged at the first step where both guide
parameters are within 0.8 of the exact posterior's (16, 14); it stops at 10,000
steps otherwise. All seeds of one setting train at once: ``jax.vmap`` of
``svi_update`` over states initialised from different keys, inside ``lax.scan``.

Reports the median steps-to-converge over seeds for each setting, their ratio
(target: with baseline <= 0.6x without), and the gradient variance of each
estimator at the initial parameters. Results go to
``results/partIII_baseline-<device>.json``.

Usage: ``python benchmarks/partIII_baseline.py [--smoke] [--seeds N]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import context, write

import jsvi
import jsvi.distributions as dist
from jsvi import constraints

DATA = jnp.array([1.0] * 6 + [0.0] * 4)
TARGET = np.array([16.0, 14.0])


def model(data):
    f = jsvi.sample("latent_fairness", dist.Beta(10.0, 10.0))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("obs", dist.Bernoulli(f), obs=data)


def make_guide(use_baseline: bool):
    infer = (
        {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": 0.90}}
        if use_baseline
        else {}
    )

    def guide(data):
        del data
        a = jsvi.param("alpha_q", 15.0, constraint=constraints.positive)
        b = jsvi.param("beta_q", 15.0, constraint=constraints.positive)
        jsvi.sample("latent_fairness", dist.NonReparameterized(dist.Beta(a, b)), infer=infer)

    return guide


def steps_to_converge(
    use_baseline: bool, seeds: int, max_steps: int, *, grad_variance: bool = True
):
    opt = optax.adam(5e-4, b1=0.93, b2=0.999)
    svi = jsvi.SVI(model, make_guide(use_baseline), opt, jsvi.TraceGraph_ELBO())
    keys = jax.random.split(jax.random.key(0), seeds)
    states = jax.vmap(lambda k: jsvi.svi_init(svi, k, DATA))(keys)

    @jax.jit
    def run(states):
        def body(st, _):
            st, _ = jax.vmap(lambda s: jsvi.svi_update(svi, s, DATA))(st)
            p = jnp.exp(jnp.stack([st.params["alpha_q"], st.params["beta_q"]], -1))
            return st, p

        return jax.lax.scan(body, states, None, length=max_steps)

    t0 = time.perf_counter()
    final, trajectory = run(states)  # (max_steps, seeds, 2)
    jax.block_until_ready(trajectory)
    seconds = time.perf_counter() - t0
    close = np.all(np.abs(np.asarray(trajectory) - TARGET) < 0.8, axis=-1)  # (T, seeds)
    hit = close.any(0)
    steps = np.where(hit, close.argmax(0) + 1, max_steps)
    out = {
        "steps": steps.tolist(),
        "converged": int(hit.sum()),
        "median_steps": float(np.median(steps)),
        "seconds_all_seeds": seconds,
    }
    if grad_variance:  # optional: compiling the 2,000-draw estimate takes a while
        variance = jsvi.diagnostics.gradient_variance(
            svi, jax.tree.map(lambda x: x[0], states), DATA, num_samples=2000
        )["variance"]
        out["grad_variance_at_init"] = {k: float(v) for k, v in variance.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 seeds, 1,000 steps")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    opts = parser.parse_args()
    seeds, max_steps = (2, 1_000) if opts.smoke else (opts.seeds, 10_000)
    rows = {
        "no_baseline": steps_to_converge(False, seeds, max_steps),
        "decaying_avg_baseline": steps_to_converge(True, seeds, max_steps),
    }
    ratio = rows["decaying_avg_baseline"]["median_steps"] / rows["no_baseline"]["median_steps"]
    print(f"{'setting':<24}{'median steps':>14}{'converged':>11}{'var(alpha)':>12}{'var(beta)':>12}")
    for name, r in rows.items():
        v = r["grad_variance_at_init"]
        print(
            f"{name:<24}{r['median_steps']:>14.0f}{r['converged']:>8}/{seeds:<3}"
            f"{v['alpha_q']:>12.4g}{v['beta_q']:>12.4g}"
        )
    print(f"median ratio with/without baseline: {ratio:.3f} (target <= 0.6)")
    payload = {
        "context": context(),
        "smoke": opts.smoke,
        "settings": {"seeds": seeds, "max_steps": max_steps, "lr": 5e-4, "betas": [0.93, 0.999], "tolerance": 0.8},
        "keys": "jax.random.split(jax.random.key(0), seeds)",
        "rows": rows,
        "ratio_median_steps": ratio,
    }
    path = write("partIII_baseline" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
