"""Predictive: prior and posterior predictive draws against closed forms, guides and
posterior samples, return_sites, and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi.autoguide import AutoMultivariateNormal, AutoNormal
from jsvi.errors import ArgumentError, ShapeError, SiteError
from jsvi.predictive import Predictive
from jsvi.testing import assert_mc_close

# Linear regression, w ~ N(0, I_3), y ~ N(X w, 0.5^2): the posterior is N(mu, S)
# and the predictive of y* at new inputs X* is N(X* mu, X* S X*' + 0.5^2).
X = np.asarray(jax.random.normal(jax.random.key(20), (25, 3)))
SIGMA = 0.5
Y = X @ np.array([0.5, -1.0, 2.0]) + SIGMA * np.asarray(
    jax.random.normal(jax.random.key(21), (25,))
)
X_NEW = np.asarray(jax.random.normal(jax.random.key(22), (4, 3)))
PRECISION = X.T @ X / SIGMA**2 + np.eye(3)
COV = np.linalg.inv(PRECISION)
MEAN = COV @ X.T @ Y / SIGMA**2
PRED_MEAN = X_NEW @ MEAN
PRED_VAR = np.einsum("ni,ij,nj->n", X_NEW, COV, X_NEW) + SIGMA**2
NUM = 4000


def model(X, y=None):
    w = jsvi.sample("w", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
    with jsvi.plate("data", X.shape[0]):
        mean = jsvi.deterministic("mean", X @ w)
        jsvi.sample("y", dist.Normal(mean, SIGMA), obs=y)


def check_predictive(draws):
    """The y draws have the closed-form predictive mean and variance."""
    y = np.asarray(draws["y"], dtype=np.float64)
    assert y.shape == (NUM, 4)
    assert_mc_close(y, PRED_MEAN, z=4.5)
    assert_mc_close((y - PRED_MEAN) ** 2, PRED_VAR, z=4.5)
    # The deterministic site is X* w for the same draws of w.
    np.testing.assert_allclose(
        draws["mean"], draws["w"] @ X_NEW.T, rtol=1e-5, atol=1e-5
    )


@pytest.mark.statistical
def test_posterior_predictive_from_a_guide_matches_the_closed_form():
    guide = AutoMultivariateNormal(model)
    # The first call fixes the guide's sites, as svi_init would.
    jsvi.handlers.seed(guide, rng_key=0)(jnp.asarray(X), jnp.asarray(Y))
    params = {
        "auto_loc": jnp.asarray(MEAN, jnp.float32),
        "auto_scale_tril": jnp.asarray(np.linalg.cholesky(COV), jnp.float32),
    }
    predictive = Predictive(model, guide=guide, params=params, num_samples=NUM)
    draws = predictive(jax.random.key(0), jnp.asarray(X_NEW))
    assert set(draws) == {"w", "mean", "y"}
    check_predictive(draws)


@pytest.mark.statistical
def test_posterior_predictive_from_samples_matches_the_closed_form():
    w = np.random.default_rng(1).multivariate_normal(MEAN, COV, size=NUM)
    predictive = Predictive(model, posterior_samples={"w": jnp.asarray(w, jnp.float32)})
    draws = predictive(jax.random.key(1), jnp.asarray(X_NEW))
    np.testing.assert_allclose(draws["w"], w, rtol=1e-6)  # the samples are used
    check_predictive(draws)


@pytest.mark.statistical
def test_prior_predictive():
    # w ~ N(0, I): y* ~ N(0, |x*|^2 + 0.5^2).
    draws = Predictive(model, num_samples=NUM, return_sites=["y"])(
        jax.random.key(2), jnp.asarray(X_NEW)
    )
    assert set(draws) == {"y"}
    var = np.sum(X_NEW**2, axis=1) + SIGMA**2
    y = np.asarray(draws["y"], dtype=np.float64)
    assert_mc_close(y, np.zeros(4), z=4.5)
    assert_mc_close(y**2, var, z=4.5)


def test_draws_are_reproducible_and_keyed():
    predictive = Predictive(model, num_samples=8)
    a = predictive(jax.random.key(3), jnp.asarray(X_NEW))
    b = predictive(jax.random.key(3), jnp.asarray(X_NEW))
    c = predictive(3, jnp.asarray(X_NEW))
    np.testing.assert_array_equal(a["y"], b["y"])
    np.testing.assert_array_equal(a["y"], c["y"])
    d = predictive(jax.random.key(4), jnp.asarray(X_NEW))
    assert not np.allclose(a["y"], d["y"])
    assert len({tuple(row) for row in np.asarray(a["w"])}) == 8  # distinct draws


def test_model_params_and_return_sites_of_params():
    def scaled(x):
        s = jsvi.param("s", 1.0, constraint=jsvi.constraints.positive)
        jsvi.sample("x", dist.Normal(0.0, s))

    draws = Predictive(scaled, params={"s": 0.0 + 1e-3}, num_samples=5)(0, None)
    assert float(jnp.max(jnp.abs(draws["x"]))) < 0.01
    out = Predictive(scaled, params={"s": 2.0}, num_samples=3, return_sites=["s"])(0, 1)
    np.testing.assert_allclose(out["s"], [2.0, 2.0, 2.0])


def test_guide_plates_are_replayed_into_the_model():
    def local(x):
        with jsvi.plate("data", x.shape[0], subsample_size=3) as idx:
            z = jsvi.sample("z", dist.Normal(0.0, 1.0))
            jsvi.deterministic("picked", x[idx] + 0.0 * z)

    x = jnp.arange(10.0)
    guide = AutoNormal(local)
    params = {"z_auto_loc": x * 100.0, "z_auto_scale": jnp.full(10, 1e-6)}
    draws = Predictive(local, guide=guide, params=params, num_samples=6)(0, x)
    # The model's plate used the guide's indices: z (from params at those
    # indices) is 100 times the data the model picked.
    np.testing.assert_allclose(draws["z"], 100.0 * draws["picked"], atol=1e-4)


def test_bad_input_is_reported():
    with pytest.raises(ArgumentError, match="nothing to draw from"):
        Predictive(model)
    guide = AutoNormal(model)
    with pytest.raises(ArgumentError, match="needs num_samples"):
        Predictive(model, guide=guide, params={})
    with pytest.raises(ArgumentError, match="not both"):
        Predictive(model, guide=guide, posterior_samples={"w": jnp.zeros((2, 3))})
    with pytest.raises(ShapeError, match="leading"):
        Predictive(model, posterior_samples={"w": jnp.zeros((2, 3)), "v": jnp.zeros(3)})
    with pytest.raises(ArgumentError, match="num_samples=5 but"):
        Predictive(model, posterior_samples={"w": jnp.zeros((2, 3))}, num_samples=5)
    with pytest.raises(ArgumentError, match="num_samples must be"):
        Predictive(model, num_samples=0)
    with pytest.raises(SiteError, match=r"\['nope'\]"):
        Predictive(model, num_samples=2, return_sites=["nope"])(0, jnp.asarray(X_NEW))
    with pytest.raises(ArgumentError, match="'w_auto_loc' is not in params"):
        Predictive(model, guide=guide, params={}, num_samples=2)(0, jnp.asarray(X_NEW))
