"""psis_diagnostic: k-hat against ArviZ's psislw, below 0.5 for a guide family that
holds the posterior and above it for a mean-field guide on a correlated Gaussian."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jsvi
import jsvi.distributions as dist
from jsvi.diagnostics import pareto_khat, psis_diagnostic
from jsvi.errors import ArgumentError


def _arviz_khat(log_w):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz's import-time FutureWarning
        import arviz as az

        return float(az.psislw(np.array(log_w, dtype=np.float64))[1])


@pytest.mark.parametrize(
    "draw",
    [
        lambda r: r.standard_normal(2000),
        lambda r: 2.5 * r.standard_normal(1000),
        lambda r: r.standard_t(3, size=3000),
        lambda r: np.log1p(r.pareto(1.5, size=2000)),
        lambda r: -r.exponential(size=500),
    ],
    ids=["lognormal", "wide-lognormal", "student-t", "pareto", "bounded"],
)
def test_khat_equals_arviz_psislw(draw):
    log_w = draw(np.random.default_rng(0))
    np.testing.assert_allclose(pareto_khat(log_w), _arviz_khat(log_w), rtol=1e-9)


def test_khat_of_constant_weights_and_bad_input():
    assert pareto_khat(np.zeros(100)) == -np.inf
    with pytest.raises(ArgumentError, match="not finite"):
        pareto_khat(np.array([0.0, np.nan] * 50))


X = jnp.array([0.5, -1.0, 2.0])


def nn_model(x):
    z = jsvi.sample("z", dist.Normal(0.0, 1.0).expand((3,)).to_event(1))
    jsvi.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)


def test_khat_is_small_for_a_family_that_holds_the_posterior():
    """Normal-Normal fitted with AutoNormal (the mean-field family holds the
    exact posterior N(x/2, 1/2)): k-hat < 0.5."""
    guide = jsvi.autoguide.AutoNormal(nn_model)
    svi = jsvi.SVI(nn_model, guide, optax.adam(0.05), jsvi.Trace_ELBO(num_particles=4))
    state, _ = jsvi.svi_run(svi, jax.random.key(0), 600, X, progress_bar=False)
    khat = psis_diagnostic(svi, state, X, num_particles=2000)
    assert khat < 0.5, khat


D, RHO = 10, 0.9
COV = (1 - RHO) * np.eye(D) + RHO * np.ones((D, D))


PREC = np.linalg.inv(COV)
LOG_NORM = -0.5 * (D * np.log(2 * np.pi) + np.linalg.slogdet(COV)[1])


def corr_model():
    """z ~ N(0, COV), written as a standard Normal plus a factor (the same log
    density as MultivariateNormal; a matrix-vector product compiles faster)."""
    z = jsvi.sample("z", dist.Normal(0.0, 1.0).expand((D,)).to_event(1))
    log_p = LOG_NORM - 0.5 * z @ jnp.asarray(PREC, jnp.float32) @ z
    jsvi.factor("corr", log_p - dist.Normal(0.0, 1.0).log_prob(z).sum())


def test_khat_is_large_for_mean_field_on_a_correlated_gaussian():
    """Mean-field AutoNormal at its optimum for 10 dims with correlation 0.9 (loc 0,
    scale 1/sqrt(diag(precision)), which minimizes KL(q || p)): the weights' tail
    is heavy (true k near 1). k-hat from 2,000 draws scatters, so it is checked
    over five keys: every one above 0.5."""
    guide = jsvi.autoguide.AutoNormal(corr_model)
    svi = jsvi.SVI(corr_model, guide, optax.adam(0.0), jsvi.Trace_ELBO())
    state = jsvi.svi_init(svi, jax.random.key(0))
    scale = 1 / np.sqrt(np.diag(PREC))
    params = dict(state.params)
    (loc_name,) = [n for n in params if n.endswith("_loc")]
    (scale_name,) = [n for n in params if n.endswith("_scale")]
    params[loc_name] = jnp.zeros(D)
    params[scale_name] = jnp.log(jnp.asarray(scale, jnp.float32))  # unconstrained
    khats = []
    for k in range(5):
        s = state._replace(params=params, rng_key=jax.random.key(k))
        khats.append(psis_diagnostic(svi, s, num_particles=2000))
    assert min(khats) > 0.5, khats


def test_num_particles_is_checked():
    svi = jsvi.SVI(corr_model, jsvi.autoguide.AutoNormal(corr_model), optax.sgd(0.1),
                   jsvi.Trace_ELBO())
    with pytest.raises(ArgumentError, match="num_particles"):
        psis_diagnostic(svi, jsvi.svi_init(svi, jax.random.key(0)), num_particles=5)
