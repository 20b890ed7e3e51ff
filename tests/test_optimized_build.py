"""Fully optimized programs give the losses and updates the test suite sees.

The suite runs with XLA's backend optimizations off (``tests/conftest.py``); users
run with them on. This test runs representative workloads (each estimator, a
plate, enumeration, a ``jsvi.scan`` chain) here, as the suite compiles them, and in
a subprocess with the optimizations on, and compares the loss at the init state
and the params after one update. Both programs come from the same HLO, so they may differ only by float32
rounding of terms of unit size: ``RTOL`` of ``max(1, |value|)``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

RTOL = 1e-5

WORKLOADS = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, optax
    import jsvi, jsvi.distributions as dist
    from jsvi import constraints

    def coin(data):
        f = jsvi.sample("f", dist.Beta(10.0, 10.0))
        with jsvi.plate("data", data.shape[0]):
            jsvi.sample("obs", dist.Bernoulli(f), obs=data)

    def coin_guide(data):
        a = jsvi.param("a", 15.0, constraint=constraints.positive)
        b = jsvi.param("b", 15.0, constraint=constraints.positive)
        jsvi.sample("f", dist.Beta(a, b))

    def coin_sf_guide(data):
        a = jsvi.param("a", 15.0, constraint=constraints.positive)
        b = jsvi.param("b", 15.0, constraint=constraints.positive)
        jsvi.sample("f", dist.NonReparameterized(dist.Beta(a, b)),
                    infer={"baseline": {"use_decaying_avg_baseline": True}})

    def mixture(data):
        w = jsvi.param("w", jnp.array([0.3, 0.7]), constraint=constraints.simplex)
        locs = jsvi.param("locs", jnp.array([-1.0, 2.0]))
        with jsvi.plate("data", data.shape[0]):
            k = jsvi.sample("k", dist.Categorical(w), infer={"enumerate": "parallel"})
            jsvi.sample("x", dist.Normal(locs[k], 1.0), obs=data)

    def hmm(ys):
        trans = jsvi.param("trans", jnp.array([[0.9, 0.1], [0.2, 0.8]]),
                           constraint=constraints.simplex)
        locs = jsvi.param("locs", jnp.array([-1.0, 1.0]))

        def step(s_prev, y):
            s = jsvi.sample("s", dist.Categorical(trans[s_prev]),
                            infer={"enumerate": "parallel"})
            jsvi.sample("y", dist.Normal(locs[s], 0.5), obs=y)
            return s, None

        jsvi.scan(step, 0, ys)

    def empty(*args):
        pass

    coin_data = jnp.array([1.0] * 6 + [0.0] * 4)
    mix_data = jnp.array([-1.2, -0.4, 1.9, 2.5, 2.2, -0.9])
    hmm_data = jnp.sin(jnp.arange(12.0))
    cases = {
        "trace_elbo": (coin, coin_guide, jsvi.Trace_ELBO(num_particles=4), coin_data),
        "tracegraph_elbo": (coin, coin_sf_guide, jsvi.TraceGraph_ELBO(), coin_data),
        "meanfield_elbo": (coin, coin_guide, jsvi.TraceMeanField_ELBO(), coin_data),
        "traceenum_mixture": (mixture, empty, jsvi.TraceEnum_ELBO(), mix_data),
        "traceenum_scan_hmm": (hmm, empty, jsvi.TraceEnum_ELBO(), hmm_data),
    }
    out = {}
    for name, (model, guide, elbo, data) in cases.items():
        svi = jsvi.SVI(model, guide, optax.adam(1e-2), elbo)
        state = jsvi.svi_init(svi, jax.random.key(0), data)
        loss = jsvi.evaluate_loss(svi, state, data)
        state, _ = jsvi.svi_update(svi, state, data)
        params = {k: jnp.ravel(v).tolist() for k, v in jsvi.get_params(svi, state).items()}
        out[name] = {"loss": float(loss), "params": params}
    """
)


def _here() -> dict:
    namespace: dict = {}
    exec(WORKLOADS, namespace)
    return json.loads(json.dumps(namespace["out"]))


def _optimized() -> dict:
    env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="0")
    script = WORKLOADS + "\nimport json\nprint(json.dumps(out))\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _close(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= RTOL * np.maximum(1.0, np.abs(b))))


def test_optimized_programs_give_the_same_losses_and_updates():
    fast, full = _here(), _optimized()
    assert fast.keys() == full.keys() and len(full) == 5
    for name in full:
        assert np.isfinite(full[name]["loss"]), name
        assert _close(fast[name]["loss"], full[name]["loss"]), (name, fast[name], full[name])
        assert fast[name]["params"].keys() == full[name]["params"].keys()
        for p in full[name]["params"]:
            assert _close(fast[name]["params"][p], full[name]["params"][p]), (name, p)
