"""Missing data: ``sample(..., obs_mask=)`` observes the entries where the mask is
True and makes the others a latent site ``<name>_unobserved`` that the guide
imputes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import multivariate_normal

import jsvi
import jsvi.distributions as dist
from jsvi import handlers
from jsvi.autoguide import AutoNormal
from jsvi.errors import ArgumentError

Y = jnp.array([0.5, jnp.nan, 1.5, jnp.nan, 2.0, 0.0])
OBSERVED = ~jnp.isnan(Y)


def model(y, observed):
    mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
    with jsvi.plate("data", y.shape[0]):
        return jsvi.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=observed)


def exact_guide(y, observed):
    """The exact posterior: mu | y_obs ~ N(sum y_obs / (1 + n), 1 / (1 + n)), and
    each missing y_i | mu ~ N(mu, 1)."""
    n = observed.sum()
    mu = jsvi.sample("mu", dist.Normal(jnp.nansum(y) / (1 + n), (1 + n) ** -0.5))
    with jsvi.plate("data", y.shape[0]):
        jsvi.sample("y_unobserved", dist.Normal(mu, 1.0).mask(~observed))


def test_sites_and_merged_value():
    tr = handlers.trace(handlers.seed(model, rng_key=0)).get_trace(Y, OBSERVED)
    assert tr["y"].is_observed and not tr["y_unobserved"].is_observed
    np.testing.assert_array_equal(tr["y"].mask, OBSERVED)
    np.testing.assert_array_equal(tr["y_unobserved"].mask, ~OBSERVED)
    value = tr["y"].value
    np.testing.assert_array_equal(value[OBSERVED], Y[OBSERVED])
    np.testing.assert_array_equal(value[~OBSERVED], tr["y_unobserved"].value[~OBSERVED])


def test_elbo_at_the_exact_posterior_is_the_log_evidence():
    """Zero-variance identity: every particle's ELBO equals log p(y_obs), the
    density of N(0, I + 11^T) at the observed entries; missing entries add
    nothing, and NaN in obs there does no harm."""
    y_obs = Y[OBSERVED]
    n = y_obs.shape[0]
    log_evidence = multivariate_normal.logpdf(y_obs, jnp.zeros(n), jnp.eye(n) + 1.0)
    loss = jsvi.Trace_ELBO(num_particles=16).loss(
        jax.random.key(0), {}, model, exact_guide, Y, OBSERVED
    )
    np.testing.assert_allclose(-loss, log_evidence, rtol=1e-5)


def test_autoguide_imputes_and_gets_no_gradient_at_observed_entries():
    guide = AutoNormal(model)
    svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, 0, Y, OBSERVED)
    params = jsvi.get_params(svi, state)
    grads = jax.grad(
        lambda p: jsvi.Trace_ELBO().loss(jax.random.key(1), p, model, guide, Y, OBSERVED)
    )(params)
    for suffix in ("loc", "scale"):
        g = np.asarray(grads[f"y_unobserved_auto_{suffix}"])
        assert np.all(g[np.asarray(OBSERVED)] == 0.0) and np.all(g[~np.asarray(OBSERVED)] != 0.0)
    draws = guide.sample_posterior(jax.random.key(2), params, Y, OBSERVED, sample_shape=(3,))
    assert draws["y_unobserved"].shape == (3, 6)
    out = jsvi.Predictive(model, guide=guide, params=params, num_samples=3)(
        jax.random.key(3), Y, OBSERVED
    )
    np.testing.assert_array_equal(out["y"][:, OBSERVED], jnp.broadcast_to(Y[OBSERVED], (3, 4)))
    assert bool(jnp.isfinite(out["y"]).all())


def test_obs_mask_needs_obs_and_a_boolean_mask():
    def no_obs():
        jsvi.sample("y", dist.Normal(0.0, 1.0), obs_mask=jnp.array(True))

    with pytest.raises(ArgumentError, match="sample site 'y': obs_mask is given but obs"):
        handlers.seed(no_obs, rng_key=0)()

    def int_mask():
        jsvi.sample("y", dist.Normal(0.0, 1.0), obs=1.0, obs_mask=jnp.array(1))

    with pytest.raises(ArgumentError, match="sample site 'y': obs_mask must be a boolean"):
        handlers.seed(int_mask, rng_key=0)()
