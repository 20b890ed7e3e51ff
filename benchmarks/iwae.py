"""IWAE and DReG: the cost of a ``RenyiELBO`` step against a ``Trace_ELBO`` step with
the same number of particles, and DReG's gradient-variance reduction, side by side
in one run.

Model: the Bayesian logistic regression of ``core_step.py`` (N=5,000, D=20) with
its mean-field guide, K=64 particles. Contenders (one ``svi_update`` each):
``Trace_ELBO(num_particles=64)``, ``RenyiELBO(num_particles=64)`` (IWAE) and
``RenyiELBO(num_particles=64, doubly_reparameterized=True)`` (DReG).

Targets: IWAE <= 1.1x Trace_ELBO; DReG <= 1.3x IWAE. The variance of DReG's and
IWAE's gradients (``jsvi.diagnostics.gradient_variance``, 400 draws) is compared
per guide parameter at a state trained for 300 IWAE steps.
Results go to ``results/iwae-<device>.json``.

Usage: ``python benchmarks/iwae.py [--smoke] [--out DIR]``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import context, interleaved, time_first_call, write
from core_step import logreg_guide, logreg_model

import jsvi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    opts = parser.parse_args()
    N, D, K = (500, 5, 8) if opts.smoke else (5_000, 20, 64)
    key_x, key_w = jax.random.split(jax.random.key(42))
    X = jax.random.normal(key_x, (N, D))
    y = (X @ jax.random.normal(key_w, (D,)) > 0).astype(jnp.float32)
    opt = optax.adam(1e-2)
    estimators = {
        "trace_elbo": jsvi.Trace_ELBO(num_particles=K),
        "iwae": jsvi.RenyiELBO(num_particles=K),
        "dreg": jsvi.RenyiELBO(num_particles=K, doubly_reparameterized=True),
    }
    contenders, svis = {}, {}
    for name, est in estimators.items():
        svi = jsvi.SVI(logreg_model, logreg_guide, opt, est)
        box = {"s": jsvi.svi_init(svi, jax.random.key(0), X, y)}

        def run(svi=svi, box=box):
            box["s"], loss = jsvi.svi_update(svi, box["s"], X, y)
            return loss

        contenders[name], svis[name] = run, svi
    first = {n: time_first_call(f) for n, f in contenders.items()}
    stats = interleaved(
        contenders, blocks=2 if opts.smoke else 6, calls=5 if opts.smoke else 30
    )
    ratio_iwae = stats["iwae"]["paired"]["trace_elbo"]
    ratio_dreg = stats["dreg"]["paired"]["iwae"]

    # gradient variance at a trained state
    svi = svis["iwae"]
    state, _ = jsvi.svi_run(
        svi, jax.random.key(1), 50 if opts.smoke else 300, X, y, progress_bar=False
    )
    num = 50 if opts.smoke else 400
    var = {}
    for name in ("iwae", "dreg"):
        out = jsvi.diagnostics.gradient_variance(svis[name], state, X, y, num_samples=num)
        var[name] = {k: np.asarray(v) for k, v in out["variance"].items()}
    reduction = {
        k: float(np.median(var["iwae"][k] / var["dreg"][k])) for k in sorted(var["iwae"])
    }
    print(f"K={K}, N={N}, D={D}; steady-state step, median of per-round ratios")
    print(f"{'estimator':>12}{'step us':>11}{'first call s':>14}")
    for n, s in stats.items():
        print(f"{n:>12}{1e6 * s['median_s']:>11.1f}{first[n]:>14.2f}")
    print(f"IWAE / Trace_ELBO: {ratio_iwae:.3f} (target <= 1.1)")
    print(f"DReG / IWAE:       {ratio_dreg:.3f} (target <= 1.3)")
    print("gradient variance IWAE / DReG (median over each parameter's elements):")
    for k, r in reduction.items():
        print(f"  {k:>8}: {r:8.1f}x")
    payload = {
        "context": context(),
        "smoke": opts.smoke,
        "sizes": {"N": N, "D": D, "K": K},
        "keys": "svi_init jax.random.key(0); training and variance jax.random.key(1)",
        "rows": [
            {
                "first_call_s": first,
                "steady": stats,
                "ratio_iwae_over_trace_elbo": ratio_iwae,
                "ratio_dreg_over_iwae": ratio_dreg,
                "variance_reduction_iwae_over_dreg": reduction,
                "variance_num_samples": num,
            }
        ],
    }
    path = write("iwae" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
