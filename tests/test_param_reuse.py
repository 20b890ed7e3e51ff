"""``param(name)`` without an init reads the param declared earlier under that
name; ``svi_init(..., init_params=)`` starts from given constrained values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import constraints, handlers
from jsvi.errors import ArgumentError, ShapeError, SiteError, SupportError

X = jnp.array([0.3, -1.2, 2.1])


def model(x):
    s = jsvi.param("s")  # declared by the guide, which runs first
    mu = jsvi.sample("mu", dist.Normal(0.0, s))
    with jsvi.plate("data", x.shape[0]):
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=x)


def guide(x):
    del x
    jsvi.param("s", 2.0, constraint=constraints.positive)
    jsvi.param("m", 0.5)
    jsvi.sample("mu", dist.Normal(jsvi.param("m"), 1.0))  # the same param again


def test_a_param_without_init_is_the_earlier_one():
    svi = jsvi.SVI(model, guide, optax.sgd(0.1), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, 0, X)
    assert sorted(state.params) == ["m", "s"]
    assert state.param_constraints.as_dict()["s"] == constraints.positive
    # the model's prior scale is the guide's "s": its gradient reaches it
    loss = jsvi.Trace_ELBO()
    grads = jax.grad(lambda p: loss.loss(jax.random.key(0), p, model, guide, X))(
        {"s": jnp.array(2.0), "m": jnp.array(0.5)}
    )
    assert float(grads["s"]) != 0.0


def test_a_param_without_init_or_earlier_declaration_is_an_error():
    with pytest.raises(SiteError, match="param 'w': no init_value"):
        handlers.seed(lambda: jsvi.param("w"), rng_key=0)()


def test_init_params_warm_start_from_constrained_values():
    svi = jsvi.SVI(model, guide, optax.adam(0.1), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, 0, X, init_params={"s": 0.7, "m": jnp.array(-1.0)})
    params = jsvi.get_params(svi, state)
    np.testing.assert_allclose(params["s"], 0.7, rtol=1e-6)
    np.testing.assert_allclose(params["m"], -1.0)
    state, _ = jsvi.svi_update(svi, state, X)  # the state is a valid one
    with pytest.raises(ArgumentError, match="svi_init: init_params has 'q'"):
        jsvi.svi_init(svi, 0, X, init_params={"q": 1.0})
    with pytest.raises(ShapeError, match="svi_init: init_params\\['m'\\] has shape"):
        jsvi.svi_init(svi, 0, X, init_params={"m": jnp.zeros(2)})
    with pytest.raises(SupportError, match="svi_init: init_params\\['s'\\] lies outside"):
        jsvi.svi_init(svi, 0, X, init_params={"s": -1.0})


def test_svi_run_passes_init_params_to_svi_init_only():
    svi = jsvi.SVI(model, guide, optax.adam(0.1), jsvi.Trace_ELBO())
    warm = {"s": 0.7, "m": jnp.array(-1.0)}
    state, losses = jsvi.svi_run(svi, 0, 5, X, progress_bar=False, init_params=warm)
    start = jsvi.svi_init(svi, 0, X, init_params=warm)
    for _ in range(5):
        start, _ = jsvi.svi_update(svi, start, X)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(start.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ArgumentError, match="init_params .* or init_state"):
        jsvi.svi_run(svi, 0, 5, X, progress_bar=False, init_params=warm, init_state=start)
