"""Flow guides against NumPyro's: an ``AutoIAFNormal`` step and an ``AutoBNAFNormal``
step, each beside NumPyro's guide of the same name and configuration on the same
model, in one run.

Model: a Bayesian logistic regression (N=2,000, D=10, plus an intercept: 11 latent
coordinates). IAF: 3 flows, hidden layers (2 * 11, 2 * 11), ELU; BNAF: 1 flow,
hidden factors (8, 8). ``Trace_ELBO`` with one particle, Adam(1e-3).

Target: jsvi's step no slower than NumPyro's (ratio <= 1).
Results go to ``results/flow_guides-<device>.json``.

Usage: ``python benchmarks/flow_guides.py [--smoke] [--out DIR]``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from _harness import context, interleaved, time_first_call, write
from core_step import logreg_model

import jsvi
from jsvi.autoguide import AutoBNAFNormal, AutoIAFNormal


def jsvi_runner(guide, opt, X, y):
    svi = jsvi.SVI(logreg_model, guide, opt, jsvi.Trace_ELBO())
    box = {"s": jsvi.svi_init(svi, jax.random.key(0), X, y)}

    def run():
        box["s"], loss = jsvi.svi_update(svi, box["s"], X, y)
        return loss

    return run


def numpyro_runner(kind, opt, X, y, hidden):
    """NumPyro's flow guide on the same model (None without NumPyro)."""
    try:
        import numpyro
        import numpyro.distributions as nd
        from numpyro.infer import SVI, Trace_ELBO, autoguide
    except ImportError:
        return None

    def model(X, y):
        D = X.shape[1]
        w = numpyro.sample("w", nd.Normal(jnp.zeros(D), 1.0).to_event(1))
        b = numpyro.sample("b", nd.Normal(0.0, 1.0))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("y", nd.Bernoulli(logits=X @ w + b), obs=y)

    if kind == "iaf":
        guide = autoguide.AutoIAFNormal(model, num_flows=3, hidden_dims=list(hidden))
    else:
        guide = autoguide.AutoBNAFNormal(model, num_flows=1, hidden_factors=[8, 8])
    svi = SVI(model, guide, opt, Trace_ELBO())
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
    N, D = (200, 3) if opts.smoke else (2_000, 10)
    latent = D + 1
    hidden = (2 * latent, 2 * latent)
    key_x, key_w = jax.random.split(jax.random.key(42))
    X = jax.random.normal(key_x, (N, D))
    y = (X @ jax.random.normal(key_w, (D,)) > 0).astype(jnp.float32)
    opt = optax.adam(1e-3)
    rows = []
    print(f"{'guide':>6}{'jsvi us':>11}{'numpyro us':>12}{'jsvi/numpyro':>14}")
    for kind in ("iaf", "bnaf"):
        if kind == "iaf":
            guide = AutoIAFNormal(logreg_model, num_flows=3, hidden_dims=hidden)
        else:
            guide = AutoBNAFNormal(logreg_model, num_flows=1, hidden_factors=(8, 8))
        contenders = {"jsvi": jsvi_runner(guide, opt, X, y)}
        np_run = numpyro_runner(kind, opt, X, y, hidden)
        if np_run is not None:
            contenders["numpyro"] = np_run
        first = {n: time_first_call(f) for n, f in contenders.items()}
        stats = interleaved(
            contenders, blocks=2 if opts.smoke else 6, calls=5 if opts.smoke else 50
        )
        ratio = stats["jsvi"]["paired"].get("numpyro")
        rows.append({"guide": kind, "first_call_s": first, "steady": stats,
                     "ratio_numpyro": ratio})
        np_us = (
            f"{1e6 * stats['numpyro']['median_s']:>12.1f}" if np_run else f"{'-':>12}"
        )
        print(f"{kind:>6}{1e6 * stats['jsvi']['median_s']:>11.1f}{np_us}"
              f"{ratio if ratio else float('nan'):>14.3f}")
    payload = {
        "context": context(),
        "smoke": opts.smoke,
        "sizes": {"N": N, "D": D, "latent_dim": latent, "iaf_hidden": list(hidden),
                  "iaf_flows": 3, "bnaf_flows": 1, "bnaf_hidden_factors": [8, 8]},
        "keys": "jax.random.key(0) / PRNGKey(0)",
        "rows": rows,
    }
    path = write("flow_guides" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
