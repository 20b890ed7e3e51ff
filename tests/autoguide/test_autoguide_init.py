"""Autoguides: init strategies, posterior summaries (median, quantiles,
sample_posterior), purity under jit, and bad constructor arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
    init_to_feasible,
    init_to_median,
    init_to_sample,
    init_to_value,
)
from jsvi.errors import ArgumentError, ShapeError
from jsvi.testing import assert_mc_close

ALL = [
    AutoDelta,
    AutoNormal,
    AutoDiagonalNormal,
    AutoMultivariateNormal,
    AutoLowRankMultivariateNormal,
]


def constrained_model():
    """One site per kind of support, in and out of a plate."""
    jsvi.sample("loc", dist.Normal(0.0, 1.0))
    jsvi.sample("scale", dist.Gamma(2.0, 1.0))
    jsvi.sample("prob", dist.Beta(2.0, 3.0))
    jsvi.sample("mix", dist.Dirichlet(jnp.ones(3)))
    jsvi.sample("bounded", dist.Uniform(-1.0, jnp.array([1.0, 2.0])))
    with jsvi.plate("group", 4):
        jsvi.sample("local", dist.LogNormal(0.0, 1.0))


def feasible(guide_cls, model):
    """A guide starting at fixed points (no prior draws: nothing to compile)."""
    return guide_cls(model, init_loc_fn=init_to_feasible)


def run_guide(guide, *args, key=0, **kwargs):
    return handlers.trace(handlers.seed(guide, rng_key=key)).get_trace(*args, **kwargs)


def local_model(x):
    """z_i ~ N(0, 1), x_i ~ N(z_i, 1): each z_i's posterior is N(x_i / 2, 1/2)."""
    with jsvi.plate("data", x.shape[0], subsample_size=5) as idx:
        z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(z, 1.0), obs=x[idx])


X_LOCAL = jnp.linspace(-3.0, 3.0, 20)


# --- init strategies ------------------------------------------------------------------


def init_model():
    jsvi.sample("s", dist.Gamma(4.0, 2.0))
    jsvi.sample("p", dist.Beta(2.0, 6.0))


def init_locs(init_loc_fn, key=0):
    guide = AutoNormal(init_model, init_loc_fn=init_loc_fn)
    svi = jsvi.SVI(init_model, guide, optax.adam(0.1), jsvi.Trace_ELBO())
    params = jsvi.get_params(svi, jsvi.svi_init(svi, key))
    return guide.median(params)


def test_init_to_value_and_feasible_start_exactly_there():
    start = init_locs(init_to_value(values={"s": 3.0, "p": 0.25}))
    np.testing.assert_allclose([start["s"], start["p"]], [3.0, 0.25], rtol=1e-6)
    start = init_locs(init_to_feasible)
    np.testing.assert_allclose([start["s"], start["p"]], [1.0, 0.5], rtol=1e-6)
    fallback = init_locs(init_to_value(values={"s": 3.0}, fallback=init_to_feasible))
    np.testing.assert_allclose([fallback["s"], fallback["p"]], [3.0, 0.5], rtol=1e-6)


@pytest.mark.statistical
def test_init_to_sample_and_median_follow_the_prior():
    from scipy import stats

    # Over keys, init_to_sample starts at a prior draw: Gamma(4, 2) has mean 2,
    # Beta(2, 6) has mean 1/4.
    guide = AutoNormal(init_model, init_loc_fn=init_to_sample)
    svi = jsvi.SVI(init_model, guide, optax.adam(0.1), jsvi.Trace_ELBO())
    keys = jax.random.split(jax.random.key(0), 2000)
    states = jax.vmap(lambda k: jsvi.svi_init(svi, k))(keys)
    starts = jax.vmap(lambda st: guide.median(jsvi.get_params(svi, st)))(states)
    assert_mc_close(np.stack([starts["s"], starts["p"]], -1), [2.0, 0.25], z=4.5)
    # init_to_median over n draws: a sample median has sd ~ 1 / (2 f(m) sqrt(n)).
    n = 1001
    medians = init_locs(init_to_median(num_samples=n))
    for name, prior in (
        ("s", stats.gamma(4.0, scale=0.5)),
        ("p", stats.beta(2.0, 6.0)),
    ):
        m = prior.median()
        assert abs(float(medians[name]) - m) <= 4 / (2 * prior.pdf(m) * np.sqrt(n))


def test_init_to_value_with_a_wrong_shape_is_an_error():
    with pytest.raises(ShapeError, match="'s'.*shape"):
        init_locs(init_to_value(values={"s": jnp.ones(3)}))


def test_init_to_value_takes_full_size_values_for_subsampled_sites():
    guide = AutoNormal(local_model, init_loc_fn=init_to_value(values={"z": X_LOCAL}))
    svi = jsvi.SVI(local_model, guide, optax.adam(0.1), jsvi.Trace_ELBO())
    params = jsvi.get_params(svi, jsvi.svi_init(svi, 0, X_LOCAL))
    np.testing.assert_allclose(params["z_auto_loc"], X_LOCAL)


# --- summaries, jit, bad input ----------------------------------------------------------


@pytest.mark.parametrize("guide_cls", ALL, ids=lambda c: c.__name__)
def test_median_quantiles_and_samples_have_site_shapes(guide_cls):
    guide = feasible(guide_cls, constrained_model)
    params = {n: s.value for n, s in run_guide(guide).param_sites().items()}
    median = guide.median(params)
    quantiles = guide.quantiles(params, [0.1, 0.5, 0.9])
    draws = guide.sample_posterior(jax.random.key(1), params, sample_shape=(6, 2))
    for name, value in median.items():
        assert quantiles[name].shape == (3,) + value.shape
        assert draws[name].shape == (6, 2) + value.shape
        np.testing.assert_allclose(quantiles[name][1], value, rtol=1e-5, atol=1e-6)


@pytest.mark.statistical
def test_sample_posterior_draws_from_the_guide_without_model_arguments():
    def model(x):
        mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
        jsvi.sample("x", dist.Normal(mu, 1.0), obs=x)

    guide = AutoMultivariateNormal(model)
    run_guide(guide, 1.0)  # as svi_init would
    params = {"auto_loc": jnp.array([0.7]), "auto_scale_tril": jnp.array([[0.3]])}
    draws = guide.sample_posterior(jax.random.key(2), params, sample_shape=(4000,))
    assert_mc_close(draws["mu"], 0.7)
    assert_mc_close((draws["mu"] - 0.7) ** 2, 0.09)
    fresh = AutoMultivariateNormal(model)
    with pytest.raises(ArgumentError, match="pass the model's arguments"):
        fresh.median(params)
    with pytest.raises(ArgumentError, match="lacks"):
        guide.median({"auto_loc": jnp.zeros(1)})


@pytest.mark.parametrize("guide_cls", ALL, ids=lambda c: c.__name__)
def test_guide_is_pure_under_jit(guide_cls):
    guide = feasible(guide_cls, constrained_model)
    params = {n: s.value for n, s in run_guide(guide).param_sites().items()}

    def draw(key, params):
        tr = handlers.trace(
            handlers.seed(handlers.substitute(guide, data=params), key)
        ).get_trace()
        return {n: s.value for n, s in tr.latent_sites().items()}

    eager = draw(jax.random.key(3), params)
    jitted = jax.jit(draw)(jax.random.key(3), params)
    for name in eager:
        np.testing.assert_allclose(eager[name], jitted[name], rtol=1e-5, atol=1e-6)


def test_constructor_arguments_are_checked():
    with pytest.raises(ArgumentError, match="model must be callable"):
        AutoNormal(3.0)
    with pytest.raises(ArgumentError, match="init_scale"):
        AutoNormal(init_model, init_scale=-1.0)
    with pytest.raises(ArgumentError, match="rank"):
        AutoLowRankMultivariateNormal(init_model, rank=0)
    with pytest.raises(ArgumentError, match="init_loc_fn"):
        AutoDelta(init_model, init_loc_fn="median")
