"""svi_run's loop features: streamed batches, early stopping, restarts, SPMD."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi.errors import ArgumentError, JsviWarning

X = jax.random.normal(jax.random.key(0), (64, 3))
W = jnp.array([1.0, -2.0, 0.5])
Y = X @ W + 0.1 * jax.random.normal(jax.random.key(1), (64,))


def model(x, y):
    w = jsvi.param("w", jnp.zeros(3))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("y", dist.Normal(x @ w, 0.1), obs=y)


def guide(x, y):
    del x, y


def batches(num, size=16, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(num):
        idx = rng.choice(64, size, replace=False)
        yield (np.asarray(X)[idx], np.asarray(Y)[idx]), {}


def test_host_batches_into_jitted_update_never_recompile():
    calls = {"n": 0}

    def counting_model(x, y):
        calls["n"] += 1
        model(x, y)

    svi = jsvi.SVI(counting_model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    stream = batches(20)
    (x0, y0), _ = next(stream)
    state = jsvi.svi_init(svi, 0, x0, y0)
    state, _ = jsvi.svi_update(svi, state, x0, y0)
    traced = calls["n"]
    for (x, y), _ in stream:
        state, _ = jsvi.svi_update(svi, state, x, y)
    assert calls["n"] == traced


@pytest.mark.parametrize("progress_bar", [False, True])
def test_svi_run_with_batches(progress_bar):
    svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    state, losses = jsvi.svi_run(svi, 0, 300, batches=batches(300), progress_bar=progress_bar)
    assert losses.shape == (300,) and int(state.step) == 300
    np.testing.assert_allclose(jsvi.get_params(svi, state)["w"], W, atol=0.05)
    # the same steps by hand give the same numbers
    stream = batches(300)
    (x0, y0), _ = next(stream)
    st = jsvi.svi_init(svi, 0, x0, y0)
    st, l0 = jsvi.svi_update(svi, st, x0, y0)
    np.testing.assert_allclose(losses[0], l0, rtol=1e-6)


def test_batches_that_run_out_stop_with_a_warning():
    svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    with pytest.warns(JsviWarning, match="batches ran out after 10 of 50 steps"):
        state, losses = jsvi.svi_run(svi, 0, 50, batches=batches(10), progress_bar=False)
    assert losses.shape == (10,) and int(state.step) == 10
    with pytest.raises(ArgumentError, match="either as arguments or through batches"):
        jsvi.svi_run(svi, 0, 5, X, Y, batches=batches(5))
    with pytest.raises(ArgumentError, match="batches is empty"):
        jsvi.svi_run(svi, 0, 5, batches=[])


def test_early_stopping_stops_on_a_plateau():
    svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    rule = jsvi.EarlyStopping(patience=50, min_delta=1e-3)
    state, losses = jsvi.svi_run(svi, 0, 20_000, X, Y, progress_bar=False, early_stopping=rule)
    assert 100 < losses.shape[0] < 20_000 and int(state.step) == losses.shape[0]
    # it stopped because the smoothed loss had settled
    tail = np.asarray(losses[-50:])
    assert np.ptp(tail) < 1.0
    with pytest.raises(ArgumentError, match="early_stopping must be a jsvi.EarlyStopping"):
        jsvi.svi_run(svi, 0, 10, X, Y, early_stopping={"patience": 3})


def test_random_restarts_with_vmap():
    svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    keys = jax.random.split(jax.random.key(4), 5)
    states = jax.vmap(lambda k: jsvi.svi_init(svi, k, X, Y))(keys)

    @jax.jit
    def train(states):
        def body(st, _):
            return jax.vmap(lambda s: jsvi.svi_update(svi, s, X, Y))(st)

        return jax.lax.scan(body, states, None, length=200)

    states, losses = train(states)
    assert losses.shape == (200, 5)
    w = jax.vmap(lambda s: jsvi.get_params(svi, s)["w"])(states)
    np.testing.assert_allclose(w, np.broadcast_to(W, (5, 3)), atol=0.05)


SPMD = textwrap.dedent(
    """
    import os, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import jsvi, jsvi.distributions as dist

    assert jax.device_count() == 4, jax.devices()
    N = 64
    x = jax.random.normal(jax.random.key(0), (N, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5]) + 0.1 * jax.random.normal(jax.random.key(1), (N,))

    def model(x, y):
        w = jsvi.sample("w", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
        with jsvi.plate("data", x.shape[0], subsample_size=32) as idx:
            jsvi.sample("y", dist.Normal(x[idx] @ w, 0.1), obs=y[idx])

    def guide(x, y):
        loc = jsvi.param("loc", jnp.zeros(3))
        scale = jsvi.param("scale", jnp.ones(3), constraint=jsvi.constraints.positive)
        jsvi.sample("w", dist.Normal(loc, scale).to_event(1))

    svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO(num_particles=4))
    update = jax.jit(jsvi.svi_update, static_argnums=0)

    def run(x, y):
        state = jsvi.svi_init(svi, 0, x, y)
        losses = []
        for _ in range(20):
            state, loss = update(svi, state, x, y)
            losses.append(loss)
        return state, np.asarray(losses)

    single_state, single_losses = run(x, y)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, P("data", None)))
    ys = jax.device_put(y, NamedSharding(mesh, P("data")))
    assert len(xs.sharding.device_set) == 4
    sharded_state, sharded_losses = run(xs, ys)
    np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-5, atol=1e-5)
    for k in single_state.params:
        np.testing.assert_allclose(sharded_state.params[k], single_state.params[k], rtol=1e-5, atol=1e-6)
    print("SPMD OK")
    """
)


def test_spmd_sharded_data_matches_single_device(tmp_path):
    script = tmp_path / "spmd.py"
    script.write_text(SPMD)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SPMD OK" in proc.stdout
