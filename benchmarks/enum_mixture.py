"""Per-step and compile time of ``TraceEnum_ELBO`` on a Gaussian mixture with the
assignments enumerated, jsvi against NumPyro's ``TraceEnum_ELBO`` (funsor), side by
side in one run.

Workload: a 3-component Gaussian mixture, N = 1,000 and N = 100,000 points, with
mixture weights, locations and scales as model-side ``param``s and an empty guide,
so every step computes the exact log-likelihood (assignments summed out) and its
gradient. Both libraries use ``max_plate_nesting=1`` and optax Adam(1e-2) and run
the same model from the same initial values; the first losses are compared as a
check that they compute the same thing. Reported: init time, first-call (compile)
time of the step, and steady-state median and IQR per step, interleaved, with the
ratio jsvi / NumPyro (target < 1). Without NumPyro (or funsor) installed, the
NumPyro column is skipped. Results go to ``results/enum_mixture-<device>.json``.

Usage: ``python benchmarks/enum_mixture.py [--smoke] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import context, interleaved, time_first_call, write

import jsvi
import jsvi.distributions as dist
from jsvi import constraints
from jsvi.infer.traceenum_elbo import TraceEnum_ELBO

K = 3
INIT_LOCS = (-1.0, 0.5, 2.0)
TRUE_LOCS = (-3.0, 0.0, 4.0)
TRUE_SCALES = (1.0, 0.5, 1.5)
TRUE_WEIGHTS = (0.3, 0.5, 0.2)


def make_data(n: int, key: jax.Array) -> jax.Array:
    kz, kx = jax.random.split(key)
    z = jax.random.choice(kz, K, (n,), p=jnp.array(TRUE_WEIGHTS))
    eps = jax.random.normal(kx, (n,))
    return jnp.array(TRUE_LOCS)[z] + jnp.array(TRUE_SCALES)[z] * eps


# --- jsvi ------------------------------------------------------------------------


def jsvi_model(data):
    weights = jsvi.param("weights", jnp.ones(K) / K, constraint=constraints.simplex)
    locs = jsvi.param("locs", jnp.array(INIT_LOCS))
    scales = jsvi.param("scales", jnp.ones(K), constraint=constraints.positive)
    with jsvi.plate("data", data.shape[0]):
        z = jsvi.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
        jsvi.sample("x", dist.Normal(locs[z], scales[z]), obs=data)


def empty_guide(data):
    del data


def jsvi_contender(data):
    svi = jsvi.SVI(
        jsvi_model, empty_guide, optax.adam(1e-2), TraceEnum_ELBO(max_plate_nesting=1)
    )
    t0 = time.perf_counter()
    state = jax.block_until_ready(jsvi.svi_init(svi, jax.random.key(0), data))
    init_s = time.perf_counter() - t0
    box = {"state": state}

    def step():
        box["state"], loss = jsvi.svi_update(svi, box["state"], data)
        return loss

    return step, init_s


# --- NumPyro ---------------------------------------------------------------------


def numpyro_svi():
    """NumPyro's SVI on the same model, or None if NumPyro/funsor are missing."""
    try:
        import funsor  # noqa: F401
        import numpyro
        import numpyro.distributions as ndist
        from numpyro.distributions import constraints as nconstraints
        from numpyro.infer import SVI
        from numpyro.infer import TraceEnum_ELBO as NumPyroTraceEnum
    except ImportError:
        return None

    def model(data):
        weights = numpyro.param(
            "weights", jnp.ones(K) / K, constraint=nconstraints.simplex
        )
        locs = numpyro.param("locs", jnp.array(INIT_LOCS))
        scales = numpyro.param("scales", jnp.ones(K), constraint=nconstraints.positive)
        with numpyro.plate("data", data.shape[0]):
            z = numpyro.sample(
                "z", ndist.Categorical(weights), infer={"enumerate": "parallel"}
            )
            numpyro.sample("x", ndist.Normal(locs[z], scales[z]), obs=data)

    return SVI(
        model, empty_guide, optax.adam(1e-2), NumPyroTraceEnum(max_plate_nesting=1)
    )


def numpyro_contender(data):
    """NumPyro's step on the same model, or None if NumPyro/funsor are missing."""
    svi = numpyro_svi()
    if svi is None:
        return None
    t0 = time.perf_counter()
    state = jax.block_until_ready(svi.init(jax.random.key(0), data))
    init_s = time.perf_counter() - t0
    update = jax.jit(svi.update)
    box = {"state": state}

    def step():
        box["state"], loss = update(box["state"], data)
        return loss

    return step, init_s


# --- driver ----------------------------------------------------------------------


def bench(n: int, blocks: int, calls: int) -> dict:
    data = make_data(n, jax.random.key(n))
    contenders, init_s = {}, {}
    contenders["jsvi"], init_s["jsvi"] = jsvi_contender(data)
    other = numpyro_contender(data)
    if other is not None:
        contenders["numpyro"], init_s["numpyro"] = other
    first_loss, compile_s = {}, {}
    for name, step in contenders.items():
        t0 = time.perf_counter()
        first_loss[name] = float(jax.block_until_ready(step()))
        compile_s[name] = time.perf_counter() - t0
    second_s = {name: time_first_call(step) for name, step in contenders.items()}
    stats = interleaved(contenders, blocks=blocks, calls=calls)
    row = {
        "workload": f"mixture K={K} N={n}",
        "N": n,
        "init_s": init_s,
        "first_call_s": compile_s,
        "second_call_s": second_s,
        "first_loss": first_loss,
        "steady": stats,
    }
    if "numpyro" in contenders:
        row["ratio_median"] = stats["jsvi"]["paired"]["numpyro"]
        row["ratio_compile"] = compile_s["jsvi"] / compile_s["numpyro"]
        row["loss_rel_diff"] = abs(first_loss["jsvi"] - first_loss["numpyro"]) / abs(
            first_loss["numpyro"]
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", default=None, help="results folder (default results/)")
    opts = parser.parse_args()
    sizes = (200, 2_000) if opts.smoke else (1_000, 100_000)
    blocks, calls = (2, 5) if opts.smoke else (10, 20)
    jnp.zeros(()).block_until_ready()
    rows = [bench(n, blocks, calls) for n in sizes]
    head = f"{'workload':<22}{'lib':>9}{'init s':>9}{'compile s':>11}{'us/step':>12}{'iqr us':>10}"
    print(head)
    for r in rows:
        for lib, s in r["steady"].items():
            print(
                f"{r['workload']:<22}{lib:>9}{r['init_s'][lib]:>9.3f}"
                f"{r['first_call_s'][lib]:>11.3f}{1e6 * s['median_s']:>12.1f}"
                f"{1e6 * s['iqr_s']:>10.1f}"
            )
        if "ratio_median" in r:
            print(
                f"{'':<22}{'ratio':>9}{'':>9}{r['ratio_compile']:>11.3f}"
                f"{r['ratio_median']:>12.3f}   (jsvi / numpyro; first losses differ by "
                f"{r['loss_rel_diff']:.1e} relative)"
            )
        else:
            print(f"{'':<22}(NumPyro with funsor not installed: no comparison)")
    payload = {
        "context": context(),
        "smoke": opts.smoke,
        "sizes": {"N": list(sizes), "K": K},
        "keys": "data: jax.random.key(N); init: jax.random.key(0)",
        "rows": rows,
    }
    path = write("enum_mixture" + ("-smoke" if opts.smoke else ""), payload, opts.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
