"""Per-step cost of jsvi's compiled ``svi_update`` against the same loss hand-written
in plain JAX, side by side in one run.

Workloads: Pyro's coin (Beta-Bernoulli, 10 flips) and a Bayesian logistic regression
(N=50,000, D=20, mean-field Normal guide, full batch). For each, the hand-written step
draws the same reparameterized sample, evaluates the same log-densities, and applies
the same optax Adam update, all in one ``jax.jit``. Reported: first-call (compile)
time, steady-state median and IQR per step, and the ratio jsvi / hand-written (target
<= 1.05): the median, over rounds of calls made side by side, of the per-round ratio.
The hand-written step compiled a second time is timed alongside as a control. The
whole measurement runs in 5 fresh processes, one after another, and each ratio
reported is the median over them (``--processes``): two different programs can time
a few percent apart in one process and the other way round in the next. Results go
to ``results/core_step-<device>.json``.

Both hand-written coin steps use jsvi's ``log_beta`` (``jax.scipy.special.betaln``
with a cheaper derivative) as jsvi's Beta does, so that the ratio measures the
engine rather than the special function.

Usage: ``python benchmarks/core_step.py [--smoke] [--processes K]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _handwritten import logreg_params, logreg_particle_loss, make_step
from _harness import context, interleaved, time_first_call, write

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.distributions.continuous import log_beta

# --- coin ------------------------------------------------------------------------


def coin_model(data):
    f = jsvi.sample("f", dist.Beta(10.0, 10.0))
    with jsvi.plate("data", data.shape[0]):
        jsvi.sample("obs", dist.Bernoulli(f), obs=data)


def coin_guide(data):
    del data
    a = jsvi.param("a", 15.0, constraint=constraints.positive)
    b = jsvi.param("b", 15.0, constraint=constraints.positive)
    jsvi.sample("f", dist.Beta(a, b))


def coin_hand(opt, log_b=log_beta):
    def log_beta_pdf(x, a, b):
        return (
            jax.scipy.special.xlogy(a - 1, x)
            + jax.scipy.special.xlog1py(b - 1, -x)
            - log_b(a, b)
        )

    def loss(u, key, data):
        a, b = jnp.exp(u["a"]), jnp.exp(u["b"])
        # The draw jsvi's Beta makes (one vectorized log-gamma draw; see
        # ``Beta.sample``), so the ratio measures the engine, not the sampler.
        log_g = jax.random.loggamma(key, jnp.stack([a, b], -1))
        f = jax.nn.sigmoid(log_g[..., 0] - log_g[..., 1])
        f = jnp.clip(f, jnp.finfo(f.dtype).tiny, 1.0 - jnp.finfo(f.dtype).eps)
        log_p = log_beta_pdf(f, 10.0, 10.0) + jnp.sum(
            jax.scipy.special.xlogy(data, f) + jax.scipy.special.xlog1py(1 - data, -f)
        )
        return -(log_p - log_beta_pdf(f, a, b))

    step = make_step(loss, opt)
    u0 = {"a": jnp.log(jnp.float32(15.0)), "b": jnp.log(jnp.float32(15.0))}  # not weakly typed
    return step, (u0, opt.init(u0), jax.random.key(0))


# --- logistic regression -----------------------------------------------------------


def logreg_model(X, y):
    D = X.shape[1]
    w = jsvi.sample("w", dist.Normal(jnp.zeros(D), 1.0).to_event(1))
    b = jsvi.sample("b", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", X.shape[0]):
        jsvi.sample("y", dist.Bernoulli(logits=X @ w + b), obs=y)


def logreg_guide(X, y):
    del y
    D = X.shape[1]
    w_loc = jsvi.param("w_loc", jnp.zeros(D))
    w_scale = jsvi.param("w_scale", 0.1 * jnp.ones(D), constraint=constraints.positive)
    b_loc = jsvi.param("b_loc", 0.0)
    b_scale = jsvi.param("b_scale", 0.1, constraint=constraints.positive)
    jsvi.sample("w", dist.Normal(w_loc, w_scale).to_event(1))
    jsvi.sample("b", dist.Normal(b_loc, b_scale))


def logreg_hand(opt, D):
    def loss(u, key, X, y):
        return logreg_particle_loss(u, key, X, y, D)

    u0 = logreg_params(D)
    return make_step(loss, opt), (u0, opt.init(u0), jax.random.key(0))


# --- driver --------------------------------------------------------------------------


def bench(name, model, guide, hand, data, blocks, calls):
    opt = optax.adam(1e-3)
    svi = jsvi.SVI(model, guide, opt, jsvi.Trace_ELBO())
    t0 = time.perf_counter()
    state = jsvi.svi_init(svi, jax.random.key(0), *data)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    hand_step, hand_state = hand(opt)
    # the control: the same hand-written step compiled a second time, on its own
    again_step, again_state = hand(opt)
    box = {"jsvi": state, "hand": hand_state, "hand_again": again_state}

    def run_jsvi():
        box["jsvi"], loss = jsvi.svi_update(svi, box["jsvi"], *data)
        return loss

    def hand_runner(name, step):
        def run():
            u, o, k, loss = step(*box[name], *data)
            box[name] = (u, o, k)
            return loss

        return run

    run_hand = hand_runner("hand", hand_step)
    compile_s = {"jsvi": time_first_call(run_jsvi), "hand": time_first_call(run_hand)}
    # ``hand_again``, the hand-written step compiled a second time, is the control:
    # its ratio to ``hand`` shows how finely this run tells two steps apart.
    stats = interleaved(
        {
            "jsvi": run_jsvi,
            "hand": run_hand,
            "hand_again": hand_runner("hand_again", again_step),
        },
        blocks=blocks,
        calls=calls,
    )
    return {
        "workload": name,
        "svi_init_s": init_s,
        "first_call_s": compile_s,
        "steady": stats,
        "ratio": stats["jsvi"]["paired"]["hand"],
        "ratio_of_medians": stats["jsvi"]["median_s"] / stats["hand"]["median_s"],
        "ratio_min": stats["jsvi"]["min_s"] / stats["hand"]["min_s"],
        "control_ratio": stats["hand_again"]["paired"]["hand"],
    }


def loop_overhead(steps: int, repeats: int) -> dict:
    """Whole-loop time of ``svi_run`` on the coin: one compiled loop without a
    progress bar, the chunked loop with one, and a Python loop of ``svi_update``."""
    data = jnp.array([1.0] * 6 + [0.0] * 4)
    svi = jsvi.SVI(coin_model, coin_guide, optax.adam(1e-3), jsvi.Trace_ELBO())

    def python_loop():
        state = jsvi.svi_init(svi, 0, data)
        for _ in range(steps):
            state, loss = jsvi.svi_update(svi, state, data)
        return loss

    runs = {
        "svi_run": lambda: jsvi.svi_run(svi, 0, steps, data, progress_bar=False)[1],
        "svi_run+bar": lambda: jsvi.svi_run(svi, 0, steps, data, progress_bar=True)[1],
        "python_loop": python_loop,
    }
    for fn in runs.values():
        jax.block_until_ready(fn())  # compile
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(ts)) for name, ts in times.items()}
    return {
        "steps": steps,
        "median_s": med,
        "bar_overhead": med["svi_run+bar"] / med["svi_run"] - 1.0,
        "python_loop_vs_svi_run": med["python_loop"] / med["svi_run"],
    }


def sizes(smoke: bool) -> tuple[int, int]:
    """The logistic regression's N and D."""
    return (2_000, 5) if smoke else (50_000, 20)


def measure_rows(smoke: bool) -> list[dict]:
    """Both workloads, measured in this process."""
    N, D = sizes(smoke)
    blocks, calls = (2, 10) if smoke else (10, 50)
    jnp.zeros(()).block_until_ready()
    coin_data = (jnp.array([1.0] * 6 + [0.0] * 4),)
    key_x, key_w = jax.random.split(jax.random.key(42))
    X = jax.random.normal(key_x, (N, D))
    y = (X @ jax.random.normal(key_w, (D,)) > 0).astype(jnp.float32)
    return [
        # the coin's steps are short: longer blocks, as in suite.py (coin_calls)
        bench("coin", coin_model, coin_guide, coin_hand, coin_data, blocks, 4 * calls),
        bench(
            f"logreg N={N} D={D}",
            logreg_model,
            logreg_guide,
            lambda opt: logreg_hand(opt, D),
            (X, y),
            blocks,
            calls,
        ),
    ]


def in_fresh_processes(processes: int, smoke: bool) -> list[list[dict]]:
    """``measure_rows`` in each of ``processes`` fresh Python processes, one after
    another. Two different compiled programs can time a few percent apart in one
    process and the other way round in the next (where their code and buffers
    land), which a control compiled in the same process cannot show; the median
    over processes averages that out."""
    runs = []
    for i in range(processes):
        cmd = [sys.executable, __file__, "--child"] + (["--smoke"] if smoke else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        coin = runs[-1][0]
        print(f"  process {i + 1}/{processes}: coin {coin['ratio']:.3f}", flush=True)
    return runs


def combine(runs: list[list[dict]]) -> list[dict]:
    """Per workload: the first process's record, with each ratio replaced by its
    median over processes and the per-process values and range kept alongside."""
    rows = []
    for recs in zip(*runs):
        row = dict(recs[0])
        for key in ("ratio", "ratio_of_medians", "ratio_min", "control_ratio"):
            values = [r[key] for r in recs]
            row[key] = float(np.median(values))
            row[key + "_by_process"] = values
        for name in row["steady"]:
            row["steady"] = dict(row["steady"])
            row["steady"][name] = dict(row["steady"][name])
            row["steady"][name]["median_s"] = float(
                np.median([r["steady"][name]["median_s"] for r in recs])
            )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="fresh processes to measure in, one after another (default 5; smoke 1)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        print(json.dumps(measure_rows(opts.smoke)))
        return
    processes = opts.processes or (1 if opts.smoke else 5)
    if processes == 1:
        rows = measure_rows(opts.smoke)
        for r in rows:
            for key in ("ratio", "ratio_of_medians", "ratio_min", "control_ratio"):
                r[key + "_by_process"] = [r[key]]
    else:
        rows = combine(in_fresh_processes(processes, opts.smoke))
    print(
        f"{'workload':<24}{'jsvi us/step':>14}{'hand us/step':>14}{'ratio':>8}"
        f"{'range':>14}{'of medians':>12}{'of minima':>11}{'control':>9}{'init s':>9}"
    )
    for r in rows:
        s, by = r["steady"], r["ratio_by_process"]
        print(
            f"{r['workload']:<24}{1e6 * s['jsvi']['median_s']:>14.1f}"
            f"{1e6 * s['hand']['median_s']:>14.1f}{r['ratio']:>8.3f}"
            f"{f'{min(by):.3f}-{max(by):.3f}':>14}"
            f"{r['ratio_of_medians']:>12.3f}{r['ratio_min']:>11.3f}"
            f"{r['control_ratio']:>9.3f}{r['svi_init_s']:>9.3f}"
        )
    print(
        f"ratio: median over {processes} fresh process(es) of the median over rounds of "
        "jsvi's time / hand-written's, calls made side by side in shuffled order; "
        "range: over processes; control: the hand-written step compiled a second "
        "time, likewise (1.000 is perfect resolution)."
    )
    loop = loop_overhead(200 if opts.smoke else 5_000, 2 if opts.smoke else 7)
    print(
        f"coin, {loop['steps']} steps: svi_run {loop['median_s']['svi_run']:.3f} s, with "
        f"progress bar {loop['median_s']['svi_run+bar']:.3f} s "
        f"({100 * loop['bar_overhead']:+.1f}%), Python loop of svi_update "
        f"{loop['median_s']['python_loop']:.3f} s ({loop['python_loop_vs_svi_run']:.1f}x)"
    )
    payload = {
        "context": context(),
        "smoke": opts.smoke,
        "processes": processes,
        "sizes": dict(zip(("N", "D"), sizes(opts.smoke))),
        "keys": "jax.random.key(0)",
        "rows": rows,
        "loop": loop,
    }
    path = write("core_step" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
