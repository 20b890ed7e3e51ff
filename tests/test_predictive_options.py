"""``Predictive(..., batch_ndims=)`` and ``parallel=``: exact identities against
the unbatched, vectorized draws."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi.errors import ArgumentError, ShapeError

X = jnp.array([0.3, -1.2, 2.1])


def model(x):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", x.shape[0]):
        jsvi.deterministic("shifted", x + mu)


def guide(x):
    del x
    jsvi.sample("mu", dist.Normal(jsvi.param("m", 0.0), 1.0))


def test_posterior_samples_with_two_batch_dims():
    mu = jnp.arange(6.0).reshape(2, 3)
    out = jsvi.Predictive(model, posterior_samples={"mu": mu}, batch_ndims=2)(
        jax.random.key(0), X
    )
    assert out["shifted"].shape == (2, 3, 3)
    np.testing.assert_allclose(out["shifted"], X + mu[..., None])
    single = jsvi.Predictive(model, posterior_samples={"mu": jnp.array(1.0)}, batch_ndims=0)(
        jax.random.key(0), X
    )
    np.testing.assert_allclose(single["shifted"], X + 1.0)


def test_batched_guide_params_give_one_set_of_draws_each():
    params = {"m": jnp.array([0.0, 10.0, -10.0])}
    out = jsvi.Predictive(model, guide=guide, params=params, num_samples=4, batch_ndims=1)(
        jax.random.key(1), X
    )
    assert out["mu"].shape == (3, 4) and out["shifted"].shape == (3, 4, 3)
    # draws from N(m_b, 1): each batch element's draws sit around its own m
    np.testing.assert_array_less(jnp.abs(out["mu"] - params["m"][:, None]), 6.0)


def test_sequential_draws_equal_vectorized_ones():
    kw = {"guide": guide, "params": {"m": jnp.array(0.5)}, "num_samples": 5}
    a = jsvi.Predictive(model, **kw)(jax.random.key(2), X)
    b = jsvi.Predictive(model, parallel=False, **kw)(jax.random.key(2), X)
    np.testing.assert_allclose(a["mu"], b["mu"], rtol=1e-6)
    np.testing.assert_allclose(a["shifted"], b["shifted"], rtol=1e-6)


def test_bad_options():
    with pytest.raises(ArgumentError, match="Predictive: batch_ndims must be an int"):
        jsvi.Predictive(model, num_samples=2, batch_ndims=-1)
    with pytest.raises(ArgumentError, match="Predictive: batch_ndims=1 applies to"):
        jsvi.Predictive(model, num_samples=2, batch_ndims=1)
    with pytest.raises(ShapeError, match="Predictive: posterior_samples must share 2"):
        jsvi.Predictive(model, posterior_samples={"mu": jnp.zeros(3)}, batch_ndims=2)
    with pytest.raises(ArgumentError, match="Predictive: parallel must be True or False"):
        jsvi.Predictive(model, num_samples=2, parallel=1)
