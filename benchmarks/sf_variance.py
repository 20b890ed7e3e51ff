"""Score-function gradient variance: plate-aware and dependency-graph costs
against the costs they replaced.

Two workloads, gradients of the loss (-ELBO) at fixed parameters, one draw per key
over ``--draws`` keys (``jax.vmap`` of ``jax.grad``):

- ``plate``: a Bernoulli latent per data point in a plate of N (10, 100, 1,000),
  a reparameterized Normal global, a non-reparameterized Bernoulli guide with one
  logit per point. ``Trace_ELBO`` (plate-aware costs: each element's score
  weighted by its own element's terms plus the terms outside the plate) against
  the whole-trace cost it used before (every element weighted by the whole
  ELBO). Reports the per-element variance of the logit gradients, the median
  and minimum of the ratio old / new, and the bias check (largest
  ``|mean new - mean old|`` in standard errors).
- ``chain``: 7 Normal latents in a chain, an observation of the last, a
  non-reparameterized guide that is mean-field except z_3 -> z_4.
  ``TraceGraph_ELBO`` with costs over true descendants (the dependency graph)
  against costs in execution order. Reports each site's variance of the
  gradient with respect to its location, and the ratio old / new.
- ``chain_reverse_guide``: the same model with a guide that runs the chain
  backwards (z_6 first, each z_k drawn given z_{k+1}), the usual structured
  guide for a chain: every later guide site is a true descendant, but the model
  terms beyond z_{k+1} are not.

Then ``chain_training``: the backward guide with one weight per link (its family
holds the exact posterior), trained by Adam (lr 0.01, ``--steps`` steps, 4 seeds
at once) with each estimator; reports the RMS error of the guide parameters
against the exact posterior's; NumPyro's ``TraceGraph_ELBO`` on the same model
and guide (4 seeds, one after another) when NumPyro is installed.

"old" is the former cost rule alone (whole trace; execution order) with
everything else as now, so the ratio isolates the costs; "previous" is the
former estimator exactly, which also kept the zero-mean direct gradient of
``-log q`` at non-reparameterized draws ("vs previous" columns).

Writes ``results/sf_variance-<device>.json`` and a figure
``results/sf_variance-<device>.png`` (if matplotlib is installed).

Usage: ``python benchmarks/sf_variance.py [--smoke] [--draws N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import context, device_tag, write

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.infer.costs import downstream_costs


@dataclasses.dataclass(frozen=True)
class WholeTraceELBO(jsvi.Trace_ELBO):
    """Trace_ELBO as it was: every site's cost is the whole particle ELBO."""

    def _score_costs(self, terms):
        return {n: terms.elbo() for n in terms.non_reparam}


@dataclasses.dataclass(frozen=True)
class ExecutionOrderELBO(jsvi.TraceGraph_ELBO):
    """TraceGraph_ELBO as it was: costs in execution order."""

    def _costs(self, terms, sites, *rest):
        del rest
        return downstream_costs(terms, sites) if sites else {}


@dataclasses.dataclass(frozen=True)
class PreviousTraceELBO(WholeTraceELBO):
    """Trace_ELBO exactly as it was: whole-trace costs, and the direct gradient of
    -log q at non-reparameterized draws kept."""

    def _pathwise(self, terms):
        return terms.pathwise()


@dataclasses.dataclass(frozen=True)
class PreviousGraphELBO(ExecutionOrderELBO):
    """TraceGraph_ELBO exactly as it was (execution order, direct gradient kept)."""

    def _pathwise(self, terms):
        return terms.pathwise()


def per_draw_grads(estimator, model, guide, params, *args, num):
    keys = jax.random.split(jax.random.key(0), num)

    def grad(k):
        return jax.grad(lambda p: estimator.loss(k, p, model, guide, *args))(params)

    return jax.tree.map(np.asarray, jax.jit(jax.vmap(grad))(keys))


# --- plate -------------------------------------------------------------------------
def plate_model(x):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        z = jsvi.sample("z", dist.Bernoulli(0.4))
        jsvi.sample("x", dist.Normal(mu + 2.0 * z, 1.0), obs=x)


def plate_guide(x):
    m = jsvi.param("m", 0.0)
    s = jsvi.param("s", 1.0, constraint=constraints.positive)
    jsvi.sample("mu", dist.Normal(m, s))
    u = jsvi.param("u", jnp.zeros(x.shape[0]))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("z", dist.Bernoulli(logits=u))


def plate_rows(sizes, draws):
    rows = []
    for n in sizes:
        x = jax.random.normal(jax.random.key(1), (n,)) + 2.0 * (jnp.arange(n) % 2)
        params = {"m": jnp.array(0.3), "s": jnp.array(0.8), "u": jnp.linspace(-1, 1, n)}
        out = {}
        for name, est in (("old", WholeTraceELBO()), ("new", jsvi.Trace_ELBO()),
                          ("previous", PreviousTraceELBO())):
            t0 = time.perf_counter()
            out[name] = per_draw_grads(est, plate_model, plate_guide, params, x, num=draws)
            out[name + "_s"] = time.perf_counter() - t0
        old, new = out["old"]["u"], out["new"]["u"]
        ratio = old.var(0) / new.var(0)
        previous = out["previous"]["u"].var(0) / new.var(0)
        se = np.sqrt(old.var(0) / draws + new.var(0) / draws)
        rows.append({
            "workload": "plate",
            "N": n,
            "draws": draws,
            "var_old_mean": float(old.var(0).mean()),
            "var_new_mean": float(new.var(0).mean()),
            "ratio_median": float(np.median(ratio)),
            "ratio_min": float(ratio.min()),
            "ratio_of_totals": float(old.var(0).sum() / new.var(0).sum()),
            "previous_ratio_median": float(np.median(previous)),
            "previous_ratio_min": float(previous.min()),
            "max_mean_diff_in_se": float(np.max(np.abs(old.mean(0) - new.mean(0)) / se)),
            "seconds_old": out["old_s"],
            "seconds_new": out["new_s"],
        })
    return rows


# --- chain -------------------------------------------------------------------------
K = 7


def chain_model():
    z = jsvi.sample("z_0", dist.Normal(0.0, 1.0))
    for k in range(1, K):
        z = jsvi.sample(f"z_{k}", dist.Normal(z, 1.0))
    jsvi.sample("x", dist.Normal(z, 0.3), obs=2.0)


def chain_guide():
    m = jsvi.param("m", jnp.zeros(K))
    s = jsvi.param("s", jnp.ones(K), constraint=constraints.positive)
    w = jsvi.param("w", 0.0)
    prev = None
    for k in range(K):
        loc = m[k] + (w * prev if k == 4 else 0.0)
        prev = jsvi.sample(f"z_{k}", dist.NonReparameterized(dist.Normal(loc, s[k])))


def reverse_guide():
    """The chain's posterior order: z_6 first, then each z_k given z_{k+1}."""
    m = jsvi.param("m", jnp.zeros(K))
    s = jsvi.param("s", jnp.ones(K), constraint=constraints.positive)
    w = jsvi.param("w", 0.0)
    nxt = None
    for k in reversed(range(K)):
        loc = m[k] + (0.0 if nxt is None else w * nxt)
        nxt = jsvi.sample(f"z_{k}", dist.NonReparameterized(dist.Normal(loc, s[k])))


def chain_rows(draws):
    params = {"m": jnp.linspace(-0.5, 0.8, K), "s": jnp.linspace(0.6, 1.1, K),
              "w": jnp.array(0.5)}
    rows = []
    for workload, guide in (("chain", chain_guide), ("chain_reverse_guide", reverse_guide)):
        old = per_draw_grads(ExecutionOrderELBO(), chain_model, guide, params, num=draws)
        new = per_draw_grads(jsvi.TraceGraph_ELBO(), chain_model, guide, params, num=draws)
        prev = per_draw_grads(PreviousGraphELBO(), chain_model, guide, params, num=draws)
        rows += _site_rows(workload, old, new, prev, draws)
    return rows


def _site_rows(workload, old, new, prev, draws):
    rows = []
    for k in range(K):
        v_old, v_new = float(old["m"][:, k].var()), float(new["m"][:, k].var())
        rows.append({
            "workload": workload,
            "site": f"z_{k}",
            "draws": draws,
            "var_old": v_old,
            "var_new": v_new,
            "ratio": v_old / v_new,
            "previous_ratio": float(prev["m"][:, k].var()) / v_new,
        })
    return rows


def exact_backward_guide():
    """The chain's exact posterior as backward conditionals: z_6 ~ N(m_6, s_6),
    z_k | z_{k+1} ~ N(m_k + w_k z_{k+1}, s_k) (a Gaussian Markov chain)."""
    prec = np.zeros((K, K))
    prec[0, 0] = 1.0  # z_0 ~ N(0, 1)
    for k in range(1, K):  # z_k - z_{k-1} ~ N(0, 1)
        prec[k, k] += 1.0
        prec[k - 1, k - 1] += 1.0
        prec[k, k - 1] = prec[k - 1, k] = -1.0
    prec[-1, -1] += 1 / 0.3**2
    cov = np.linalg.inv(prec)
    mean = cov @ np.eye(K)[-1] * (2.0 / 0.3**2)
    w, m, s = np.zeros(K), mean.copy(), np.sqrt(np.diag(cov))
    for k in range(K - 1):
        w[k] = cov[k, k + 1] / cov[k + 1, k + 1]
        m[k] = mean[k] - w[k] * mean[k + 1]
        s[k] = np.sqrt(cov[k, k] - cov[k, k + 1] ** 2 / cov[k + 1, k + 1])
    return {"m": m, "s": s, "w": w[:-1]}


def backward_guide():
    m = jsvi.param("m", jnp.zeros(K))
    s = jsvi.param("s", jnp.ones(K), constraint=constraints.positive)
    w = jsvi.param("w", jnp.zeros(K - 1))
    nxt = None
    for k in reversed(range(K)):
        loc = m[k] + (0.0 if nxt is None else w[k] * nxt)
        nxt = jsvi.sample(f"z_{k}", dist.NonReparameterized(dist.Normal(loc, s[k])))


def train_rows(steps, seeds):
    """Final errors after training the backward guide, each estimator, 4 seeds."""
    exact = exact_backward_guide()
    rows = []
    for name, est in (("previous TraceGraph_ELBO", PreviousGraphELBO()),
                      ("execution order", ExecutionOrderELBO()),
                      ("dependency graph", jsvi.TraceGraph_ELBO())):
        svi = jsvi.SVI(chain_model, backward_guide, optax.adam(0.01), est)
        keys = jax.random.split(jax.random.key(0), seeds)
        states = jax.vmap(lambda k, svi=svi: jsvi.svi_init(svi, k))(keys)

        @jax.jit
        def run(states, svi=svi):
            def body(st, _):
                st, loss = jax.vmap(lambda x: jsvi.svi_update(svi, x))(st)
                return st, loss

            return jax.lax.scan(body, states, None, length=steps)

        t0 = time.perf_counter()
        final, _ = run(states)
        jax.block_until_ready(final)
        seconds = time.perf_counter() - t0
        params = jax.vmap(lambda st, svi=svi: jsvi.get_params(svi, st))(final)
        err = sum(np.sum((np.asarray(params[k]) - exact[k]) ** 2, -1) for k in exact)
        rms = np.sqrt(err / (3 * K - 1))
        rows.append({
            "workload": "chain_training",
            "estimator": name,
            "steps": steps,
            "seeds": seeds,
            "rms_param_error_per_seed": [float(e) for e in rms],
            "rms_param_error_mean": float(rms.mean()),
            "seconds": seconds,
        })
    return rows


def numpyro_train_row(steps, seeds):
    """NumPyro's TraceGraph_ELBO on the same model and backward guide, if installed."""
    try:
        import numpyro
        import numpyro.distributions as nd
    except ImportError:
        return []

    class NonReparamNormal(nd.Normal):
        reparametrized_params = []  # NumPyro's marker for score-function sites

    def model():
        z = numpyro.sample("z_0", nd.Normal(0.0, 1.0))
        for k in range(1, K):
            z = numpyro.sample(f"z_{k}", nd.Normal(z, 1.0))
        numpyro.sample("x", nd.Normal(z, 0.3), obs=2.0)

    def guide():
        m = numpyro.param("m", jnp.zeros(K))
        s = numpyro.param("s", jnp.ones(K), constraint=nd.constraints.positive)
        w = numpyro.param("w", jnp.zeros(K - 1))
        nxt = None
        for k in reversed(range(K)):
            loc = m[k] + (0.0 if nxt is None else w[k] * nxt)
            nxt = numpyro.sample(f"z_{k}", NonReparamNormal(loc, s[k]))

    exact = exact_backward_guide()
    svi = numpyro.infer.SVI(model, guide, optax.adam(0.01), numpyro.infer.TraceGraph_ELBO())
    t0 = time.perf_counter()
    rms = []
    for seed in range(seeds):
        params = svi.run(jax.random.PRNGKey(seed), steps, progress_bar=False).params
        err = sum(np.sum((np.asarray(params[k]) - exact[k]) ** 2) for k in exact)
        rms.append(float(np.sqrt(err / (3 * K - 1))))
    return [{
        "workload": "chain_training",
        "estimator": "NumPyro TraceGraph_ELBO",
        "steps": steps,
        "seeds": seeds,
        "rms_param_error_per_seed": rms,
        "rms_param_error_mean": float(np.mean(rms)),
        "seconds": time.perf_counter() - t0,
    }]


def figure(plate, chain, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    ns = [r["N"] for r in plate]
    a.loglog(ns, [r["var_old_mean"] for r in plate], "o-", label="whole-trace cost (before)")
    a.loglog(ns, [r["var_new_mean"] for r in plate], "s-", label="plate-aware cost")
    a.set_xlabel("plate size N")
    a.set_ylabel("mean per-element variance of d loss / d logit")
    a.set_title("Trace_ELBO, Bernoulli latent per point")
    a.legend()
    chain = [r for r in chain if r["workload"] == "chain"]
    sites = [r["site"] for r in chain]
    xs = np.arange(len(sites))
    b.bar(xs - 0.2, [r["var_old"] for r in chain], 0.4, label="execution order (before)")
    b.bar(xs + 0.2, [r["var_new"] for r in chain], 0.4, label="dependency graph")
    b.set_yscale("log")
    b.set_xticks(xs, sites)
    b.set_ylabel("variance of d loss / d loc")
    b.set_title("TraceGraph_ELBO, chain of 7 Normal latents")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="N = 10 only, 200 draws")
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=5000, help="training steps")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    opts = parser.parse_args()
    draws = 200 if opts.smoke else opts.draws
    sizes = (10,) if opts.smoke else (10, 100, 1000)
    plate = plate_rows(sizes, draws)
    chain = chain_rows(draws)
    steps = 200 if opts.smoke else opts.steps
    train = train_rows(steps, 4) + numpyro_train_row(steps, 4)
    print(f"{'N':>6} {'var old':>10} {'var new':>10} {'median ratio':>13} "
          f"{'min ratio':>10} {'vs previous':>12}")
    for r in plate:
        print(f"{r['N']:>6} {r['var_old_mean']:>10.3g} {r['var_new_mean']:>10.3g} "
              f"{r['ratio_median']:>13.1f} {r['ratio_min']:>10.1f} "
              f"{r['previous_ratio_median']:>12.1f}")
    print(f"{'workload':>20} {'site':>5} {'var old':>10} {'var new':>10} {'ratio':>8} "
          f"{'vs previous':>12}")
    for r in chain:
        print(f"{r['workload']:>20} {r['site']:>5} {r['var_old']:>10.3g} "
              f"{r['var_new']:>10.3g} {r['ratio']:>8.1f} {r['previous_ratio']:>12.1f}")
    for r in train:
        print(f"training, {r['estimator']:>16}: rms parameter error "
              f"{r['rms_param_error_mean']:.3f} after {r['steps']} steps "
              f"(seeds: {', '.join(f'{e:.3f}' for e in r['rms_param_error_per_seed'])})")
    payload = {"context": context(), "smoke": opts.smoke, "rows": plate + chain + train}
    name = "sf_variance" + ("-smoke" if opts.smoke else "")
    path = write(name, payload, opts.out)
    png = figure(plate, chain, path.with_name(f"{name}-{device_tag()}.png"))
    print(f"wrote {path}" + (f" and {png}" if png else ""))


if __name__ == "__main__":
    main()
