"""Step time, compile time and memory of ``TraceEnum_ELBO`` on a hidden Markov
model written with ``jsvi.scan``, against a hand-written JAX forward algorithm and
NumPyro (``scan`` with funsor's ``TraceEnum_ELBO``), side by side in one run.

Workload: an HMM with K hidden states and Gaussian emissions, N sequences in a
plate, length T, data sampled from a known HMM. The parameters (transition
matrix, state means, emission scale) are model-side ``param``s and the guide is
empty, so each step computes the exact log-likelihood (states summed out) and its
gradient, then an optax Adam(1e-2) update. Every chain starts from state 0
(``s_t ~ Categorical(trans[s_{t-1}])`` with ``s_{-1} = 0``). The first losses are
compared as a check that the contenders compute the same thing; a contender whose
first loss differs is flagged (``same_loss``) and its time is no comparison.

The NumPyro contender (``numpyro_scan``) is the same model written with
NumPyro's ``scan`` (plates inside the body, as ``scan`` requires), its states
summed out by NumPyro's enumerated ``log_density`` (``numpyro.contrib.funsor``,
which contracts the time-stacked sites with a parallel scan over time), and the
gradient of that ``-log p(ys)`` fed to the same optax update: with an empty guide
this is the loss ``TraceEnum_ELBO`` should give, and it matches the hand-written
one. NumPyro's ``TraceEnum_ELBO`` itself does not compute it on a ``scan`` model
(NumPyro 0.22, funsor 0.4.8): its contraction has no step over time for the
sites that ``scan`` stacks, and the first step's sites (named ``_PREV_s``,
``_PREV_y`` under enumeration) are missing from the dependency graph it builds
from a run without enumeration. Already at K=2, N=1, T=2 (data key 2) its loss
is 2.1353 where the forward algorithm gives 2.8614; 2.1353 is
``-log sum_s p(s_1 = s | s_0 = 0) p(y_1 | s) + log 2``: the first observation
drops out (at K=3 the offset is ``2 log 3``). On
NumPyro's ``markov`` loop ``TraceEnum_ELBO`` agrees with the hand-written loss.
Each run first prints these first losses at small sizes (K=2, N=1, T=2; K=3,
N=2, T=2, 3, 5; K=8, N=4, T=5: ``numpyro_check`` in the results), so the claim
is checked on the installed versions.

Rows: the issue's workload, K = 8, N = 64, T = 1,000 (``jsvi.scan``, the
hand-written forward algorithm, NumPyro); then scaling rows for ``jsvi.scan`` and
the hand-written algorithm at T = 100 and T = 10,000 with the compile time
(trace, lower and compile of one update) and XLA's memory analysis of the
compiled update (``temp`` bytes: the working memory, residuals for the gradient
included). ``--markov`` adds the ``jsvi.markov`` Python-loop model (its compile
time grows with T; use it with ``--length 100`` or less).

Usage: ``python benchmarks/hmm.py [--smoke] [--out DIR] [--length T] [--markov]
[--k K] [--n N] [--blocks B] [--no-scaling] [--tag TAG]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import context, interleaved, write

import jsvi
import jsvi.distributions as dist
from jsvi import constraints


def true_params(k: int) -> dict:
    trans = 0.1 / k + 0.9 * jnp.eye(k)
    return {
        "trans": trans / trans.sum(-1, keepdims=True),
        "locs": jnp.linspace(-2.0 * k / 4, 2.0 * k / 4, k),
        "scale": jnp.array(0.7),
    }


def make_data(k: int, n: int, length: int, key: jax.Array) -> jax.Array:
    """Sequences (n, length) from the HMM ``true_params(k)``."""
    p = true_params(k)

    def step(s, key):
        k1, k2 = jax.random.split(key)
        s = jax.random.categorical(k1, jnp.log(p["trans"][s]))
        return s, p["locs"][s] + p["scale"] * jax.random.normal(k2, s.shape)

    _, ys = jax.lax.scan(step, jnp.zeros(n, jnp.int32), jax.random.split(key, length))
    return ys.T


def start_params(k: int) -> dict:
    return {
        "trans": jnp.full((k, k), 1.0 / k),
        "locs": jnp.linspace(-1.0, 1.0, k),
        "scale": jnp.array(1.0),
    }


def empty_guide(ys):
    del ys


# --- jsvi --------------------------------------------------------------------------


def jsvi_model_for(k: int):
    start = start_params(k)

    def model(ys):
        trans = jsvi.param("trans", start["trans"], constraints.simplex)
        locs = jsvi.param("locs", start["locs"])
        scale = jsvi.param("scale", start["scale"], constraints.positive)
        with jsvi.plate("sequences", ys.shape[0]):
            s = 0
            for t in jsvi.markov(range(ys.shape[1])):
                s = jsvi.sample(
                    f"s_{t}",
                    dist.Categorical(trans[s]),
                    infer={"enumerate": "parallel"},
                )
                jsvi.sample(f"y_{t}", dist.Normal(locs[s], scale), obs=ys[:, t])

    return model


def jsvi_contender(k: int, ys: jax.Array):
    svi = jsvi_svi(jsvi_model_for(k))
    box = {"state": jsvi.svi_init(svi, jax.random.key(0), ys)}

    def step():
        box["state"], loss = jsvi.svi_update(svi, box["state"], ys)
        return loss

    return step


def jsvi_scan_model_for(k: int):
    start = start_params(k)

    def model(ys):
        trans = jsvi.param("trans", start["trans"], constraints.simplex)
        locs = jsvi.param("locs", start["locs"])
        scale = jsvi.param("scale", start["scale"], constraints.positive)

        def step(s, y):
            s = jsvi.sample(
                "s", dist.Categorical(trans[s]), infer={"enumerate": "parallel"}
            )
            jsvi.sample("y", dist.Normal(locs[s], scale), obs=y)
            return s, None

        with jsvi.plate("sequences", ys.shape[0]):
            jsvi.scan(step, jnp.zeros(ys.shape[0], jnp.int32), ys.T)

    return model


def jsvi_svi(model):
    return jsvi.SVI(
        model, empty_guide, optax.adam(1e-2), jsvi.TraceEnum_ELBO(max_plate_nesting=1)
    )


def jsvi_scan_contender(k: int, ys: jax.Array):
    svi = jsvi_svi(jsvi_scan_model_for(k))
    box = {"state": jsvi.svi_init(svi, jax.random.key(0), ys)}

    def step():
        box["state"], loss = jsvi.svi_update(svi, box["state"], ys)
        return loss

    return step


def jsvi_scan_lowered(k: int, ys: jax.Array):
    svi = jsvi_svi(jsvi_scan_model_for(k))
    state = jsvi.svi_init(svi, jax.random.key(0), ys)
    return jax.jit(jsvi.svi_update, static_argnums=0).lower(svi, state, ys)


# --- hand-written forward algorithm -----------------------------------------------


def forward_nll(params: dict, ys: jax.Array) -> jax.Array:
    """-log p(ys): the forward algorithm in log space, one ``lax.scan`` over time."""
    trans = jax.nn.softmax(params["trans_logits"], -1)
    log_trans = jnp.log(trans)
    scale = jnp.exp(params["log_scale"])
    log_obs = jax.scipy.stats.norm.logpdf(ys.T[..., None], params["locs"], scale)

    def step(alpha, lo):
        alpha = jax.nn.logsumexp(alpha[:, :, None] + log_trans, 1) + lo
        return alpha, None

    alpha0 = log_trans[0] + log_obs[0]
    alpha, _ = jax.lax.scan(step, alpha0, log_obs[1:])
    return -jnp.sum(jax.nn.logsumexp(alpha, -1))


def _handwritten_update(k: int):
    start = start_params(k)
    params = {
        "trans_logits": jnp.log(start["trans"]),
        "locs": start["locs"],
        "log_scale": jnp.log(start["scale"]),
    }
    opt = optax.adam(1e-2)

    @jax.jit
    def update(params, opt_state, ys):
        loss, grads = jax.value_and_grad(forward_nll)(params, ys)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return update, params, opt.init(params)


def handwritten_contender(k: int, ys: jax.Array):
    update, params, opt_state = _handwritten_update(k)
    box = {"params": params, "opt": opt_state}

    def step():
        box["params"], box["opt"], loss = update(box["params"], box["opt"], ys)
        return loss

    return step


# --- NumPyro -----------------------------------------------------------------------


def _numpyro():
    """NumPyro and funsor, or None when either is missing."""
    try:
        import funsor  # noqa: F401
        import numpyro
    except ImportError:
        return None
    return numpyro


def numpyro_scan_model_for(k: int):
    """The benchmark's HMM in NumPyro's ``scan`` (plates inside the body, as
    ``scan`` requires; ``s_{-1} = 0``)."""
    import numpyro
    import numpyro.distributions as ndist
    from numpyro.contrib.control_flow import scan
    from numpyro.distributions import constraints as nconstraints

    start = start_params(k)

    def model(ys):
        trans = numpyro.param("trans", start["trans"], constraint=nconstraints.simplex)
        locs = numpyro.param("locs", start["locs"])
        scale = numpyro.param("scale", start["scale"], constraint=nconstraints.positive)

        def transition(s_prev, y):
            with numpyro.plate("sequences", ys.shape[0], dim=-1):
                s = numpyro.sample(
                    "s",
                    ndist.Categorical(trans[s_prev]),
                    infer={"enumerate": "parallel"},
                )
                numpyro.sample("y", ndist.Normal(locs[s], scale), obs=y)
            return s, None

        scan(transition, jnp.zeros(ys.shape[0], jnp.int32), ys.T)

    return model


def numpyro_markov_model_for(k: int):
    """The same HMM as a NumPyro ``markov`` Python loop."""
    import numpyro
    import numpyro.distributions as ndist
    from numpyro.contrib.funsor import markov
    from numpyro.distributions import constraints as nconstraints

    start = start_params(k)

    def model(ys):
        trans = numpyro.param("trans", start["trans"], constraint=nconstraints.simplex)
        locs = numpyro.param("locs", start["locs"])
        scale = numpyro.param("scale", start["scale"], constraint=nconstraints.positive)
        with numpyro.plate("sequences", ys.shape[0], dim=-1):
            s = jnp.zeros(ys.shape[0], jnp.int32)
            for t in markov(range(ys.shape[1])):
                s = numpyro.sample(
                    f"s_{t}",
                    ndist.Categorical(trans[s]),
                    infer={"enumerate": "parallel"},
                )
                numpyro.sample(f"y_{t}", ndist.Normal(locs[s], scale), obs=ys[:, t])

    return model


def numpyro_marginal_nll(k: int):
    """``-log p(ys)`` of the ``scan`` model with the states summed out by
    NumPyro's enumerated ``log_density`` (``numpyro.contrib.funsor``: the
    time-stacked sites contracted by a parallel scan over time), as a function
    of the unconstrained parameters. With the empty guide it is the negative
    ELBO that ``TraceEnum_ELBO`` would give."""
    from numpyro.contrib.funsor import config_enumerate, enum, log_density
    from numpyro.distributions import constraints as nconstraints
    from numpyro.distributions.transforms import biject_to

    model = enum(config_enumerate(numpyro_scan_model_for(k)), first_available_dim=-2)
    support = {"trans": nconstraints.simplex, "scale": nconstraints.positive}

    def constrain(raw: dict) -> dict:
        return {
            n: biject_to(support[n])(v) if n in support else v for n, v in raw.items()
        }

    start = start_params(k)
    raw = {
        n: biject_to(support[n]).inv(v) if n in support else v
        for n, v in start.items()
    }

    def nll(raw: dict, ys: jax.Array) -> jax.Array:
        return -log_density(model, (ys,), {}, constrain(raw))[0]

    return nll, raw


def numpyro_contender(k: int, ys: jax.Array):
    """NumPyro's step on the ``scan`` model: the gradient of the enumerated
    ``log_density`` and an optax Adam(1e-2) update (what ``SVI`` does with an
    empty guide), or None if NumPyro or funsor is missing."""
    if _numpyro() is None:
        return None
    nll, raw = numpyro_marginal_nll(k)
    opt = optax.adam(1e-2)

    @jax.jit
    def update(raw, opt_state, ys):
        loss, grads = jax.value_and_grad(nll)(raw, ys)
        updates, opt_state = opt.update(grads, opt_state, raw)
        return optax.apply_updates(raw, updates), opt_state, loss

    box = {"raw": raw, "opt": opt.init(raw)}

    def step():
        box["raw"], box["opt"], loss = update(box["raw"], box["opt"], ys)
        return loss

    return step


def numpyro_elbo_losses(k: int, ys: jax.Array) -> dict | None:
    """First losses of NumPyro's ``TraceEnum_ELBO`` (empty guide) on the
    ``scan`` model and on the ``markov`` model, and of the enumerated
    ``log_density`` on the ``scan`` model."""
    if _numpyro() is None:
        return None
    from numpyro.infer import TraceEnum_ELBO as NumPyroTraceEnum

    elbo = NumPyroTraceEnum(max_plate_nesting=1)
    key = jax.random.key(0)
    nll, raw = numpyro_marginal_nll(k)
    return {
        "numpyro_scan_traceenum": float(
            elbo.loss(key, {}, numpyro_scan_model_for(k), empty_guide, ys)
        ),
        "numpyro_markov_traceenum": float(
            elbo.loss(key, {}, numpyro_markov_model_for(k), empty_guide, ys)
        ),
        "numpyro_scan_log_density": float(nll(raw, ys)),
    }


def numpyro_check(sizes: tuple[tuple[int, int, int], ...]) -> list[dict]:
    """First losses of the NumPyro formulations at small ``(K, N, T)`` against
    the hand-written forward algorithm (relative differences)."""
    rows = []
    for k, n, length in sizes:
        ys = make_data(k, n, length, jax.random.key(length))
        _, params, _ = _handwritten_update(k)
        ref = float(forward_nll(params, ys))
        losses = numpyro_elbo_losses(k, ys)
        if losses is None:
            return []
        rows.append(
            {
                "K": k,
                "N": n,
                "T": length,
                "handwritten": ref,
                **losses,
                "rel_diff": {m: abs(v - ref) / abs(ref) for m, v in losses.items()},
            }
        )
    return rows


# --- driver ------------------------------------------------------------------------


def first_call(step) -> tuple[float, float]:
    t0 = time.perf_counter()
    loss = float(jax.block_until_ready(step()))
    return loss, time.perf_counter() - t0


def bench(k: int, n: int, length: int, blocks: int, calls: int, markov: bool) -> dict:
    ys = make_data(k, n, length, jax.random.key(length))
    makers = {
        "jsvi_scan": jsvi_scan_contender,
        "handwritten": handwritten_contender,
        "numpyro_scan": numpyro_contender,
    }
    if markov:
        makers["jsvi_markov"] = jsvi_contender
    contenders, first_loss, compile_s = {}, {}, {}
    for name, make in makers.items():
        t0 = time.perf_counter()
        step = make(k, ys)
        if step is None:
            continue
        first_loss[name], seconds = first_call(step)
        compile_s[name] = time.perf_counter() - t0
        contenders[name] = step
    stats = interleaved(contenders, blocks=blocks, calls=calls)
    ref = first_loss["handwritten"]
    diff = {name: abs(v - ref) / abs(ref) for name, v in first_loss.items()}
    return {
        "workload": f"HMM K={k} N={n} T={length}",
        "K": k,
        "N": n,
        "T": length,
        "init_and_first_call_s": compile_s,
        "first_loss": first_loss,
        "loss_rel_diff_vs_handwritten": diff,
        # a contender whose first loss differs computes something else: its
        # timing is no comparison
        "same_loss": {name: d < 1e-4 for name, d in diff.items()},
        "steady": stats,
        "ratio_vs_handwritten": {
            name: s["paired"]["handwritten"]
            for name, s in stats.items()
            if name != "handwritten"
        },
        "ratio_vs_numpyro_scan": {
            name: s["paired"]["numpyro_scan"]
            for name, s in stats.items()
            if name != "numpyro_scan" and "numpyro_scan" in s["paired"]
        },
    }


def _compiled(lowered_fn) -> tuple[Any, float, dict]:
    t0 = time.perf_counter()
    compiled = lowered_fn().compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    keys = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")
    memory = {key: int(getattr(mem, key, 0) or 0) for key in keys} if mem else {}
    return compiled, seconds, memory


def scaling(k: int, n: int, length: int, calls: int) -> dict:
    """Compile time, compiled memory and step time of one update at length T."""
    ys = make_data(k, n, length, jax.random.key(length))
    out = {"workload": f"HMM K={k} N={n} T={length}", "T": length}
    svi = jsvi_svi(jsvi_scan_model_for(k))
    state = jsvi.svi_init(svi, jax.random.key(0), ys)
    jitted = jax.jit(jsvi.svi_update, static_argnums=0)
    update, params, opt_state = _handwritten_update(k)
    runs = {
        "jsvi_scan": (lambda: jitted.lower(svi, state, ys), (state, ys), 1),
        "handwritten": (
            lambda: update.lower(params, opt_state, ys),
            (params, opt_state, ys),
            2,
        ),
    }
    for name, (lower, args, which) in runs.items():
        compiled, seconds, memory = _compiled(lower)

        def call(compiled=compiled, args=args, which=which):
            return compiled(*args)[which]

        loss = float(jax.block_until_ready(call()))
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times.append(time.perf_counter() - t0)
        out[name] = {
            "compile_s": seconds,
            "memory_bytes": memory,
            "median_step_s": float(np.median(times)),
            "first_loss": loss,
        }
    ref = out["handwritten"]["first_loss"]
    out["loss_rel_diff"] = abs(out["jsvi_scan"]["first_loss"] - ref) / abs(ref)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    parser.add_argument("--length", type=int, default=1000, help="T (default 1000)")
    parser.add_argument("--markov", action="store_true", help="add jsvi.markov")
    parser.add_argument("--k", type=int, default=8, help="states (default 8)")
    parser.add_argument("--n", type=int, default=64, help="sequences (default 64)")
    parser.add_argument("--blocks", type=int, default=5, help="timed blocks of 8 rounds")
    parser.add_argument(
        "--no-scaling", action="store_true", help="skip the T = 100 / 10,000 rows"
    )
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    opts = parser.parse_args()
    if opts.smoke:
        k, n, length, blocks, calls = 3, 4, 6, 2, 3
        scale_lengths, markov, check_sizes = (6, 12), True, ((2, 1, 2),)
    else:
        k, n, length, blocks, calls = opts.k, opts.n, opts.length, opts.blocks, 8
        scale_lengths, markov = (100, 10_000), opts.markov
        check_sizes = ((2, 1, 2), (3, 2, 2), (3, 2, 3), (3, 2, 5), (8, 4, 5))
        if opts.no_scaling:
            scale_lengths = ()
    check = numpyro_check(check_sizes)
    if check:
        print("NumPyro first losses, relative difference from the hand-written one:")
        for r in check:
            diffs = ", ".join(f"{m}: {v:.1e}" for m, v in r["rel_diff"].items())
            print(f"  K={r['K']} N={r['N']} T={r['T']}: {diffs}")
    rows = [bench(k, n, length, blocks, calls, markov)]
    scale_rows = [scaling(k, n, t, 3) for t in scale_lengths]
    print(
        f"{'workload':<24}{'contender':>14}{'init+compile s':>16}{'ms/step':>10}"
        f"{'iqr ms':>9}{'x hand':>8}{'x numpyro':>11}"
    )
    for r in rows:
        for name, s in r["steady"].items():
            ratio = r["ratio_vs_handwritten"].get(name, 1.0)
            vs_numpyro = r["ratio_vs_numpyro_scan"].get(name, float("nan"))
            print(
                f"{r['workload']:<24}{name:>14}{r['init_and_first_call_s'][name]:>16.2f}"
                f"{1e3 * s['median_s']:>10.3f}{1e3 * s['iqr_s']:>9.3f}{ratio:>8.2f}"
                f"{vs_numpyro:>11.2f}"
            )
        diffs = ", ".join(
            f"{k}: {v:.1e}" + ("" if r["same_loss"][k] else " (NOT the same loss)")
            for k, v in r["loss_rel_diff_vs_handwritten"].items()
        )
        print(f"{'':<24}first losses vs hand-written (relative): {diffs}")
    print(
        f"\n{'scaling':<24}{'contender':>14}{'compile s':>11}{'temp MiB':>10}"
        f"{'ms/step':>10}"
    )
    for r in scale_rows:
        for name in ("jsvi_scan", "handwritten"):
            c = r[name]
            temp = c["memory_bytes"].get("temp_size_in_bytes", 0) / 2**20
            print(
                f"{r['workload']:<24}{name:>14}{c['compile_s']:>11.2f}{temp:>10.2f}"
                f"{1e3 * c['median_step_s']:>10.1f}"
            )
        print(f"{'':<24}loss relative difference: {r['loss_rel_diff']:.1e}")
    payload = {
        "context": context(),
        "smoke": opts.smoke,
        "sizes": {"K": k, "N": n, "T": length, "scaling_T": list(scale_lengths)},
        "keys": "data: jax.random.key(T); init: jax.random.key(0)",
        "rows": rows,
        "scaling": scale_rows,
        "numpyro_check": check,
        "contenders": {
            "jsvi_scan": "jsvi.scan model, jsvi.TraceEnum_ELBO, svi_update",
            "handwritten": "forward algorithm in one lax.scan, jax.value_and_grad, optax",
            "numpyro_scan": (
                "numpyro.contrib.control_flow.scan model; states summed out by "
                "numpyro.contrib.funsor.log_density (enumerated, parallel scan over "
                "time); jax.value_and_grad of -log p(ys), optax. NumPyro's "
                "TraceEnum_ELBO on this scan model gives a different loss "
                "(numpyro_check: numpyro_scan_traceenum)"
            ),
            "jsvi_markov": "jsvi.markov Python loop, jsvi.TraceEnum_ELBO (--markov)",
        },
    }
    name = "hmm" + ("-smoke" if opts.smoke else "") + (f"-{opts.tag}" if opts.tag else "")
    path = write(name, payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
